"""Show how a recipe turns rows into model inputs, before spending hours on training.

    python -m bertcls preview recipes/chnsenticorp/chinese-bert-wwm-ext.json --num_rows 3 --split validation

Prints the first N rows as the model sees them (one padded batch: tokens, input_ids, token_type_ids,
attention_mask) and, for the whole split, the row count, token-length percentiles, truncated rows and [UNK] rate.
"""

import sys
from dataclasses import dataclass, field

from datasets import DatasetDict
from transformers import DataCollatorWithPadding

from bertcls.config.recipes import parse_args, run_dataclasses
from bertcls.data.loading import load_task_data
from bertcls.data.tokenization import check_settings, tokenize_splits
from bertcls.errors import UserError, exit_on_user_error
from bertcls.logs import setup_logging
from bertcls.model.checkpoints import load_config, load_tokenizer


@dataclass
class PreviewArguments:
    num_rows: int = field(default=3, metadata={"help": "How many rows to show token by token."})
    split: str = field(default="train", metadata={"help": "Which split to show: train, validation or test."})


def label_text(label, label_names) -> str:
    """A class id's name, a multi-hot row's label names (`[]` for none), or a regression value."""
    if isinstance(label, list):
        return str([n for n, on in zip(label_names, label) if on])
    if isinstance(label, float):
        return f"{label:g}"
    return label_names[label] if label >= 0 else "(unlabelled)"


def show_rows(rows, tokenizer, label_names) -> str:
    """The rows padded together, as the collator hands them to the model."""
    batch = DataCollatorWithPadding(tokenizer)(
        [{k: r[k] for k in ("input_ids", "token_type_ids", "attention_mask") if k in r} for r in rows]
    )
    lines = []
    for i, row in enumerate(rows):
        label = f"  label: {label_text(row['label'], label_names)}" if "label" in row else ""
        lines.append(f"row {i + 1}{label}")
        lines.append(f"  text:           {row['text']}")
        if "text_pair" in row:
            lines.append(f"  text_pair:      {row['text_pair']}")
        ids = batch["input_ids"][i].tolist()
        lines.append(f"  tokens:         {' '.join(tokenizer.convert_ids_to_tokens(ids))}")
        for key in ("input_ids", "token_type_ids", "attention_mask"):
            if key in batch:
                lines.append(f"  {key + ':':<16}{batch[key][i].tolist()}")
    return "\n".join(lines)


def show_stats(split: str, stats, max_seq_length: int) -> str:
    p = stats.percentiles()
    return "\n".join(
        [
            f"{split}: {stats.rows} rows",
            f"  tokens per row: p50 {p['p50']}, p90 {p['p90']}, p99 {p['p99']}, max {p['max']} (max_seq_length {max_seq_length})",
            f"  truncated:      {stats.truncated} rows ({stats.truncated_share:.1%})",
            f"  [UNK]:          {stats.unk_rate:.2%} of tokens ({stats.unk_tokens} of {stats.content_tokens})",
        ]
    )


@exit_on_user_error
def main(argv=None) -> str:
    model_args, data_args, training_args, preview_args = parse_args(
        argv, dataclass_types=(*run_dataclasses(), PreviewArguments)
    )
    setup_logging()
    config = load_config(model_args)
    tokenizer = load_tokenizer(model_args.tokenizer_name or model_args.model_name_or_path, model_args, config)
    check_settings(data_args, config, tokenizer, model_args.model_name_or_path)
    task = load_task_data(data_args, training_args.seed, cache_dir=model_args.cache_dir)
    if preview_args.split not in task.splits:
        raise UserError(
            f"no {preview_args.split!r} split in this recipe; it has {list(task.splits)}",
            fix="pass --split with one of those",
        )
    rows = task.splits[preview_args.split]
    tokenized, stats = tokenize_splits(DatasetDict({preview_args.split: rows}), tokenizer, data_args)
    shown = [{**rows[i], **tokenized[preview_args.split][i]} for i in range(min(preview_args.num_rows, len(rows)))]
    text = (
        show_rows(shown, tokenizer, task.labels.names)
        + "\n\n"
        + show_stats(preview_args.split, stats[preview_args.split], data_args.max_seq_length)
    )
    print(text)
    return text


if __name__ == "__main__":
    main(sys.argv[1:])
