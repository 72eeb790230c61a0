"""Batch inference with a model folder written by run_classification.py.

    python -m bertcls predict --model_name_or_path outputs/chnsenticorp --input_file new.tsv --output_file preds.csv

Rows are read and tokenized exactly as in training (columns, max_seq_length and truncation default to what the
model was trained with, stored in its config.json), run longest first in batches under torch.inference_mode, and
written in input order with the same columns as predictions.csv: the input columns, `prediction`, `score`,
`prob_<label>` (multi-label models: `prediction` lists every label at or above the threshold, no `score`).
`--sliding_window` classifies every window of a long text and combines the windows' logits.
"""

import dataclasses
import logging
import os
import sys
from dataclasses import dataclass, field

import numpy as np

from bertcls.config.arguments import DataArguments, check_ranges
from bertcls.config.recipes import parse_args
from bertcls.data.labels import LabelSpace
from bertcls.data.loading import check_columns, read_file, standardize
from bertcls.errors import UserError, exit_on_user_error
from bertcls.evaluation.outputs import predictions_frame
from bertcls.files import atomic_path
from bertcls.logs import setup_logging
from bertcls.model.runtime import (
    AUTO,
    BACKEND_CHOICES,
    PREPROCESSING_KEYS,
    Classifier,
    gold_scores,
    load_classifier,
)

logger = logging.getLogger(__name__)


@dataclass
class PredictArguments:
    model_name_or_path: str = field(metadata={"help": "A model folder written by run_classification.py."})
    input_file: str = field(metadata={"help": "Rows to classify: .csv, .tsv, .json, .jsonl, .txt or .parquet."})
    output_file: str = field(
        metadata={
            "help": "Where to write the predictions; the format follows the extension: .csv, .tsv, .jsonl, .json "
            "(a list of row objects) or .parquet. Neither the input file nor a file in the model folder."
        }
    )
    text_column: str | None = field(default=None, metadata={"help": "Text column (default: as in training)."})
    text_pair_column: str | None = field(
        default=None, metadata={"help": "Second text column (default: as in training)."}
    )
    label_column: str | None = field(
        default=None,
        metadata={"help": "Gold labels, if the file has them, are kept and scored (default: as in training)."},
    )
    column_names: list[str] | None = field(default=None, metadata={"help": "Column names of a header-less file."})
    encoding: str = field(default="utf-8", metadata={"help": "Text encoding of the input file."})
    batch_size: int = field(default=64, metadata={"help": "Rows per forward pass."})
    max_seq_length: int | None = field(default=None, metadata={"help": "Tokens per input (default: as in training)."})
    truncation: str | None = field(default=None, metadata={"help": "Truncation strategy (default: as in training)."})
    truncation_side: str | None = field(default=None, metadata={"help": "right or left (default: as in training)."})
    head_tokens: int | None = field(default=None, metadata={"help": "For head_tail (default: as in training)."})
    sliding_window: bool | None = field(
        default=None,
        metadata={
            "help": "Classify overlapping windows of long texts instead of truncating (default: as in training)."
        },
    )
    stride: int | None = field(
        default=None, metadata={"help": "Tokens consecutive windows share (default: as in training)."}
    )
    window_aggregation: str | None = field(
        default=None,
        metadata={"help": "mean or max of the windows' logits (default: as in training).", "choices": ["mean", "max"]},
    )
    multi_label_threshold: float | None = field(
        default=None, metadata={"help": "Multi-label models: predict labels at or above this probability."}
    )
    label_thresholds: list[float] | None = field(
        default=None,
        metadata={"help": "Multi-label models: one threshold per label, in label order (default: as stored)."},
    )
    decision_threshold: float | None = field(
        default=None,
        metadata={
            "help": "Two-class models: predict the positive label when its probability is at least this (default: "
            "as stored, e.g. tuned by --tune_threshold; else the more probable label)."
        },
    )
    positive_label: str | None = field(
        default=None, metadata={"help": "Two-class models: the label --decision_threshold applies to (as stored)."}
    )
    device: str | None = field(
        default=None, metadata={"help": "cpu, cuda, cuda:1 ... (default: cuda when available)."}
    )
    backend: str | None = field(
        default=None,
        metadata={
            "help": "torch or torch_bf16 (bf16 autocast) on a run's folder, onnx on a folder written by bertcls "
            "export, or auto: on a run's folder the faster of torch and torch_bf16 on the first 64 rows of "
            "--input_file, bf16 only where it chooses fp32's label on 99%% of them (logged with the figures). "
            "Default: the one the folder holds weights for.",
            "choices": list(BACKEND_CHOICES),
        },
    )
    blank_texts: str = field(
        default="empty",
        metadata={
            "help": "A row whose text is blank: empty (it keeps its place with an empty prediction, and the rows are "
            "counted in the log) or error (refuse the file, naming the rows).",
            "choices": ["empty", "error"],
        },
    )


RANGES = {"batch_size": (1, None, True, True), "head_tokens": (0, None, True, True), "stride": (0, None, True, True)}
OUTPUT_FORMATS = (".csv", ".tsv", ".jsonl", ".json", ".parquet")


def data_arguments(args: PredictArguments, classifier: Classifier) -> DataArguments:
    """Settings given on the command line first, then what the model was trained with, then the defaults."""
    given = {name: getattr(args, name) for name in PREPROCESSING_KEYS if getattr(args, name, None) is not None}
    base = dataclasses.replace(DataArguments(), column_names=args.column_names, encoding=args.encoding)
    return classifier.data_args(dataclasses.replace(base, **given), given=set(given))


