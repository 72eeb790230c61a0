"""A fine-tuned folder's inference without torch: what an export folder needs, and what every folder shares.

`Classifier` builds a folder's inputs as training did (data/tokenization.py's encoders), runs them through a
backend, combines windows and turns logits into probabilities and decisions. An export folder (bertcls export) runs
entirely here, with numpy, tokenizers (its tokenizer.json through `RustTokenizer`) and onnxruntime: loading one
imports neither torch, transformers, datasets nor scikit-learn, so `bertcls predict` and `bertcls serve` on it start
in a fraction of the time and memory of a run's folder. model/classifier.py's TrainedClassifier adds the torch side
(a run's folder, its weights and the HF tokenizer) on top of the same class, so both paths share one encoder, one
padding and one decision rule, and the export's parity check compares them.
"""

import dataclasses
import json
import logging
import os
from types import SimpleNamespace

import numpy as np

from bertcls.config.arguments import DataArguments
from bertcls.data.labels import LabelSpace, as_number, canonical_label, label_list, multi_hot
from bertcls.data.tokenization import (
    Encoder,
    WindowEncoder,
    aggregate_windows,
    check_settings,
    encode_windows,
    position_limit,
)
from bertcls.errors import UserError
from bertcls.evaluation.decision import Decision, probabilities

logger = logging.getLogger(__name__)

CONFIG_FILE = "config.json"
ONNX_FILE = "model.onnx"  # an export folder's model (bertcls.shipping.export); its config.json says how it was made
TOKENIZER_FILE = "tokenizer.json"
EXPORT_KEY = "bertcls_export"
BACKENDS = ("torch", "torch_bf16", "onnx")
AUTO = "auto"  # --backend auto: the fastest backend within the parity gate, measured on the user's rows (pick_fastest)
BACKEND_CHOICES = (*BACKENDS, AUTO)
MULTI_LABEL = "multi_label_classification"
REGRESSION = "regression"  # transformers' problem_type of a one-output model trained with MSE

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


def trained_labels(config) -> LabelSpace:
    """The model's labels, in id order, and how a multi-label model joins them."""
    trained = getattr(config, PREPROCESSING_KEY, None) or {}
    return LabelSpace(
        tuple(config.id2label[i] for i in range(config.num_labels)),
        multi_label=config.problem_type == MULTI_LABEL,
        delimiter=trained.get("label_delimiter") or "|",
        regression=config.problem_type == REGRESSION or config.num_labels == 1,
    )


def folder_backend(path: str) -> str:
    """The backend a folder holds weights for: torch (a run's folder) or onnx (an export folder)."""
    if os.path.isfile(os.path.join(path, ONNX_FILE)) and not any(
        os.path.isfile(os.path.join(path, f)) for f in ("model.safetensors", "pytorch_model.bin")
    ):
        return "onnx"
    return "torch"


