"""--tune_threshold on held-out rows: refused rows, candidates from the probabilities, never worse than the
default, ties to the candidate nearest 0.5. Each checked against sklearn on the same arrays."""

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, f1_score

from bertcls.evaluation import thresholds
from bertcls.evaluation.decision import Decision

BINARY = Decision(multi_label=False, threshold=None, positive=1)


def two_class(p_positive) -> np.ndarray:
    p = np.asarray(p_positive, dtype=np.float64)
    return np.stack([1 - p, p], axis=1)


def every_cut(p: np.ndarray) -> np.ndarray:
    """Thresholds that predict every distinct set of rows: each distinct probability, and one above them all."""
    return np.append(np.unique(p), 1.0 + 1e-9)


def test_rows_of_one_class_keep_the_default_with_a_warning(caplog):
    # The review's case: validation rows all negative; a threshold above every probability scores "perfectly".
    rng = np.random.default_rng(0)
    p = rng.random(60) * 0.9
    with caplog.at_level("WARNING", logger="bertcls.evaluation.thresholds"):
        tuned, summary = thresholds.tune(two_class(p), np.zeros(60, dtype=int), BINARY, "f1_macro")
    assert tuned.threshold is None  # the default decision, nothing to store
    assert summary["tuned"] == summary["at_default"] == f1_score(np.zeros(60), p >= 0.5, average="macro")
    assert "0 positive, 60 negative" in summary["warning"] and "kept the default threshold" in caplog.text
    text = thresholds.describe(summary, "validation")
    assert "kept the default threshold" in text and "0 positive, 60 negative" in text


def test_too_few_rows_of_a_class_keep_the_default():
    p = np.linspace(0.05, 0.95, 40)
    gold = np.zeros(40, dtype=int)
    gold[-4:] = 1  # 4 positives: fewer than MIN_CLASS_ROWS (5)
    tuned, summary = thresholds.tune(two_class(p), gold, BINARY, "f1_macro")
    assert tuned.threshold is None and "4 positive, 36 negative" in summary["warning"]
    gold[-5:] = 1
    tuned, summary = thresholds.tune(two_class(p), gold, BINARY, "f1_macro")
    assert tuned.threshold is not None and "warning" not in summary


def test_a_rare_positive_task_is_tuned_below_the_old_grid():
    """2% positives, well ranked but every probability below 0.02: the old 0.02..0.98 grid stayed at 0.5."""
    rng = np.random.default_rng(3)
    gold = (rng.random(1000) < 0.02).astype(int)
    p = np.where(gold == 1, rng.uniform(0.006, 0.019, 1000), rng.uniform(0.0, 0.012, 1000))
    tuned, summary = thresholds.tune(two_class(p), gold, BINARY, "f1_macro")
    assert tuned.threshold < 0.02
    best = max(f1_score(gold, p >= t, average="macro") for t in every_cut(p))  # every way to cut these rows
    assert summary["tuned"] == pytest.approx(best) and f1_score(gold, p >= tuned.threshold, average="macro") == (
        pytest.approx(best)
    )
    assert summary["at_default"] == pytest.approx(f1_score(gold, p >= 0.5, average="macro"))
    assert summary["tuned"] > summary["at_default"] + 0.15


@pytest.mark.parametrize("seed", range(4))
def test_the_tuned_threshold_is_never_worse_than_the_default_on_its_rows(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(20, 120))
    gold = (rng.random(n) < rng.uniform(0.1, 0.6)).astype(int)
    p = np.clip(gold * rng.uniform(0, 0.4) + rng.random(n) * rng.uniform(0.3, 1.0), 0, 1)
    for metric in ("f1_macro", "accuracy", "f1"):
        tuned, summary = thresholds.tune(two_class(p), gold, BINARY, metric)
        score = accuracy_score if metric == "accuracy" else (lambda g, q: f1_score(g, q, average="macro"))
        if metric == "f1":
            score = f1_score
        assert score(gold, p >= tuned.threshold) >= score(gold, p >= 0.5) - 1e-12
        if len(np.unique(p)) <= thresholds.MAX_CANDIDATES:  # every cut is a candidate: the best of them all
            assert summary["tuned"] == pytest.approx(max(score(gold, p >= t) for t in every_cut(p)))


def test_equally_good_thresholds_resolve_to_the_one_nearest_half():
    p = np.array([0.25, 0.39, 0.44, 0.53, 0.57, 0.73, 0.83, 0.91, 0.94, 0.96])
    gold = np.array([1, 0, 1, 1, 0, 1, 0, 1, 0, 0])
    # By hand: accuracy 0.5 cutting below 0.25 (all positive), between 0.39 and 0.44, and above 0.96 (none);
    # every other cut is worse.
    for t in (0.125, 0.415, 0.98):
        assert accuracy_score(gold, p >= t) == 0.5
    assert max(accuracy_score(gold, p >= t) for t in every_cut(p)) == 0.5
    tuned, _ = thresholds.tune(two_class(p), gold, BINARY, "accuracy")
    assert tuned.threshold == pytest.approx(0.415)  # not the lowest (0.125) nor the highest (0.98) of the tied


def test_multi_label_keeps_the_default_for_a_label_without_positives():
    rng = np.random.default_rng(1)
    gold = (rng.random((200, 3)) < [0.4, 0.3, 0.0]).astype(int)  # label 2 never given
    probs = np.clip(gold * 0.3 + rng.random((200, 3)) * 0.6, 0, 1)
    tuned, summary = thresholds.tune(probs, gold, Decision(multi_label=True, threshold=None), "f1_macro")
    assert tuned.threshold[2] == 0.5 and "label 2 kept 0.5" in summary["warning"]
    for label in (0, 1):
        best = max(f1_score(gold[:, label], probs[:, label] >= t) for t in every_cut(probs[:, label]))
        assert f1_score(gold[:, label], probs[:, label] >= tuned.threshold[label]) == pytest.approx(best)
    assert "Default kept for some labels" in thresholds.describe(summary, "validation")
