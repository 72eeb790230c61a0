"""Metrics over the whole evaluation set (never averaged per batch), computed offline with scikit-learn.

Single-label: a softmax, and the most probable class (or, for two classes with a decision threshold, the positive
class when its probability reaches the threshold). Multi-label: a sigmoid per label, and every label whose
probability is at or above its threshold is predicted; `subset_accuracy` counts rows whose whole label set is right.
`Decision` is that rule, in one place (evaluation/decision.py, which needs only numpy).
"""

import logging
import os

import numpy as np
from sklearn.metrics import (
    accuracy_score,
    classification_report,
    confusion_matrix,
    hamming_loss,
    precision_recall_fscore_support,
    top_k_accuracy_score,
)

from bertcls.errors import UserError
from bertcls.evaluation.decision import Decision, probabilities

logger = logging.getLogger(__name__)

TOP_K_ABOVE = 5  # tasks with more classes than this also report top-3 and top-5 accuracy


def classification_metrics(
    references: np.ndarray, predictions: np.ndarray, num_labels: int, positive: int | None = 1
) -> dict[str, float]:
    """accuracy, macro precision/recall/F1, micro and weighted F1; for two classes also the precision/recall/F1 of
    the `positive` class id. `samples` is the number of rows evaluated.

    Macro averages run over the classes present in the references or the predictions: a class absent from both
    has no score to average (sklearn would count it as 0), which matters for small validation splits and k-fold
    folds that lack a class."""
    references, predictions = np.asarray(references), np.asarray(predictions)
    present = sorted(set(references.tolist()) | set(predictions.tolist())) or list(range(num_labels))
    result = {"accuracy": accuracy_score(references, predictions)}
    for average in ("macro", "micro", "weighted"):
        p, r, f, _ = precision_recall_fscore_support(
            references, predictions, labels=present, average=average, zero_division=0
        )
        if average == "macro":
            result.update(precision_macro=p, recall_macro=r)
        result[f"f1_{average}"] = f
    if num_labels == 2:
        p, r, f, _ = precision_recall_fscore_support(
            references, predictions, labels=[1 if positive is None else positive], average=None, zero_division=0
        )
        result.update(precision=p[0], recall=r[0], f1=f[0])
    result = {k: float(v) for k, v in result.items()}
    result["samples"] = int(len(references))
    return result


def regression_metrics(references: np.ndarray, predictions: np.ndarray) -> dict[str, float]:
    """mse, rmse, mae, r2, and Pearson's and Spearman's correlation (scipy) of predicted against gold values.
    A correlation is undefined (NaN) when either side is constant, e.g. a model that predicts one value."""
    from scipy.stats import pearsonr, spearmanr
    from sklearn.metrics import mean_absolute_error, mean_squared_error, r2_score

    references = np.asarray(references, dtype=np.float64).reshape(-1)
    predictions = np.asarray(predictions, dtype=np.float64).reshape(-1)
    mse = mean_squared_error(references, predictions)
    result = {"mse": mse, "rmse": np.sqrt(mse), "mae": mean_absolute_error(references, predictions)}
    result["r2"] = r2_score(references, predictions) if len(references) > 1 else float("nan")
    constant = len(references) < 2 or np.ptp(references) == 0 or np.ptp(predictions) == 0
    result["pearson"] = float("nan") if constant else pearsonr(references, predictions).statistic
    result["spearman"] = float("nan") if constant else spearmanr(references, predictions).statistic
    result = {k: float(v) for k, v in result.items()}
    result["samples"] = int(len(references))
    return result


# Metrics where lower is better (the Trainer's greater_is_better must be False for them).
LOWER_IS_BETTER = ("loss", "mse", "rmse", "mae", "hamming_loss")


def multi_label_metrics(references: np.ndarray, predictions: np.ndarray) -> dict[str, float]:
    """Multi-hot references and predictions: subset accuracy, Hamming loss, micro/macro precision, recall and F1,
    weighted and samples-average F1. `samples` is the number of rows evaluated.

    Macro averages run over the labels present in some reference or prediction; in the samples average a row
    with no gold and no predicted label is right (F1 1, where sklearn gives 0)."""
    references, predictions = np.asarray(references).astype(int), np.asarray(predictions).astype(int)
    present = np.flatnonzero(references.any(axis=0) | predictions.any(axis=0)).tolist()
    result = {
        "subset_accuracy": accuracy_score(references, predictions),
        "hamming_loss": hamming_loss(references, predictions),
    }
    for average in ("micro", "macro", "weighted"):
        p, r, f, _ = precision_recall_fscore_support(
            references, predictions, labels=present or None, average=average, zero_division=0
        )
        if average in ("micro", "macro"):
            result.update({f"precision_{average}": p, f"recall_{average}": r})
        result[f"f1_{average}"] = f
    result["f1_samples"] = samples_f1(references, predictions)
    result = {k: float(v) for k, v in result.items()}
    result["samples"] = int(len(references))
    return result