def cpu_has_bf16() -> bool:
    """Whether this CPU has bf16 instructions (AVX512-BF16 or AMX), where bf16 autocast pays on the CPU."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((line.split(":", 1)[1].split() for line in f if line.startswith("flags")), [])
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def read_config(path: str) -> SimpleNamespace:
    """config.json as attributes, with id2label keyed by int (as transformers' PretrainedConfig has it): the keys
    inference reads (id2label, num_labels, problem_type, model_type, max_position_embeddings, the stored
    preprocessing), without importing transformers."""
    with open(os.path.join(path, CONFIG_FILE), encoding="utf-8") as f:
        values = json.load(f)
    id2label = {int(k): v for k, v in (values.get("id2label") or {"0": "LABEL_0", "1": "LABEL_1"}).items()}
    values.update(id2label=id2label, num_labels=len(id2label), problem_type=values.get("problem_type"))
    return SimpleNamespace(**values)


def pad_batch(rows: list[dict], pad_token_id: int, padding_side: str = "right") -> dict[str, np.ndarray]:
    """Model-input rows of different lengths as int64 arrays padded to the longest (what transformers'
    DataCollatorWithPadding does): input_ids with the pad id, attention_mask and token_type_ids with 0."""
    longest = max(len(row["input_ids"]) for row in rows)
    batch = {}
    for key in rows[0]:
        fill = pad_token_id if key == "input_ids" else 0
        out = np.full((len(rows), longest), fill, dtype=np.int64)
        for i, row in enumerate(rows):
            values = row[key]
            if padding_side == "left":
                out[i, longest - len(values) :] = values
            else:
                out[i, : len(values)] = values
        batch[key] = out
    return batch


class RustTokenizer:
    """A folder's tokenizer.json through the `tokenizers` library, called the way data/tokenization.py's encoders
    call a transformers fast tokenizer (which wraps the very same Rust tokenizer): batch or single texts, optional
    pairs, truncation with a side and a stride, overflowing windows, special-tokens masks. Truncation and padding
    are set per call, as transformers does, so the file's own truncation setting does not leak into a call."""

    def __init__(self, path: str):
        import tokenizers

        file = os.path.join(path, TOKENIZER_FILE)
        if not os.path.isfile(file):
            raise UserError(
                f"{path} holds no {TOKENIZER_FILE}", fix="export the folder again: python -m bertcls export"
            )
        self.rust = tokenizers.Tokenizer.from_file(file)
        settings = {}
        config_file = os.path.join(path, "tokenizer_config.json")
        if os.path.isfile(config_file):
            with open(config_file, encoding="utf-8") as f:
                settings = json.load(f)
        self.truncation_side = settings.get("truncation_side", "right")
        self.padding_side = settings.get("padding_side", "right")
        self.unk_token_id = self._special_id(settings.get("unk_token"), getattr(self.rust.model, "unk_token", None))
        self.pad_token_id = self._special_id(settings.get("pad_token"), "[PAD]") or 0

    def _special_id(self, *names) -> int | None:
        for name in names:
            name = name.get("content") if isinstance(name, dict) else name
            if name and self.rust.token_to_id(name) is not None:
                return self.rust.token_to_id(name)
        return None

    def num_special_tokens_to_add(self, pair: bool = False) -> int:
        return self.rust.num_special_tokens_to_add(pair)

    def __call__(
        self,
        texts,
        pairs=None,
        truncation=False,
        max_length: int | None = None,
        stride: int = 0,
        return_overflowing_tokens: bool = False,
        return_special_tokens_mask: bool = False,
        verbose: bool = True,
    ) -> dict:
        single = isinstance(texts, str)
        texts = [texts] if single else list(texts)
        if pairs is not None:
            pairs = [pairs] if single else list(pairs)
        self.rust.no_padding()
        if truncation:
            strategy = "longest_first" if truncation is True else truncation
            self.rust.enable_truncation(max_length, stride=stride, strategy=strategy, direction=self.truncation_side)
        else:
            self.rust.no_truncation()
        encodings = self.rust.encode_batch(texts if pairs is None else list(zip(texts, pairs)))
        out = {key: [] for key in MODEL_INPUTS}
        if return_special_tokens_mask:
            out["special_tokens_mask"] = []
        if return_overflowing_tokens:
            out["overflow_to_sample_mapping"] = []
        for i, encoding in enumerate(encodings):
            parts = [encoding, *encoding.overflowing] if return_overflowing_tokens else [encoding]
            for part in parts:
                out["input_ids"].append(part.ids)
                out["token_type_ids"].append(part.type_ids)
                out["attention_mask"].append(part.attention_mask)
                if return_special_tokens_mask:
                    out["special_tokens_mask"].append(part.special_tokens_mask)
                if return_overflowing_tokens:
                    out["overflow_to_sample_mapping"].append(i)
        if single and not return_overflowing_tokens:
            out = {key: values[0] for key, values in out.items()}
        return out


class OnnxBackend:
    """Forward passes of an exported model (bertcls.shipping.export) with ONNX Runtime on the CPU, fed padded numpy
    batches. `threads` sets ONNX Runtime's intra-op threads (default: its own choice)."""

    name = "onnx"

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
        # The graph takes exactly the inputs it was exported with, as int64.
        feed = {name: np.asarray(batch[name], dtype=np.int64) for name in self.input_names}
        return self.session.run(None, feed)[0].astype(np.float32, copy=False)


def load_export(path: str, threads: int | None = None):
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
    return read_config(path), RustTokenizer(path), OnnxBackend(model_file, threads)


def load_classifier(path: str, device: str | None = None, backend: str | None = None, threads: int | None = None):
    """Any fine-tuned folder's classifier: an export folder (or --backend onnx) torch-free, here; a run's folder on
    torch through TrainedClassifier (model/classifier.py), imported only then."""
    if (backend or folder_backend(path)) == "onnx":
        return Classifier.load(path, device, "onnx", threads)
    from bertcls.model.classifier import TrainedClassifier

    return TrainedClassifier.load(path, device, backend, threads)


class Classifier:
    """A fine-tuned folder for inference: `Classifier.load(export_folder)`, then `predict_texts(texts)`, or
    `encode_texts` / `forward_features` / `combine` / `probabilities` / `decision` step by step (the server's path).
    TrainedClassifier (model/classifier.py) is the same with torch, datasets and transformers' tokenizers."""

    def __init__(self, path: str, config, tokenizer, backend):
        self.path = path
        self.config = config
        self.tokenizer = tokenizer
        self.backend = backend
        self.labels = trained_labels(config)
        self.preprocessing = dict(getattr(config, PREPROCESSING_KEY, None) or {})

    @classmethod
    def load(cls, path: str, device: str | None = None, backend: str | None = None, threads: int | None = None):
        """An export folder on ONNX Runtime (the only backend without torch)."""
        if (backend or folder_backend(path)) != "onnx":
            raise UserError(f"{path}: running a torch model needs TrainedClassifier (bertcls.model.classifier)")
        if device not in (None, "cpu"):
            raise UserError(f"--backend onnx runs on the CPU, not on {device}", fix="drop --device")
        return cls(path, *load_export(path, threads))

    def decision(self, data_args) -> Decision:
        """How this model's probabilities become predictions: its stored (or tuned) thresholds and positive label,
        unless data_args (the user's flags) say otherwise."""
        return Decision.of(self.labels, data_args)

    def _forward(self, take, lengths: np.ndarray, batch_size: int, progress: bool = True) -> np.ndarray:
        """Logits of every row, `take(row_indices)` giving their model inputs as columns. Rows run longest first
        (batches of similar length need little padding) and come back in row order; `progress`: a tqdm bar."""
        if batch_size < 1:
            raise UserError(f"--batch_size must be at least 1, got {batch_size}")
        order = np.argsort(-lengths, kind="stable")
        logits = np.empty((len(order), self.config.num_labels), dtype=np.float32)
        steps = range(0, len(order), batch_size)
        if progress and len(steps) > 1:
            from tqdm.auto import tqdm

            steps = tqdm(steps, desc="Predicting", unit="batch")
        pad_id, side = self.tokenizer.pad_token_id or 0, getattr(self.tokenizer, "padding_side", "right")
        for start in steps:
            rows = order[start : start + batch_size]
            logits[rows] = self.backend(pad_batch(_as_rows(take(rows)), pad_id, side))
        return logits

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

    # -- the settings inputs are built with -----------------------------------------------------------------------

    def data_args(self, base=None, given=()):
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

    # -- a datasets split (predict, evaluation): rows.map with the same encoders ----------------------------------

    def encode(self, rows, data_args, source=None):
        """Model inputs for a standardized split (text / text_pair columns): one row per text, or one per window
        under --sliding_window. `source` (data.Source) names the file in messages about its rows."""
        if data_args.sliding_window:
            return encode_windows(rows, self.tokenizer, data_args)
        encoder = Encoder(self.tokenizer, data_args, source)
        return rows.map(encoder, batched=True, with_indices=True, desc="Tokenizing")

    def logits(self, encoded, num_rows: int, data_args, batch_size: int = 64) -> np.ndarray:
        """Logits per input row, in row order; windows are combined by --window_aggregation."""
        columns = [c for c in MODEL_INPUTS if c in encoded.column_names]
        features = encoded.select_columns(columns)
        lengths = np.asarray(encoded["length"][:])
        logits = self._forward(lambda rows: features.select(rows).to_dict(), lengths, batch_size)
        if data_args.sliding_window:
            logits = aggregate_windows(logits, encoded["row"][:], num_rows, data_args.window_aggregation)
        return logits

    def predict_rows(self, rows, data_args, batch_size: int = 64, source=None) -> np.ndarray:
        """Probabilities (softmax, or a sigmoid per label) for every row of a standardized split."""
        encoded = self.encode(rows, data_args, source)
        return self.probabilities(self.logits(encoded, len(rows), data_args, batch_size))


def gold_scores(gold, predicted: np.ndarray, labels: LabelSpace, positive: int | None = None) -> dict | None:
    """The metrics of `predicted` (class ids, or 0/1 rows for a multi-label model) against gold label values as a
    file holds them, over the rows whose gold labels the model knows (`known` of `rows`); None when there are none."""
    # Imported here: the metrics import scikit-learn, which serving an export never needs.
    from bertcls.evaluation.metrics import classification_metrics, multi_label_metrics, regression_metrics

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
    """{"input_ids": [[...], ...], ...} -> [{"input_ids": [...], ...}, ...]: one dict per model-input row."""
    keys = list(columns)
    return [dict(zip(keys, values)) for values in zip(*(columns[k] for k in keys))]
