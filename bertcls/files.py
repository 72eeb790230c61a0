"""Files written whole or not at all, with the permissions the user's umask gives.

Every file a run writes goes to a temporary name beside its target and is renamed into place, so a crash never
leaves a truncated predictions.csv or results json that a later reader could take for a result. mkstemp makes the
temporary file 0600; it is given the mode a plain open() would (0666 minus the umask) before the rename, so
teammates on a shared server can read the results.
"""

import json
import os
import tempfile
from contextlib import contextmanager


def umask() -> int:
    """The process's umask (reading it means setting it: set it straight back)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextmanager
def atomic_path(path: str):
    """Yield a temporary path next to `path`; rename it onto `path` only when the block succeeds."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{os.path.basename(path)}.", suffix=".tmp")
    os.close(fd)
    try:
        yield tmp
        os.chmod(tmp, 0o666 & ~umask())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def write_text(path: str, text: str) -> None:
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
        f.write(text)


def write_json(path: str, obj) -> None:
    write_text(path, json.dumps(obj, indent=2, ensure_ascii=False, sort_keys=True) + "\n")