def samples_f1(references: np.ndarray, predictions: np.ndarray) -> float:
    """Mean over rows of 2TP / (2TP + FP + FN), 1 for a row with no gold and no predicted label."""
    tp = (references & predictions).sum(axis=1)
    wrong = (references ^ predictions).sum(axis=1)
    denominator = 2 * tp + wrong
    per_row = np.where(denominator == 0, 1.0, 2 * tp / np.maximum(denominator, 1))
    return float(per_row.mean()) if len(per_row) else 0.0


def top_k_accuracies(references: np.ndarray, probs: np.ndarray) -> dict[str, float]:
    """Top-3 and top-5 accuracy (the gold class among the k most probable), for tasks with more than 5 classes."""
    n = probs.shape[-1]
    if n <= TOP_K_ABOVE:
        return {}
    labels = list(range(n))
    return {f"top{k}_accuracy": float(top_k_accuracy_score(references, probs, k=k, labels=labels)) for k in (3, 5)}


# --metric_name values (the reference script's evaluate metric) this module computes anyway, under its own names.
BUILT_IN_METRICS = {
    "accuracy": "accuracy",
    "f1": "f1 / f1_macro",
    "precision": "precision / precision_macro",
    "recall": "recall / recall_macro",
    "mse": "mse",
    "mae": "mae",
    "pearsonr": "pearson",
    "spearmanr": "spearman",
    "r_squared": "r2",
}


def metric_names(extra_metrics: list[str], metric_name: str | None) -> list[str]:
    """The `evaluate` metrics to load: --extra_metrics, and --metric_name unless it is computed here anyway."""
    names = list(extra_metrics or [])
    if metric_name in BUILT_IN_METRICS:
        logger.info(
            "--metric_name %s: computed here (scikit-learn/scipy) as %s; nothing to download",
            metric_name,
            BUILT_IN_METRICS[metric_name],
        )
    elif metric_name and metric_name not in names:
        names.append(metric_name)
    return names


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

    def __init__(self, num_labels: int, extra_metrics: list | None = None, decision: Decision | None = None):
        self.num_labels = num_labels
        self.extra_metrics = extra_metrics or []
        self.decision = decision or Decision()
        self.multi_label = self.decision.multi_label
        self.regression = self.decision.regression
        if self.multi_label and self.extra_metrics:
            raise UserError(
                "--extra_metrics take one class id per row; they do not apply to --multi_label",
                fix="drop --extra_metrics (micro/macro/samples F1 and subset accuracy are computed already)",
            )

    def __call__(self, eval_prediction) -> dict[str, float]:
        logits = (
            eval_prediction.predictions[0]
            if isinstance(eval_prediction.predictions, tuple)
            else eval_prediction.predictions
        )
        return self.score(probabilities(logits, self.multi_label), eval_prediction.label_ids)

    def score(self, probs: np.ndarray, references: np.ndarray) -> dict[str, float]:
        """The metrics of probabilities (of one model, or averaged over several) against the references."""
        predictions = self.decision(probs)
        if self.regression:
            result = regression_metrics(references, predictions)
            for metric in self.extra_metrics:
                extra = metric.compute(predictions=predictions, references=np.asarray(references).reshape(-1))
                result.update({k: float(v) for k, v in extra.items() if np.isscalar(v)})
            return result
        if self.multi_label:
            return multi_label_metrics(references, predictions)
        result = classification_metrics(references, predictions, self.num_labels, self.decision.positive)
        result.update(top_k_accuracies(references, probs))
        for metric in self.extra_metrics:
            extra = metric.compute(predictions=predictions, references=references)
            result.update({k: float(v) for k, v in extra.items() if np.isscalar(v)})
        return result

    def keys(self) -> set[str] | None:
        """The metric names score() returns, or None when extra metrics add names known only after computing."""
        if self.extra_metrics:
            return None
        if self.regression:
            return set(regression_metrics(np.arange(3.0), np.arange(3.0)))
        if self.multi_label:
            return set(multi_label_metrics(np.eye(2), np.eye(2)))
        references = np.arange(self.num_labels)
        return set(classification_metrics(references, references, self.num_labels)) | set(
            top_k_accuracies(references, np.eye(self.num_labels))
        )


def report_text(references: np.ndarray, predictions: np.ndarray, names: list[str]) -> str:
    """Per-class (per-label, for multi-hot input) precision/recall/F1/support, as scikit-learn prints it."""
    return classification_report(
        references, predictions, labels=list(range(len(names))), target_names=names, digits=4, zero_division=0
    )


def confusion(references: np.ndarray, predictions: np.ndarray, num_labels: int) -> np.ndarray:
    """Rows are true labels, columns predicted labels."""
    return confusion_matrix(references, predictions, labels=list(range(num_labels)))
