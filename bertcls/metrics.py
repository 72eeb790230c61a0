"""Metrics over the whole evaluation set (never averaged per batch), computed offline with scikit-learn."""

import logging
import os

import numpy as np
from sklearn.metrics import accuracy_score, classification_report, confusion_matrix, precision_recall_fscore_support

from .errors import UserError

logger = logging.getLogger(__name__)


def classification_metrics(references: np.ndarray, predictions: np.ndarray, num_labels: int) -> dict[str, float]:
    """accuracy, macro precision/recall/F1, micro and weighted F1; for two classes also the positive class's
    (id 1) precision/recall/F1. `samples` is the number of rows evaluated."""
    ids = list(range(num_labels))
    result = {"accuracy": accuracy_score(references, predictions)}
    for average in ("macro", "micro", "weighted"):
        p, r, f, _ = precision_recall_fscore_support(
            references, predictions, labels=ids, average=average, zero_division=0
        )
        if average == "macro":
            result.update(precision_macro=p, recall_macro=r)
        result[f"f1_{average}"] = f
    if num_labels == 2:
        p, r, f, _ = precision_recall_fscore_support(
            references, predictions, labels=[1], average=None, zero_division=0
        )
        result.update(precision=p[0], recall=r[0], f1=f[0])
    result = {k: float(v) for k, v in result.items()}
    result["samples"] = int(len(references))
    return result


def load_extra_metrics(names: list[str]) -> list:
    """Load `evaluate` metrics up front, so a missing one fails before training, not after it."""
    if not names:
        return []
    import evaluate

    metrics = []
    for name in names:
        try:
            metrics.append(evaluate.load(name))
        except Exception as e:
            local = os.path.exists(name)
            raise UserError(
                f"could not load extra metric {name!r}: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}",
                fix="check the folder"
                if local
                else "Hub metrics need network access; offline, pass the path of a local metric folder",
            ) from None
    return metrics


class ComputeMetrics:
    """The Trainer's compute_metrics: logits and labels of the whole (gathered) evaluation set."""

    def __init__(self, num_labels: int, extra_metrics: list | None = None):
        self.num_labels = num_labels
        self.extra_metrics = extra_metrics or []

    def __call__(self, eval_prediction) -> dict[str, float]:
        logits = (
            eval_prediction.predictions[0]
            if isinstance(eval_prediction.predictions, tuple)
            else eval_prediction.predictions
        )
        predictions = np.argmax(logits, axis=-1)
        references = eval_prediction.label_ids
        result = classification_metrics(references, predictions, self.num_labels)
        for metric in self.extra_metrics:
            extra = metric.compute(predictions=predictions, references=references)
            result.update({k: float(v) for k, v in extra.items() if np.isscalar(v)})
        return result


def report_text(references: np.ndarray, predictions: np.ndarray, names: list[str]) -> str:
    """Per-class precision/recall/F1/support, as scikit-learn prints it."""
    return classification_report(
        references, predictions, labels=list(range(len(names))), target_names=names, digits=4, zero_division=0
    )


def confusion(references: np.ndarray, predictions: np.ndarray, num_labels: int) -> np.ndarray:
    """Rows are true labels, columns predicted labels."""
    return confusion_matrix(references, predictions, labels=list(range(num_labels)))
