"""Batch inference with a model folder written by run_classification.py.

    python -m bertcls.predict --model_name_or_path outputs/chnsenticorp --input_file new.tsv --output_file preds.csv

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
import torch
from tqdm.auto import tqdm
from transformers import DataCollatorWithPadding, HfArgumentParser

from .arguments import DataArguments
from .data import check_columns, multi_hot, read_file, standardize
from .errors import UserError, exit_on_user_error
from .labels import LabelSpace, canonical_label, label_list
from .logs import setup_logging
from .metrics import classification_metrics, decide, multi_label_metrics, probabilities
from .modeling import PREPROCESSING_KEY, PREPROCESSING_KEYS, load_trained_model, trained_labels
from .outputs import predictions_frame, write_predictions
from .tokenization import Encoder, aggregate_windows, check_settings, encode_windows, load_tokenizer
from .trainer import longest_first

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
    label_column: str = field(default="label", metadata={"help": "Gold labels, if present, are kept and scored."})
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
    device: str | None = field(
        default=None, metadata={"help": "cpu, cuda, cuda:1 ... (default: cuda when available)."}
    )


def data_arguments(args: PredictArguments, trained: dict) -> DataArguments:
    """Command line first, then what the model was trained with, then DataArguments' defaults."""
    chosen = {}
    for name in PREPROCESSING_KEYS:
        value = getattr(args, name)
        chosen[name] = value if value is not None else trained.get(name, getattr(DataArguments, name, None))
    return dataclasses.replace(
        DataArguments(),
        **chosen,
        label_column=args.label_column,
        column_names=args.column_names,
        encoding=args.encoding,
    )


@torch.inference_mode()
def predict_logits(model, encoded, collator, batch_size: int, device) -> np.ndarray:
    """Logits for every row of `encoded`, computed longest first and returned in row order."""
    order = longest_first(encoded)
    columns = [c for c in ("input_ids", "token_type_ids", "attention_mask") if c in encoded.column_names]
    logits = np.empty((len(encoded), model.config.num_labels), dtype=np.float32)
    for start in tqdm(range(0, len(order), batch_size), desc="Predicting", unit="batch"):
        rows = order[start : start + batch_size]
        batch = collator(encoded.select(rows).select_columns(columns).to_list())
        output = model(**{k: v.to(device) for k, v in batch.items()})
        logits[rows] = output.logits.float().cpu().numpy()
    return logits


@exit_on_user_error
def main(argv=None):
    setup_logging()
    (args,) = HfArgumentParser(PredictArguments).parse_args_into_dataclasses(args=argv)
    model = load_trained_model(args.model_name_or_path)
    tokenizer = load_tokenizer(args.model_name_or_path)
    data_args = data_arguments(args, getattr(model.config, PREPROCESSING_KEY, None) or {})
    check_settings(data_args, model.config, tokenizer, args.model_name_or_path)

    raw, source = read_file(args.input_file, data_args)
    check_columns(raw, source, data_args, need_label=False)
    rows, _ = standardize(raw, source, data_args, labels=None, split="test")
    if data_args.sliding_window:
        encoded = encode_windows(rows, tokenizer, data_args)
    else:
        encoded = rows.map(Encoder(tokenizer, data_args), batched=True, with_indices=True, desc="Tokenizing")
    if args.batch_size < 1:
        raise UserError(f"--batch_size must be at least 1, got {args.batch_size}")

    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    model.to(device).eval()
    logits = predict_logits(model, encoded, DataCollatorWithPadding(tokenizer), args.batch_size, device)
    if data_args.sliding_window:
        logits = aggregate_windows(logits, encoded["row"], len(rows), data_args.window_aggregation)
        logger.info(
            "%d rows cut into %d windows (%s of their logits)", len(rows), len(encoded), data_args.window_aggregation
        )
    labels = trained_labels(model.config)
    probs = probabilities(logits, labels.multi_label)
    frame = predictions_frame(raw.to_pandas(), probs, labels, data_args.multi_label_threshold)
    write_predictions(args.output_file, frame)
    print(f"{len(frame)} predictions written to {args.output_file}")
    if args.label_column in raw.column_names:
        print_scores(
            raw[args.label_column], decide(probs, labels.multi_label, data_args.multi_label_threshold), labels
        )
    return frame


def print_scores(gold: list, predicted: np.ndarray, labels: LabelSpace) -> None:
    """Accuracy and macro-F1 (multi-label: subset accuracy, micro- and macro-F1) when the input carries labels.
    `predicted` holds class ids, or 0/1 rows for a multi-label model."""
    ids = labels.label2id
    if labels.multi_label:
        gold_sets = [label_list(g, labels.delimiter) for g in gold]
        pairs = list(zip(gold_sets, predicted))
        known = [(multi_hot(g, ids), p) for g, p in pairs if g is not None and all(n in ids for n in g)]
        if not known:
            return
        scores = multi_label_metrics(np.array([g for g, _ in known]), np.array([p for _, p in known]))
        print(
            f"scored {len(known)} of {len(pairs)} rows with known gold labels: subset accuracy "
            f"{scores['subset_accuracy']:.4f}, micro-F1 {scores['f1_micro']:.4f}, macro-F1 {scores['f1_macro']:.4f}"
        )
        return
    pairs = [(ids.get(canonical_label(g)), p) for g, p in zip(gold, predicted)]
    known = [(g, p) for g, p in pairs if g is not None]
    if not known:
        return
    scores = classification_metrics(np.array([g for g, _ in known]), np.array([p for _, p in known]), len(labels))
    print(
        f"scored {len(known)} of {len(pairs)} rows with known gold labels: "
        f"accuracy {scores['accuracy']:.4f}, macro-F1 {scores['f1_macro']:.4f}"
    )


if __name__ == "__main__":
    main(sys.argv[1:])
