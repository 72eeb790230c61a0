"""How a model's outputs become probabilities and predictions: `probabilities` and `Decision`, with numpy only (the
torch-free runtime of export folders uses them as training and evaluation do)."""

from dataclasses import dataclass

import numpy as np

from bertcls.errors import UserError


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits.astype(np.float64) - logits.max(axis=-1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=-1, keepdims=True)


def sigmoid(logits: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-logits.astype(np.float64)))


def probabilities(logits: np.ndarray, multi_label: bool = False) -> np.ndarray:
    """Softmax over classes, or a sigmoid per label for multi-label models. A model with one output is a regression
    model (num_labels 1, as transformers decides; a classifier has at least two classes): its output is the
    predicted value, passed through as it is."""
    if logits.shape[-1] == 1:
        return logits.astype(np.float64)
    return sigmoid(logits) if multi_label else softmax(logits)


@dataclass(frozen=True)
class Decision:
    """How probabilities become predictions, in one place for training, evaluation, predict, export and serve.

    Single-label: the most probable class; with two classes and a `threshold` (--decision_threshold, or tuned by
    --tune_threshold), the `positive` class when its probability is at least the threshold. Multi-label: every
    label whose probability is at least its threshold (one for all labels, or one per label)."""

    multi_label: bool = False
    threshold: float | tuple[float, ...] | None = None  # None: argmax (single-label), 0.5 (multi-label)
    positive: int = 1  # two classes: the class id whose precision/recall/F1 are reported and `threshold` applies to
    regression: bool = False  # the prediction is the model's one output, a number

    @classmethod
    def of(cls, labels, data_args) -> "Decision":
        """The decision stored with a model or given as flags: --positive_label, --decision_threshold,
        --multi_label_threshold and --label_thresholds (tuned per label)."""
        if getattr(labels, "regression", False):
            for flag in ("decision_threshold", "label_thresholds"):
                if getattr(data_args, flag, None) is not None:
                    raise UserError(f"--{flag}: a regression model predicts a number, not classes", fix="drop it")
            return cls(regression=True)
        positive = labels.label2id.get(getattr(data_args, "positive_label", None), 1)
        if labels.multi_label:
            per_label = getattr(data_args, "label_thresholds", None)
            if per_label is not None and len(per_label) != len(labels):
                raise UserError(
                    f"--label_thresholds has {len(per_label)} values, but the model has {len(labels)} labels",
                    fix="give one threshold per label, in label order, or drop --label_thresholds",
                )
            threshold = tuple(per_label) if per_label is not None else data_args.multi_label_threshold
            return cls(True, threshold, positive)
        threshold = getattr(data_args, "decision_threshold", None)
        if threshold is not None and len(labels) != 2:
            raise UserError(
                f"--decision_threshold applies to two-class tasks; this one has {len(labels)} classes",
                fix="drop --decision_threshold",
            )
        return cls(False, threshold, positive)

    def __call__(self, probs: np.ndarray) -> np.ndarray:
        """Class ids (single-label), a 0/1 matrix of the chosen labels (multi-label), or the predicted values
        (regression)."""
        if self.regression or probs.shape[-1] == 1:
            return np.asarray(probs, dtype=np.float64).reshape(len(probs), -1)[:, 0]
        if self.multi_label:
            threshold = 0.5 if self.threshold is None else np.asarray(self.threshold)
            return (probs >= threshold).astype(int)
        if self.threshold is None or probs.shape[-1] != 2:
            return probs.argmax(axis=-1)
        return np.where(probs[:, self.positive] >= self.threshold, self.positive, 1 - self.positive)
