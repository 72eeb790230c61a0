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
import sys
from dataclasses import dataclass, field

import numpy as np
from transformers import HfArgumentParser

from bertcls.config.arguments import DataArguments
from bertcls.data.labels import LabelSpace
from bertcls.data.loading import check_columns, read_file, standardize
from bertcls.errors import UserError, exit_on_user_error
from bertcls.evaluation.outputs import predictions_frame, write_predictions
from bertcls.logs import setup_logging
from bertcls.model.classifier import BACKENDS, PREPROCESSING_KEYS, TrainedClassifier, gold_scores

logger = logging.getLogger(__name__)


@dataclass
class PredictArguments:
    model_name_or_path: str = field(metadata={"help": "A model folder written by run_classification.py."})
    input_file: str = field(metadata={"help": "Rows to classify: .csv, .tsv, .json, .jsonl, .txt or .parquet."})
    output_file: str = field(metadata={"help": "Where to write the predictions (.csv)."})
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
            "help": "torch (a run's folder) or onnx (a folder written by bertcls.shipping.export); default: the one the "
            "folder holds weights for.",
            "choices": list(BACKENDS),
        },
    )


def data_arguments(args: PredictArguments, classifier: TrainedClassifier) -> DataArguments:
    """Settings given on the command line first, then what the model was trained with, then the defaults."""
    given = {name: getattr(args, name) for name in PREPROCESSING_KEYS if getattr(args, name, None) is not None}
    base = dataclasses.replace(DataArguments(), column_names=args.column_names, encoding=args.encoding)
    return classifier.data_args(dataclasses.replace(base, **given), given=set(given))


@exit_on_user_error
def main(argv=None):
    setup_logging()
    (args,) = HfArgumentParser(PredictArguments).parse_args_into_dataclasses(args=argv)
    if args.batch_size < 1:
        raise UserError(f"--batch_size must be at least 1, got {args.batch_size}")
    classifier = TrainedClassifier.load(args.model_name_or_path, device=args.device, backend=args.backend)
    data_args = data_arguments(args, classifier)

    raw, source = read_file(args.input_file, data_args)
    check_columns(raw, source, data_args, need_label=False)
    rows, _ = standardize(raw, source, data_args, labels=None, split="test")
    probs = classifier.predict_rows(rows, data_args, args.batch_size, source)
    labels = classifier.labels
    decision = classifier.decision(data_args)
    frame = predictions_frame(raw.to_pandas(), probs, labels, decision, source)  # with each row's file line
    write_predictions(args.output_file, frame)
    print(f"{len(frame)} predictions written to {args.output_file}")
    if data_args.label_column in raw.column_names:
        print_scores(raw[data_args.label_column], decision(probs), labels)
    return frame


def print_scores(gold: list, predicted: np.ndarray, labels: LabelSpace) -> None:
    """Accuracy and macro-F1 (multi-label: subset accuracy, micro- and macro-F1) when the input carries labels.
    `predicted` holds class ids, or 0/1 rows for a multi-label model."""
    scores = gold_scores(gold, predicted, labels)
    if scores is None:
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
