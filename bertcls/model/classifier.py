"""A FINE-TUNED folder (what run_classification.py wrote) as one object: TrainedClassifier.

It holds the weights, the tokenizer, the label maps and how inputs were built (`bertcls_preprocessing` in
config.json: columns, max_seq_length, truncation, head_tail, sliding windows, threshold), and builds inputs exactly
as training did. Eval-only runs, `bertcls.shipping.predict`, `bertcls.shipping.export` and `bertcls.shipping.serve` all go through it.
A pretrained checkpoint (what a user starts from, its head untrained) is checkpoints.py's; this module refuses one.
"""

import dataclasses
import logging
import os
import time

import numpy as np
import torch
from datasets import Dataset
from transformers import AutoConfig, AutoModelForSequenceClassification, DataCollatorWithPadding, PreTrainedModel

from bertcls.config.arguments import DataArguments
from bertcls.data.labels import LabelSpace, as_number, canonical_label, label_list
from bertcls.data.loading import multi_hot
from bertcls.data.tokenization import (
    Encoder,
    WindowEncoder,
    aggregate_windows,
    check_settings,
    encode_windows,
    position_limit,
)
from bertcls.errors import UserError
from bertcls.evaluation.metrics import (
    Decision,
    classification_metrics,
    multi_label_metrics,
    probabilities,
    regression_metrics,
)
from bertcls.model.checkpoints import CONFIG_FILE, check_local_folder, from_pretrained, load_tokenizer
from bertcls.model.heads import HEAD_KEY, EncoderClassifier
from bertcls.model.losses import MULTI_LABEL, REGRESSION

logger = logging.getLogger(__name__)

PREPROCESSING_KEY = "bertcls_preprocessing"
# How inputs were built and predictions read; everything that uses a fine-tuned folder builds them the same way.
PREPROCESSING_KEYS = (
    "text_column",
    "text_column_delimiter",  # joins a comma-separated --text_column's columns
    "text_pair_column",
    "label_column",
    "max_seq_length",
    "truncation",
    "truncation_side",
    "head_tokens",
    "sliding_window",
    "stride",
    "window_aggregation",
    "multi_label_threshold",
    "label_thresholds",
    "positive_label",
    "decision_threshold",
)
MODEL_INPUTS = ("input_ids", "token_type_ids", "attention_mask")


def remember_preprocessing(config, data_args, labels=None) -> None:
    """Store how inputs were built, so whatever loads the folder builds them the same way."""
    settings = {k: getattr(data_args, k) for k in PREPROCESSING_KEYS}
    if labels is not None and labels.multi_label:
        settings["label_delimiter"] = labels.delimiter
    setattr(config, PREPROCESSING_KEY, settings)


def store_preprocessing(folder: str, data_args, labels) -> None:
    """Rewrite a saved folder's stored preprocessing (e.g. with thresholds chosen after it was saved)."""
    config = AutoConfig.from_pretrained(folder)
    remember_preprocessing(config, data_args, labels)
    config.save_pretrained(folder)


def trained_labels(config) -> LabelSpace:
    """The model's labels, in id order, and how a multi-label model joins them."""
    trained = getattr(config, PREPROCESSING_KEY, None) or {}
    return LabelSpace(
        tuple(config.id2label[i] for i in range(config.num_labels)),
        multi_label=config.problem_type == MULTI_LABEL,
        delimiter=trained.get("label_delimiter") or "|",
        regression=config.problem_type == REGRESSION or config.num_labels == 1,
    )


def load_trained_model(path: str) -> PreTrainedModel:
    """The torch model of a fine-tuned folder, stock or custom head. A folder whose classification head was never
    trained (a pretrained encoder) is refused: its predictions would come from random head weights."""
    check_local_folder(path)
    if os.path.isdir(path) and not os.path.isfile(os.path.join(path, CONFIG_FILE)):
        raise _not_fine_tuned(path, "it has no config.json (a release checkpoint)")
    config = AutoConfig.from_pretrained(path)
    model_class = EncoderClassifier if getattr(config, HEAD_KEY, None) else AutoModelForSequenceClassification
    try:
        model, info = from_pretrained(model_class, path, config=config)
    except (OSError, ValueError, RuntimeError) as e:
        raise UserError(f"could not load the fine-tuned model in {path}: {str(e).splitlines()[0]}") from None
    if info["missing_keys"]:
        missing = sorted(info["missing_keys"])
        raise _not_fine_tuned(path, f"{', '.join(missing[:4])}{' ...' if len(missing) > 4 else ''} not in its weights")
    return model.eval()


