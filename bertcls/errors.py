"""User-facing errors: one clear line that names the file, column, row or flag and says the fix.

Entry points wrap their main() in `exit_on_user_error`, which prints the message without a traceback and exits
with status 2. Set BERTCLS_DEBUG=1 to get the full traceback instead.
"""

import functools
import os
import sys

DEBUG_ENV = "BERTCLS_DEBUG"


class UserError(Exception):
    """A mistake in the user's input that they can fix; `fix` says how."""

    def __init__(self, message: str, fix: str | None = None):
        self.message = message
        self.fix = fix
        super().__init__(f"{message}. Fix: {fix}" if fix else message)


def load_error(name: str, what: str, error: Exception, fix: str) -> UserError:
    """A failed from_pretrained: say whether the name was a missing folder or an unreachable Hub id."""
    text = str(error)
    first_line = text.splitlines()[0] if text else type(error).__name__
    if "couldn't connect" in text.lower() or "offline" in text.lower():
        return UserError(
            f"could not load the {what} {name!r}: it is not a local folder and the Hugging Face Hub cannot be reached",
            fix="download it once with network access (or set HF_HOME to a cache that has it), or pass a local folder",
        )
    return UserError(f"could not load the {what} {name!r}: {first_line}", fix=fix)


def debug_enabled() -> bool:
    return os.environ.get(DEBUG_ENV, "").lower() not in ("", "0", "false", "no")


def exit_on_user_error(main):
    """Decorator for CLI entry points: a UserError becomes `error: ...` on stderr and exit status 2; Ctrl-C outside
    training (where bertcls.training.interrupt saves a checkpoint first) becomes one line and exit status 130."""

    @functools.wraps(main)
    def wrapper(*args, **kwargs):
        try:
            return main(*args, **kwargs)
        except UserError as e:
            if debug_enabled():
                raise
            print(f"error: {e}", file=sys.stderr)
            print(f"(set {DEBUG_ENV}=1 for the full traceback)", file=sys.stderr)
            sys.exit(2)
        except KeyboardInterrupt:
            if debug_enabled():
                raise
            print("interrupted", file=sys.stderr)
            sys.exit(130)

    return wrapper