def check_output_file(args: PredictArguments) -> None:
    """Refuse an --output_file whose writing would destroy something: the input file itself, or a file in the model
    folder (its weights, config, tokenizer); and one whose extension names no format we write."""
    out = os.path.realpath(args.output_file)
    if os.path.exists(args.input_file) and out == os.path.realpath(args.input_file):
        raise UserError(
            f"--output_file {args.output_file} is the input file: writing it would replace the rows being predicted",
            fix="pass another --output_file, e.g. predictions.csv",
        )
    model = os.path.realpath(args.model_name_or_path)
    if os.path.isdir(model) and os.path.commonpath([out, model]) == model:
        raise UserError(
            f"--output_file {args.output_file} lies in the model folder {args.model_name_or_path}",
            fix="write the predictions outside the model folder",
        )
    if os.path.isdir(out):
        raise UserError(f"--output_file {args.output_file} is a folder", fix="name a file, e.g. predictions.csv")
    ext = os.path.splitext(out)[1].lower()
    if ext not in OUTPUT_FORMATS:
        raise UserError(
            f"--output_file {args.output_file}: unknown output format {ext or '(no extension)'!r}",
            fix=f"end it in one of {', '.join(OUTPUT_FORMATS)}",
        )


def write_frame(path: str, frame) -> None:
    """The predictions in the format the extension names, written whole or not at all."""
    ext = os.path.splitext(path)[1].lower()
    with atomic_path(path) as tmp:
        if ext in (".csv", ".tsv"):
            frame.to_csv(tmp, index=False, float_format="%.6f", sep="\t" if ext == ".tsv" else ",")
        elif ext in (".jsonl", ".json"):
            frame.to_json(tmp, orient="records", lines=ext == ".jsonl", force_ascii=False)
        else:
            frame.to_parquet(tmp, index=False)


def blank_rows(raw, data_args) -> list[int]:
    """Rows whose text (or text pair) is missing or only whitespace."""
    columns = [c for c in (data_args.text_column, data_args.text_pair_column) if c and c in raw.column_names]
    blank = set()
    for column in columns:
        blank.update(i for i, v in enumerate(raw[column]) if v is None or not str(v).strip())
    return sorted(blank)


@exit_on_user_error
def main(argv=None):
    setup_logging()
    (args,) = parse_args(argv, (PredictArguments,))
    check_ranges(args, RANGES)
    backend = None if args.backend == AUTO else args.backend
    classifier = load_classifier(args.model_name_or_path, device=args.device, backend=backend)
    check_output_file(args)
    data_args = data_arguments(args, classifier)

    raw, source = read_file(args.input_file, data_args)
    check_columns(raw, source, data_args, need_label=False)
    blank = blank_rows(raw, data_args) if args.blank_texts == "empty" else []
    skipped = set(blank)
    kept = [i for i in range(len(raw)) if i not in skipped]
    labels = classifier.labels
    probs = np.zeros((len(raw), len(labels)))
    if kept:
        rows, _ = standardize(raw.select(kept) if blank else raw, source, data_args, labels=None, split="test")
        if args.backend == AUTO and classifier.backend.name != "onnx":  # an export folder stays on ONNX Runtime
            from bertcls.model.classifier import pick_fastest

            sample = rows.select(range(min(64, len(rows))))
            pairs = sample["text_pair"] if "text_pair" in sample.column_names else None
            classifier, _ = pick_fastest(classifier, sample["text"], pairs, data_args)
        predicted = classifier.predict_rows(rows, data_args, args.batch_size, source)
        probs = probs.astype(predicted.dtype)
        probs[kept] = predicted
    decision = classifier.decision(data_args)
    frame = predictions_frame(raw.to_pandas(), probs, labels, decision, source)  # with each row's file line
    if blank:
        # The row keeps its place (rows in = rows out); it has no prediction, and says so with empty cells.
        frame["prediction"] = frame["prediction"].astype(object)
        frame.loc[blank, "prediction"] = ""
        frame.loc[blank, [c for c in frame.columns if c == "score" or c.startswith("prob_")]] = np.nan
        logger.warning(
            "%d of %d rows have a blank text and get an empty prediction (%s); --blank_texts error refuses them",
            len(blank),
            len(raw),
            source.rows(blank),
        )
    write_frame(args.output_file, frame)
    print(
        f"{len(frame)} predictions written to {args.output_file}"
        + (f" ({len(blank)} rows with a blank text left empty)" if blank else "")
    )
    if data_args.label_column in raw.column_names and kept:
        gold = raw.select(kept)[data_args.label_column]
        print_scores(gold, decision(probs[kept]), labels)
    return frame


def print_scores(gold: list, predicted: np.ndarray, labels: LabelSpace) -> None:
    """Accuracy and macro-F1 (multi-label: subset accuracy, micro- and macro-F1) when the input carries labels.
    `predicted` holds class ids, or 0/1 rows for a multi-label model."""
    scores = gold_scores(gold, predicted, labels)
    if scores is None:
        return
    if labels.regression:
        print(
            f"scored {scores['known']} of {scores['rows']} rows with gold values: mse {scores['mse']:.4f}, "
            f"pearson {scores['pearson']:.4f}, spearman {scores['spearman']:.4f}"
        )
        return
    shown = (
        f"subset accuracy {scores['subset_accuracy']:.4f}, micro-F1 {scores['f1_micro']:.4f}"
        if labels.multi_label
        else f"accuracy {scores['accuracy']:.4f}"
    )
    print(
        f"scored {scores['known']} of {scores['rows']} rows with known gold labels: {shown}, "
        f"macro-F1 {scores['f1_macro']:.4f}"
    )


if __name__ == "__main__":
    main(sys.argv[1:])