def _not_fine_tuned(path: str, why: str) -> UserError:
    return UserError(
        f"{path} is not a fine-tuned classifier: its classification head was never trained ({why})",
        fix=f"fine-tune it first: python run_classification.py --model_name_or_path {path} --train_file ... "
        "--output_dir ..., then use that output_dir",
    )


class TorchBackend:
    """Forward passes of the torch model under inference_mode, on `device` (default: cuda when available);
    `bf16`: under bf16 autocast (weights stay fp32; matrix products run in bf16)."""

    tensor_type = "pt"

    def __init__(self, model: PreTrainedModel, device: str | None = None, bf16: bool = False):
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.model = model.to(self.device).eval()
        self.bf16 = bf16
        self.name = "torch_bf16" if bf16 else "torch"

    @torch.inference_mode()
    def __call__(self, batch: dict) -> np.ndarray:
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16):
            output = self.model(**{k: v.to(self.device) for k, v in batch.items()})
        return output.logits.float().cpu().numpy()


def cpu_has_bf16() -> bool:
    """Whether this CPU has bf16 instructions (AVX512-BF16 or AMX), where bf16 autocast pays on the CPU."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((line.split(":", 1)[1].split() for line in f if line.startswith("flags")), [])
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


ONNX_FILE = "model.onnx"  # an export folder's model (bertcls.shipping.export); its config.json says how it was made
EXPORT_KEY = "bertcls_export"
BACKENDS = ("torch", "torch_bf16", "onnx")
AUTO = "auto"  # --backend auto: the fastest backend within the parity gate, measured on the user's rows (pick_fastest)
BACKEND_CHOICES = (*BACKENDS, AUTO)
AUTO_MIN_AGREEMENT = 0.99  # share of rows on which a faster form must choose the label torch fp32 chooses
AUTO_ROUNDS = 3


class OnnxBackend:
    """Forward passes of an exported model (bertcls.shipping.export) with ONNX Runtime on the CPU: the same interface as
    TorchBackend, fed numpy batches. `threads` sets ONNX Runtime's intra-op threads (default: its own choice)."""

    name = "onnx"
    tensor_type = "np"

    def __init__(self, path: str, threads: int | None = None):
        import onnxruntime

        options = onnxruntime.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
        self.threads = threads or "onnxruntime's default (one per physical core)"
        self.path = path
        self.session = onnxruntime.InferenceSession(path, options, providers=["CPUExecutionProvider"])
        self.input_names = [i.name for i in self.session.get_inputs()]

    def __call__(self, batch: dict) -> np.ndarray:
        # The graph takes exactly the inputs it was exported with, as int64; the collator may add others.
        feed = {name: np.asarray(batch[name], dtype=np.int64) for name in self.input_names}
        return self.session.run(None, feed)[0].astype(np.float32, copy=False)


def folder_backend(path: str) -> str:
    """The backend a folder holds weights for: torch (a run's folder) or onnx (an export folder)."""
    if os.path.isfile(os.path.join(path, ONNX_FILE)) and not any(
        os.path.isfile(os.path.join(path, f)) for f in ("model.safetensors", "pytorch_model.bin")
    ):
        return "onnx"
    return "torch"


def _load_onnx(path: str, threads: int | None):
    """Config, tokenizer and OnnxBackend of an export folder, refusing a folder that holds no ONNX model."""
    if not os.path.isdir(path):
        raise UserError(f"model folder not found: {path}", fix="check --model_name_or_path")
    model_file = os.path.join(path, ONNX_FILE)
    if not os.path.isfile(model_file):
        raise UserError(
            f"{path} holds no {ONNX_FILE}: --backend onnx runs a folder written by bertcls.shipping.export",
            fix=f"export it first: python -m bertcls export --model_name_or_path {path} --output_dir EXPORT_DIR, "
            "then use EXPORT_DIR (or --backend torch on this folder)",
        )
    config = AutoConfig.from_pretrained(path)
    return config, load_tokenizer(path, config=config), OnnxBackend(model_file, threads)


