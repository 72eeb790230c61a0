"""Batch inference with a model folder written by run_classification.py.

    python -m bertcls.predict --model_name_or_path outputs/chnsenticorp --input_file new.tsv --output_file preds.csv

Rows are read and tokenized exactly as in training (columns, max_seq_length and truncation default to what the
model was trained with, stored in its config.json), run longest first in batches under torch.inference_mode, and
written in input order with the same columns as predictions.csv: the input columns, `prediction`, `score`,
`prob_<label>`.
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
from .data import check_columns, read_file, standardize
from .errors import UserError, exit_on_user_error
from .labels import canonical_label
from .logs import setup_logging
from .metrics import classification_metrics
from .modeling import PREPROCESSING_KEY, load_trained_model
from .outputs import predictions_frame, write_predictions
from .tokenization import Encoder, check_settings, load_tokenizer
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
    device: str | None = field(
        default=None, metadata={"help": "cpu, cuda, cuda:1 ... (default: cuda when available)."}
    )


def data_arguments(args: PredictArguments, trained: dict) -> DataArguments:
    """Command line first, then what the model was trained with, then DataArguments' defaults."""
    chosen = {}
    for name in ("text_column", "text_pair_column", "max_seq_length", "truncation", "truncation_side", "head_tokens"):
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
    encoded = rows.map(Encoder(tokenizer, data_args), batched=True, with_indices=True, desc="Tokenizing")
    if args.batch_size < 1:
        raise UserError(f"--batch_size must be at least 1, got {args.batch_size}")

    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    model.to(device).eval()
    logits = predict_logits(model, encoded, DataCollatorWithPadding(tokenizer), args.batch_size, device)
    names = [model.config.id2label[i] for i in range(model.config.num_labels)]
    frame = predictions_frame(raw.to_pandas(), logits, names)
    write_predictions(args.output_file, frame)
    print(f"{len(frame)} predictions written to {args.output_file}")
    if args.label_column in raw.column_names:
        print_scores(raw[args.label_column], logits, names)
    return frame


def print_scores(gold: list, logits: np.ndarray, names: list[str]) -> None:
    """Accuracy and macro-F1 when the input carries labels the model knows."""
    ids = {name: i for i, name in enumerate(names)}
    pairs = [(ids.get(canonical_label(g)), p) for g, p in zip(gold, logits.argmax(axis=-1))]
    known = [(g, p) for g, p in pairs if g is not None]
    if not known:
        return
    scores = classification_metrics(np.array([g for g, _ in known]), np.array([p for _, p in known]), len(names))
    print(
        f"scored {len(known)} of {len(pairs)} rows with known gold labels: "
        f"accuracy {scores['accuracy']:.4f}, macro-F1 {scores['f1_macro']:.4f}"
    )


if __name__ == "__main__":
    main(sys.argv[1:])
