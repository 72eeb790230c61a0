"""--tune_threshold: the decision threshold(s) that maximise a metric on held-out rows (the validation split, or
the out-of-fold predictions of --kfold; never the test split).

Two classes: one threshold on the positive label's probability. Multi-label: one threshold per label, chosen by
coordinate ascent (each label in turn takes the candidate that maximises the metric with the others fixed, over
two passes; for macro-F1 this is each label's own best threshold).

Candidates come from the probabilities themselves: the midpoints between consecutive distinct values (and below
the lowest, above the highest), so every way the rows can be cut is tried, also below 0.02 on a rare-positive task
whose positives are well ranked but all unlikely; beyond MAX_CANDIDATES distinct values, every k-th by rank. The
default 0.5 is always a candidate, so the stored threshold is never worse than the default on the rows it was
tuned on; among equally good candidates the one nearest 0.5 wins, so a threshold only moves when that pays.

Rows that lack a class, or hold fewer than MIN_CLASS_ROWS of one, cannot place a threshold between the classes:
a threshold "tuned" on them predicts the one class everywhere and scores perfectly on those rows alone. The
default is then kept (per label, for multi-label), with a warning in the log and in analysis.md.
"""

import logging
from dataclasses import replace

import numpy as np

from bertcls.errors import UserError
from bertcls.evaluation.decision import Decision
from bertcls.evaluation.metrics import classification_metrics, multi_label_metrics

logger = logging.getLogger(__name__)

DEFAULT = 0.5
MAX_CANDIDATES = 1024  # every cut of a validation split of up to ~1,000 rows; larger ones thinned by rank
MIN_CLASS_ROWS = 5  # held-out rows of each class (multi-label: with and without the label) needed to tune
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


def candidates(probs: np.ndarray) -> np.ndarray:
    """Thresholds that cut one column of probabilities every distinct way: midpoints between consecutive distinct
    values, one below the lowest and one above the highest (at most MAX_CANDIDATES, thinned by rank), and 0.5."""
    values = np.unique(np.concatenate([[0.0], np.asarray(probs, dtype=np.float64), [1.0]]))
    if len(values) > MAX_CANDIDATES + 1:
        values = values[np.unique(np.linspace(0, len(values) - 1, MAX_CANDIDATES + 1).round().astype(int))]
    return np.unique(np.concatenate([(values[:-1] + values[1:]) / 2, [DEFAULT]]))


def best(scores, grid: np.ndarray) -> float:
    """The candidate of the best score; among ties, the candidate nearest 0.5."""
    scores = np.asarray(scores)
    tied = np.flatnonzero(scores >= scores.max() - 1e-12)
    return float(grid[tied[np.argmin(np.abs(grid[tied] - DEFAULT))]])


def too_few(counts: dict[str, int]) -> str | None:
    """Why the rows cannot be tuned on (a class missing or too rare), or None."""
    short = {name: n for name, n in counts.items() if n < MIN_CLASS_ROWS}
    if not short:
        return None
    held = ", ".join(f"{n} {name}" for name, n in counts.items())
    return f"the rows hold {held}; tuning needs at least {MIN_CLASS_ROWS} of each"


def tune(probs: np.ndarray, references: np.ndarray, decision: Decision, metric: str) -> tuple[Decision, dict]:
    """The decision with tuned thresholds, and a summary: the metric at the default and at the tuned thresholds,
    and a `warning` when (some of) the default was kept because the rows lack a class."""
    references = np.asarray(references)
    multi_label = decision.multi_label
    if not multi_label and probs.shape[-1] != 2:
        raise UserError(
            f"--tune_threshold applies to two-class and multi-label tasks; this one has {probs.shape[-1]} classes",
            fix="drop --tune_threshold",
        )
    default = Decision(multi_label, None, decision.positive)
    before = _score(references, default(probs), multi_label, decision.positive, metric)
    warning = None
    if multi_label:
        references = references.astype(int)
        thresholds = np.full(probs.shape[-1], DEFAULT)
        kept = {}
        for label in range(len(thresholds)):
            reason = too_few({"with the label": int(references[:, label].sum()),
                              "without it": int(len(references) - references[:, label].sum())})  # fmt: skip
            if reason:
                kept[label] = reason
        for _ in range(PASSES):
            for label in (i for i in range(len(thresholds)) if i not in kept):
                grid, scores = candidates(probs[:, label]), []
                for candidate in grid:
                    thresholds[label] = candidate
                    scores.append(_score(references, (probs >= thresholds).astype(int), True, 0, metric))
                thresholds[label] = best(scores, grid)
        if kept:
            warning = "; ".join(f"label {label} kept {DEFAULT}: {reason}" for label, reason in kept.items())
        tuned = replace(default, threshold=tuple(float(t) for t in thresholds))
    else:
        positive = decision.positive
        warning = too_few({"positive": int((references == positive).sum()),
                           "negative": int((references != positive).sum())})  # fmt: skip
        if warning:
            tuned = default
        else:
            grid = candidates(probs[:, positive])
            scores = [
                _score(references, replace(default, threshold=float(t))(probs), False, positive, metric) for t in grid
            ]
            tuned = replace(default, threshold=best(scores, grid))
    after = _score(references, tuned(probs), multi_label, decision.positive, metric)
    shown = tuned.threshold if tuned.threshold is not None else DEFAULT
    summary = {"metric": metric, "at_default": before, "tuned": after, "threshold": shown, "rows": len(references)}
    if warning:
        summary["warning"] = warning
        logger.warning("--tune_threshold kept the default threshold %s", warning)
    logger.info(
        "--tune_threshold: %s %.4f at the default threshold, %.4f at %s (chosen on %d held-out rows)",
        metric,
        before,
        after,
        shown,
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
    multi = isinstance(threshold, tuple)
    shown = ", ".join(f"{t:.4g}" for t in threshold) if multi else f"{threshold:.4g}"
    kind = "per label, in label order" if multi else "on the positive label's probability"
    warning = summary.get("warning")
    if warning and not multi:
        return (
            f"**--tune_threshold kept the default threshold** ({DEFAULT}): {warning}, so the {where} rows "
            f"({summary['rows']}) cannot place a threshold between the classes; a threshold tuned on them would "
            f"predict one class everywhere. {summary['metric']} {summary['at_default']:.4f} at the default. Give "
            "validation rows of both classes (or use --kfold, which tunes on every train row)."
        )
    text = (
        f"--tune_threshold chose {shown} ({kind}) on the {where} rows: {summary['metric']} "
        f"{summary['at_default']:.4f} at the default threshold, {summary['tuned']:.4f} at the tuned one. The model "
        "stores it (config.json); predict, eval-only runs, export and serve use it. The test split was not used."
    )
    return text + (f"\n\n**Default kept for some labels**: {warning}." if warning else "")