class TrainedClassifier:
    """A fine-tuned folder: `load(path)`, then `data_args(...)`, `predict_rows(rows, data_args)` or
    `predict_texts(texts)`."""

    def __init__(self, path: str, config, tokenizer, backend):
        self.path = path
        self.config = config
        self.tokenizer = tokenizer
        self.backend = backend
        self.labels = trained_labels(config)
        self.preprocessing = dict(getattr(config, PREPROCESSING_KEY, None) or {})

    @classmethod
    def load(
        cls, path: str, device: str | None = None, backend: str | None = None, threads: int | None = None
    ) -> "TrainedClassifier":
        """A run's folder (backend torch) or an export folder (backend onnx); `backend=None` takes the one the
        folder holds weights for. `threads` is ONNX Runtime's thread count (torch: torch.set_num_threads)."""
        backend = backend or folder_backend(path)
        if backend == "onnx":
            if device not in (None, "cpu"):
                raise UserError(f"--backend onnx runs on the CPU, not on {device}", fix="drop --device")
            return cls(path, *_load_onnx(path, threads))
        if backend not in ("torch", "torch_bf16"):
            raise UserError(f"unknown backend {backend!r}", fix=f"use one of {', '.join(BACKENDS)}")
        if folder_backend(path) == "onnx":
            raise UserError(
                f"{path} is an ONNX export (model.onnx, no torch weights)",
                fix="use --backend onnx on it, or --backend torch on the folder it was exported from",
            )
        model = load_trained_model(path)
        tokenizer = load_tokenizer(path, config=model.config)
        return cls(path, model.config, tokenizer, TorchBackend(model, device, bf16=backend == "torch_bf16"))

    @property
    def model(self) -> PreTrainedModel:
        return self.backend.model

    def data_args(self, base: DataArguments | None = None, given=()) -> DataArguments:
        """How to build inputs: the settings named in `given` as `base` has them (the user's flags), the others
        as the model was trained (stored in its config), else `base`'s. The length default is capped at the
        model's position limit. Logged where the user's value differs from the trained one; checked."""
        base = base or DataArguments()
        chosen, differs = {}, []
        for key in PREPROCESSING_KEYS:
            if key in given or key not in self.preprocessing:
                continue
            chosen[key] = self.preprocessing[key]
        for key in set(given) & set(self.preprocessing):
            if getattr(base, key) != self.preprocessing[key]:
                differs.append(f"--{key} {getattr(base, key)} (trained with {self.preprocessing[key]})")
        if "max_seq_length" not in chosen and "max_seq_length" not in given:
            chosen["max_seq_length"] = min(base.max_seq_length, position_limit(self.config) or base.max_seq_length)
        if differs:
            logger.warning("%s: inputs built differently from training: %s", self.path, "; ".join(differs))
        data_args = dataclasses.replace(base, **chosen)
        check_settings(data_args, self.config, self.tokenizer, self.path)
        return data_args

    def decision(self, data_args) -> Decision:
        """How this model's probabilities become predictions: its stored (or tuned) thresholds and positive label,
        unless data_args (the user's flags) say otherwise."""
        return Decision.of(self.labels, data_args)

    # -- inputs, built as in training ---------------------------------------------------------------------------

    def encode(self, rows: Dataset, data_args, source=None) -> Dataset:
        """Model inputs for a standardized split (text / text_pair columns): one row per text, or one per window
        under --sliding_window. `source` (data.Source) names the file in messages about its rows."""
        if data_args.sliding_window:
            return encode_windows(rows, self.tokenizer, data_args)
        encoder = Encoder(self.tokenizer, data_args, source)
        return rows.map(encoder, batched=True, with_indices=True, desc="Tokenizing")

    def logits(self, encoded: Dataset, num_rows: int, data_args, batch_size: int = 64) -> np.ndarray:
        """Logits per input row, in row order; windows are combined by --window_aggregation."""
        columns = [c for c in MODEL_INPUTS if c in encoded.column_names]
        features = encoded.select_columns(columns)
        lengths = np.asarray(encoded["length"][:])
        logits = self._forward(lambda rows: features.select(rows).to_dict(), lengths, batch_size)
        if data_args.sliding_window:
            logits = aggregate_windows(logits, encoded["row"][:], num_rows, data_args.window_aggregation)
        return logits

    def _forward(self, take, lengths: np.ndarray, batch_size: int, progress: bool = True) -> np.ndarray:
        """Logits of every row, `take(row_indices)` giving their model inputs as columns. Rows run longest first
        (batches of similar length need little padding) and come back in row order; `progress`: a tqdm bar."""
        from tqdm.auto import tqdm

        if batch_size < 1:
            raise UserError(f"--batch_size must be at least 1, got {batch_size}")
        order = np.argsort(-lengths, kind="stable")
        collator = DataCollatorWithPadding(self.tokenizer, return_tensors=self.backend.tensor_type)
        logits = np.empty((len(order), self.config.num_labels), dtype=np.float32)
        steps = range(0, len(order), batch_size)
        for start in tqdm(steps, desc="Predicting", unit="batch", disable=len(steps) < 2 or not progress):
            rows = order[start : start + batch_size]
            logits[rows] = self.backend(collator(_as_rows(take(rows))))
        return logits

    def predict_rows(self, rows: Dataset, data_args, batch_size: int = 64, source=None) -> np.ndarray:
        """Probabilities (softmax, or a sigmoid per label) for every row of a standardized split."""
        encoded = self.encode(rows, data_args, source)
        return self.probabilities(self.logits(encoded, len(rows), data_args, batch_size))

    def predict_texts(self, texts: list[str], pairs: list[str] | None = None, data_args=None, batch_size=64):
        """Probabilities for in-memory texts (the server's path): the same encoders, without a datasets round trip."""
        data_args = data_args or self.data_args()
        encoded = self.encode_texts(texts, pairs, data_args)
        return self.probabilities(self.combine(self.forward_features(encoded, batch_size), encoded, data_args))

    def encode_texts(self, texts: list[str], pairs: list[str] | None, data_args) -> dict:
        """Model inputs of in-memory texts as columns (one row per text, or per window under --sliding_window), with
        each row's `length` and, for windows, the `row` of the text it came from."""
        batch = {"text": list(texts)}
        if pairs is not None:
            batch["text_pair"] = list(pairs)
        indices = list(range(len(texts)))
        if data_args.sliding_window:
            encoded = WindowEncoder(self.tokenizer, data_args)(batch, indices)
        else:
            encoded = Encoder(self.tokenizer, data_args)(batch, indices)
        encoded["texts"] = len(texts)
        return encoded

    def forward_features(self, encoded: dict, batch_size: int = 64, progress: bool = True) -> np.ndarray:
        """Logits of every model-input row of `encoded` (encode_texts' columns), in row order."""
        columns = [k for k in MODEL_INPUTS if k in encoded]
        take = lambda rows: {k: [encoded[k][i] for i in rows] for k in columns}  # noqa: E731
        return self._forward(take, np.asarray(encoded["length"]), batch_size, progress)

    @staticmethod
    def combine(logits: np.ndarray, encoded: dict, data_args) -> np.ndarray:
        """One row of logits per text: windows are combined by --window_aggregation."""
        if data_args.sliding_window:
            return aggregate_windows(logits, encoded["row"], encoded["texts"], data_args.window_aggregation)
        return logits

    def probabilities(self, logits: np.ndarray) -> np.ndarray:
        return probabilities(logits, self.labels.multi_label)


