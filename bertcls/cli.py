"""The ``bertcls`` command: one entry point with a subcommand per tool, as ``accelerate`` and ``trl`` have.

    bertcls predict --model_name_or_path outputs/my-task --input_file new.tsv --output_file preds.csv
    python -m bertcls predict ...        # the same, without the console script on PATH

Training itself stays ``run_classification.py`` (the script Hugging Face users know). Each tool is imported only
when it is called, so ``bertcls serve`` on an ONNX folder never pays for what ``bertcls pretrain`` imports.
"""

import difflib
import importlib
import sys

# subcommand -> (module, one line for the overview)
COMMANDS = {
    "preview": ("bertcls.model.preview", "print rows as the model sees them, and length statistics"),
    "inspect": ("bertcls.data.inspection", "data health of a recipe's files: duplicates, leakage, conflicting labels"),
    "predict": ("bertcls.shipping.predict", "predict a file with a fine-tuned folder (torch or ONNX)"),
    "export": ("bertcls.shipping.export", "export a fine-tuned folder to ONNX (fp32 or int8), with a parity check"),
    "serve": ("bertcls.shipping.serve", "serve a fine-tuned or exported folder over HTTP"),
    "pretrain": ("bertcls.pretrain.run", "continued masked-LM pretraining on raw text"),
    "distill": ("bertcls.distill.run", "distil a fine-tuned teacher folder into a small, fast student folder"),
    "tiny-model": ("bertcls.model.tiny", "write a tiny random BERT (for tests and the demo)"),
}


def usage() -> str:
    width = max(map(len, COMMANDS))
    lines = ["usage: bertcls COMMAND [--flags]   (bertcls COMMAND --help lists a command's flags)", "", "commands:"]
    lines += [f"  {name:<{width}}  {summary}" for name, (_, summary) in COMMANDS.items()]
    lines += ["", "training: python run_classification.py RECIPE.json [--flags]  (or accelerate launch ...)"]
    return "\n".join(lines)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(usage())
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        close = difflib.get_close_matches(name, COMMANDS, n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        print(f"error: unknown command '{name}'{hint}\n\n{usage()}", file=sys.stderr)
        return 2
    module = importlib.import_module(COMMANDS[name][0])
    sys.argv = [f"bertcls {name}", *rest]  # argparse's usage line names the command the user typed
    module.main(rest)
    return 0


if __name__ == "__main__":
    sys.exit(main())
