"""The data-health report of a recipe's (or the flags') data files, without a model and without training.

    python -m bertcls inspect recipes/chnsenticorp/chinese-bert-wwm-ext.json
    python -m bertcls inspect --train_file train.tsv --validation_file dev.tsv --test_file test.tsv --text_column text_a

Reads the splits exactly as run_classification.py reads them (the same flags, checks, --drop_* options and held-out
validation split) and prints bertcls.data.health's report as Markdown: duplicates, texts shared across splits,
conflicting labels, near-duplicates, very short/long texts and rows per class. The model the recipe names is not
loaded. --output_file also writes the report to a file.
"""

import sys
from dataclasses import dataclass, field

from bertcls.config.recipes import make_parser, parse_args, run_dataclasses
from bertcls.data.loading import load_task_data
from bertcls.errors import exit_on_user_error
from bertcls.files import write_text
from bertcls.logs import setup_logging


@dataclass
class InspectArguments:
    output_file: str | None = field(default=None, metadata={"help": "Also write the report (Markdown) here."})


@exit_on_user_error
def main(argv=None) -> str:
    parser = make_parser((*run_dataclasses(), InspectArguments))
    # A recipe names a model and an output folder for training; inspecting needs neither.
    parser.set_defaults(model_name_or_path="(not loaded)", output_dir="(not written)")
    for action in parser._actions:
        if action.dest in ("model_name_or_path", "output_dir"):
            action.required = False
    _, data_args, training_args, inspect_args = parse_args(argv, parser=parser)
    setup_logging()
    task = load_task_data(data_args, training_args.seed)
    sources = ", ".join(f"{split}: {source.name}" for split, source in task.sources.items())
    text = f"# Data health\n\n{sources}\n\n{task.health.markdown()}\n"
    print(text)
    if inspect_args.output_file:
        write_text(inspect_args.output_file, text)
    return text


if __name__ == "__main__":
    main(sys.argv[1:])