def pick_fastest(fp32: TrainedClassifier, texts, pairs=None, data_args=None) -> tuple[TrainedClassifier, dict]:
    """--backend auto, given the folder loaded on its own backend: an export folder stays on ONNX Runtime; a run's
    folder runs on torch fp32, or on torch bf16 autocast where the CPU has bf16 instructions, bf16 chooses the label
    fp32 chooses on at least AUTO_MIN_AGREEMENT of `texts` (the user's own rows) and is faster on them (median of
    interleaved rounds). Returns the classifier and the figures it was chosen by."""
    if fp32.backend.name == "onnx":
        return fp32, {"chosen": "onnx", "why": "an export folder runs on ONNX Runtime"}
    if fp32.backend.device.type != "cpu" or not cpu_has_bf16() or not len(texts):
        why = "no bf16 instructions on this CPU" if not cpu_has_bf16() else "nothing to measure bf16 on"
        return fp32, {"chosen": "torch", "why": why}
    path = fp32.path
    model = fp32.model
    bf16 = TrainedClassifier(path, fp32.config, fp32.tokenizer, TorchBackend(model, "cpu", bf16=True))
    data_args = data_args or fp32.data_args()
    encoded = fp32.encode_texts(list(texts), list(pairs) if pairs is not None else None, data_args)
    decision = fp32.decision(data_args)
    speeds, decided = {"torch": [], "torch_bf16": []}, {}
    for _ in range(AUTO_ROUNDS):
        for name, classifier in (("torch", fp32), ("torch_bf16", bf16)):
            start = time.perf_counter()
            logits = classifier.forward_features(encoded, 32, progress=False)
            speeds[name].append(len(encoded["length"]) / (time.perf_counter() - start))
            decided[name] = decision(classifier.probabilities(classifier.combine(logits, encoded, data_args)))
    same = decided["torch"] == decided["torch_bf16"]
    agreement = float((same.all(axis=-1) if same.ndim > 1 else same).mean())
    figures = {name: float(np.median(v)) for name, v in speeds.items()}
    faster = figures["torch_bf16"] > figures["torch"]
    chosen = "torch_bf16" if faster and agreement >= AUTO_MIN_AGREEMENT else "torch"
    report = {"chosen": chosen, "rows": len(texts), "rows_per_s": figures, "bf16_agreement": agreement}
    report["min_agreement"] = AUTO_MIN_AGREEMENT
    logger.info(
        "--backend auto: %s (on %d rows: torch fp32 %.1f, torch bf16 %.1f model inputs/s; bf16 agrees on %.2f%%, "
        "at least %.0f%% needed)",
        chosen,
        len(texts),
        figures["torch"],
        figures["torch_bf16"],
        100 * agreement,
        100 * AUTO_MIN_AGREEMENT,
    )
    return (bf16 if chosen == "torch_bf16" else fp32), report


