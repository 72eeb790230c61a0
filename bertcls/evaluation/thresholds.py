"""--tune_threshold: the decision threshold(s) that maximise a metric on held-out rows (the validation split, or
the out-of-fold predictions of --kfold; never the test split).

Two classes: one threshold on the positive label's probability. Multi-label: one threshold per label, chosen by
coordinate ascent (each label in turn takes the candidate that maximises the metric with the others fixed, over
two passes; for macro-F1 this is each label's own best threshold). Candidates are 0.02, 0.04, ..., 0.98; among
equally good ones the one nearest 0.5 wins, so a threshold only moves when that pays.
"""

import logging
from dataclasses import replace

import numpy as np

from bertcls.errors import UserError
from bertcls.evaluation.metrics import Decision, classification_metrics, multi_label_metrics

logger = logging.getLogger(__name__)

CANDIDATES = np.round(np.arange(0.02, 0.99, 0.02), 2)  # 0.02, 0.04, ..., 0.98
PASSES = 2


def tunable_metric(metric: str | None, multi_label: bool) -> str:
    """The metric to maximise: --metric_for_best_model without its eval_ prefix, default f1_macro."""
    name = (metric or "f1_macro").removeprefix("eval_")
    known = set(
        multi_label_metrics(np.eye(2), np.eye(2)) if multi_label else classification_metrics([0, 1], [0, 1], 2)
    )
    known -= {"samples", "hamming_loss"}
    if name not in known:
        raise UserError(
            f"--tune_threshold maximises --metric_for_best_model, but {name!r} does not depend on a threshold or is "
            "not reported for this task",
            fix=f"pass --metric_for_best_model with one of {', '.join(sorted(known))}",
        )
    return name


def _score(references, predictions, multi_label: bool, positive: int, metric: str) -> float:
    if multi_label:
        return multi_label_metrics(references, predictions)[metric]
    return classification_metrics(references, predictions, 2, positive)[metric]


def _best(scores: list[float]) -> int:
    """The index of the best score; among ties, the candidate nearest 0.5."""
    scores = np.asarray(scores)
    tied = np.flatnonzero(scores >= scores.max() - 1e-12)
    return int(tied[np.argmin(np.abs(CANDIDATES[tied] - 0.5))])


def tune(probs: np.ndarray, references: np.ndarray, decision: Decision, metric: str) -> tuple[Decision, dict]:
    """The decision with tuned thresholds, and a summary: the metric at the default and at the tuned thresholds."""
    references = np.asarray(references)
    multi_label = decision.multi_label
    if not multi_label and probs.shape[-1] != 2:
        raise UserError(
            f"--tune_threshold applies to two-class and multi-label tasks; this one has {probs.shape[-1]} classes",
            fix="drop --tune_threshold",
        )
    default = Decision(multi_label, None, decision.positive)
    before = _score(references, default(probs), multi_label, decision.positive, metric)
    if multi_label:
        thresholds = np.full(probs.shape[-1], 0.5)
        for _ in range(PASSES):
            for label in range(len(thresholds)):
                scores = []
                for candidate in CANDIDATES:
                    thresholds[label] = candidate
                    scores.append(_score(references, (probs >= thresholds).astype(int), True, 0, metric))
                thresholds[label] = CANDIDATES[_best(scores)]
        tuned = replace(default, threshold=tuple(float(t) for t in thresholds))
    else:
        scores = [
            _score(references, replace(default, threshold=float(t))(probs), False, decision.positive, metric)
            for t in CANDIDATES
        ]
        tuned = replace(default, threshold=float(CANDIDATES[_best(scores)]))
    after = _score(references, tuned(probs), multi_label, decision.positive, metric)
    summary = {"metric": metric, "at_default": before, "tuned": after, "threshold": tuned.threshold}
    logger.info(
        "--tune_threshold: %s %.4f at the default threshold, %.4f at %s (chosen on %d held-out rows)",
        metric,
        before,
        after,
        tuned.threshold,
        len(references),
    )
    return tuned, summary


def store(data_args, tuned: Decision) -> None:
    """Put the tuned thresholds where the model remembers them (its stored preprocessing)."""
    if tuned.multi_label:
        data_args.label_thresholds = list(tuned.threshold)
    else:
        data_args.decision_threshold = tuned.threshold


def check(data_args, training_args, labels, has_validation: bool) -> str | None:
    """Before anything trains: the metric --tune_threshold will maximise, or None when it is off; one clear error
    when it cannot work."""
    if not data_args.tune_threshold:
        return None
    if not training_args.do_train:
        raise UserError(
            "--tune_threshold stores the thresholds it picks with the model a run trains, and this run trains none",
            fix="add --do_train, or pass --decision_threshold / --label_thresholds to an evaluation or predict",
        )
    if labels.regression:
        raise UserError(
            "--tune_threshold picks a class threshold, and this is a regression task (one number per row)",
            fix="drop --tune_threshold",
        )
    if not labels.multi_label and len(labels) != 2:
        raise UserError(
            f"--tune_threshold applies to two-class and multi-label tasks; this one has {len(labels)} classes",
            fix="drop --tune_threshold",
        )
    if not has_validation and not training_args.kfold:
        raise UserError(
            "--tune_threshold picks thresholds on the validation split, and there is none (the test split is never "
            "used for it)",
            fix="pass --validation_file or a --validation_split_percentage above 0, or use --kfold",
        )
    return tunable_metric(training_args.metric_for_best_model, labels.multi_label)


def results(summary: dict, prefix: str) -> dict:
    """The tuned thresholds and the metric at the default and at the tuned thresholds, as result keys."""
    metric = summary["metric"]
    return {
        "tuned_threshold": summary["threshold"],
        f"{prefix}_{metric}_at_default_threshold": summary["at_default"],
        f"{prefix}_{metric}_at_tuned_threshold": summary["tuned"],
    }


def describe(summary: dict, where: str) -> str:
    """The analysis.md section on the tuned thresholds."""
    threshold = summary["threshold"]
    shown = ", ".join(f"{t:.2f}" for t in threshold) if isinstance(threshold, tuple) else f"{threshold:.2f}"
    kind = "per label, in label order" if isinstance(threshold, tuple) else "on the positive label's probability"
    return (
        f"--tune_threshold chose {shown} ({kind}) on the {where} rows: {summary['metric']} "
        f"{summary['at_default']:.4f} at the default threshold, {summary['tuned']:.4f} at the tuned one. The model "
        "stores it (config.json); predict, eval-only runs, export and serve use it. The test split was not used."
    )
