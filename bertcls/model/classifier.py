"""A FINE-TUNED folder (what run_classification.py wrote) as one object, with torch: TrainedClassifier.

It holds the weights, the tokenizer, the label maps and how inputs were built (`bertcls_preprocessing` in
config.json: columns, max_seq_length, truncation, head_tail, sliding windows, threshold), and builds inputs exactly
as training did: the encoding, padding and decision are runtime.Classifier's, which this class extends with the
torch model (fp32 or bf16 autocast) and transformers' tokenizer. Eval-only runs and `bertcls export` use it;
`bertcls predict` and `bertcls serve` reach it through runtime.load_classifier for a run's folder only.
A pretrained checkpoint (what a user starts from, its head untrained) is checkpoints.py's; this module refuses one.
"""

import logging
import os
import time

import numpy as np
import torch
from transformers import AutoConfig, AutoModelForSequenceClassification, PreTrainedModel

from bertcls.errors import UserError
from bertcls.model.checkpoints import CONFIG_FILE, check_local_folder, from_pretrained, load_tokenizer
from bertcls.model.heads import HEAD_KEY, EncoderClassifier
from bertcls.model.runtime import (
    BACKENDS,
    PREPROCESSING_KEY,
    PREPROCESSING_KEYS,
    Classifier,
    cpu_has_bf16,
    folder_backend,
)

logger = logging.getLogger(__name__)


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

    def __init__(self, model: PreTrainedModel, device: str | None = None, bf16: bool = False):
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.model = model.to(self.device).eval()
        self.bf16 = bf16
        self.name = "torch_bf16" if bf16 else "torch"

    @torch.inference_mode()
    def __call__(self, batch: dict) -> np.ndarray:
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16):
            output = self.model(**{k: torch.from_numpy(v).to(self.device) for k, v in batch.items()})
        return output.logits.float().cpu().numpy()


AUTO_MIN_AGREEMENT = 0.99  # share of rows on which a faster form must choose the label torch fp32 chooses
AUTO_ROUNDS = 3


class TrainedClassifier(Classifier):
    """A fine-tuned folder: `load(path)`, then `data_args(...)`, `predict_rows(rows, data_args)` or
    `predict_texts(texts)`. A run's folder on torch (fp32 or bf16 autocast), an export folder on ONNX Runtime
    (runtime.Classifier's torch-free path, with the run's flags and datasets around it)."""

    @classmethod
    def load(
        cls, path: str, device: str | None = None, backend: str | None = None, threads: int | None = None
    ) -> "TrainedClassifier":
        """A run's folder (backend torch) or an export folder (backend onnx); `backend=None` takes the one the
        folder holds weights for. `threads` is ONNX Runtime's thread count (torch: torch.set_num_threads)."""
        backend = backend or folder_backend(path)
        if backend == "onnx":
            return super().load(path, device, backend, threads)
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