def gold_scores(gold, predicted: np.ndarray, labels: LabelSpace, positive: int | None = None) -> dict | None:
    """The metrics of `predicted` (class ids, or 0/1 rows for a multi-label model) against gold label values as a
    file holds them, over the rows whose gold labels the model knows (`known` of `rows`); None when there are none."""
    if labels.regression:  # gold values as numbers; rows without one (empty, or not a number) are not scored
        known = [(_number(g), p) for g, p in zip(gold, predicted)]
        known = [(g, p) for g, p in known if g is not None]
        if not known:
            return None
        scores = regression_metrics([g for g, _ in known], [p for _, p in known])
        return {**scores, "known": len(known), "rows": len(predicted)}
    ids = labels.label2id
    if labels.multi_label:
        gold_sets = [label_list(g, labels.delimiter) for g in gold]
        known = [
            (multi_hot(g, ids), p) for g, p in zip(gold_sets, predicted) if g is not None and all(n in ids for n in g)
        ]
    else:
        pairs = [(ids.get(canonical_label(g)), p) for g, p in zip(gold, predicted)]
        known = [(g, p) for g, p in pairs if g is not None]
    if not known:
        return None
    references, predictions = np.array([g for g, _ in known]), np.array([p for _, p in known])
    if labels.multi_label:
        scores = multi_label_metrics(references, predictions)
    else:
        scores = classification_metrics(references, predictions, len(labels), positive)
    return {**scores, "known": len(known), "rows": len(predicted)}


def _number(value) -> float | None:
    try:
        return as_number(value)
    except ValueError:
        return None


def _as_rows(columns: dict) -> list[dict]:
    """{"input_ids": [[...], ...], ...} -> [{"input_ids": [...], ...}, ...], the collator's input."""
    keys = list(columns)
    return [dict(zip(keys, values)) for values in zip(*(columns[k] for k in keys))]
