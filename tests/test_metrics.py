"""Metrics a user reads, pinned against scikit-learn on the same arrays and against hand-worked cases."""

import json

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import accuracy_score, f1_score, precision_recall_fscore_support

import run_classification
from bertcls.data.labels import LabelSpace
from bertcls.errors import UserError
from bertcls.evaluation.metrics import classification_metrics, multi_label_metrics

from .conftest import REPO, cli


def test_absent_classes_do_not_count_in_macro_averages():
    # three classes, the third in neither gold nor predictions: every row right is a perfect score
    scores = classification_metrics(np.array([0, 0, 1, 1]), np.array([0, 0, 1, 1]), num_labels=3)
    assert scores["f1_macro"] == 1.0 and scores["precision_macro"] == 1.0 and scores["recall_macro"] == 1.0
    # a class only predicted (never gold) still counts: its precision is 0
    scores = classification_metrics(np.array([0, 0, 1, 1]), np.array([0, 2, 1, 1]), num_labels=3)
    assert scores["f1_macro"] == pytest.approx(f1_score([0, 0, 1, 1], [0, 2, 1, 1], average="macro"))


def test_multi_label_rows_with_nothing_to_find_are_right():
    gold = np.array([[0, 0, 0], [1, 0, 0]])
    scores = multi_label_metrics(gold, gold.copy())
    assert scores["f1_samples"] == 1.0 and scores["f1_macro"] == 1.0 and scores["subset_accuracy"] == 1.0
    predicted = np.array([[0, 1, 0], [1, 0, 0]])  # a false label on the empty row: that row scores 0
    scores = multi_label_metrics(gold, predicted)
    assert scores["f1_samples"] == 0.5
    assert scores["f1_macro"] == pytest.approx(0.5)  # labels 0 (F1 1) and 1 (F1 0); label 2 absent from both


@pytest.mark.parametrize(
    "names, positive",
    [
        (("0", "1"), "1"),
        (("正面", "负面"), "正面"),
        (("好评", "差评"), "好评"),
        (("正向", "负向"), "正向"),
        (("negative", "positive"), "positive"),
        (("False", "True"), "True"),
        (("no", "yes"), "yes"),
        (("cat", "dog"), "dog"),  # nothing reads as positive: id 1, as before
    ],
)
def test_the_positive_label_is_the_one_a_person_means(names, positive):
    assert LabelSpace(names).positive() == positive


def test_binary_scores_are_those_of_the_positive_label():
    # labels 正面 (id 0) and 负面 (id 1): all three 正面 rows right, the one 负面 row wrong
    gold, predicted = np.array([0, 0, 0, 1]), np.array([0, 0, 0, 0])
    positive = LabelSpace(("正面", "负面")).label2id[LabelSpace(("正面", "负面")).positive()]
    scores = classification_metrics(gold, predicted, 2, positive)
    p, r, f, _ = precision_recall_fscore_support(gold, predicted, pos_label=0, average="binary")
    assert (scores["precision"], scores["recall"], scores["f1"]) == pytest.approx((p, r, f))
    assert scores["precision"] == 0.75 and scores["recall"] == 1.0 and scores["accuracy"] == 0.75


def test_positive_label_mistakes():
    with pytest.raises(UserError, match="--positive_label 中性 is not a label of this task"):
        LabelSpace(("正面", "负面")).positive("中性")
    with pytest.raises(UserError, match="only single-label tasks with two classes"):
        LabelSpace(("a", "b", "c")).positive("a")


@pytest.mark.slow
def test_reported_metrics_equal_sklearn_on_the_written_predictions(tiny_model, tmp_path):
    """Chinese labels where id 1 is the negative class, and an imbalanced test split (macro != micro)."""
    rows = pd.read_csv(REPO / "bertcls" / "demo" / "train.tsv", sep="\t", quoting=3)
    names = {"positive": "正面", "negative": "负面"}
    rows["label"] = rows["label"].map(names)
    rows.iloc[:480].to_csv(tmp_path / "train.tsv", sep="\t", index=False)
    rest = rows.iloc[480:]
    test = pd.concat([rest[rest.label == "正面"].iloc[:90], rest[rest.label == "负面"].iloc[:30]])
    test.to_csv(tmp_path / "test.tsv", sep="\t", index=False)
    out = tmp_path / "out"
    results = run_classification.main(
        cli(model_name_or_path=tiny_model, train_file=tmp_path / "train.tsv", test_file=tmp_path / "test.tsv")
        + cli(output_dir=out, num_train_epochs=2, learning_rate=5e-3, max_seq_length=32, save_strategy="no")
        + cli(validation_split_percentage=0)
    )
    assert results["positive_label"] == "正面"
    frame = pd.read_csv(out / "predictions.csv")
    gold, predicted = frame["label"], frame["prediction"]
    p, r, f, _ = precision_recall_fscore_support(gold, predicted, pos_label="正面", average="binary", zero_division=0)
    assert results["test_precision"] == pytest.approx(p)
    assert results["test_recall"] == pytest.approx(r)
    assert results["test_f1"] == pytest.approx(f)
    assert results["test_accuracy"] == pytest.approx(accuracy_score(gold, predicted))
    assert results["test_f1_macro"] == pytest.approx(f1_score(gold, predicted, average="macro", zero_division=0))
    assert results["test_f1_micro"] == pytest.approx(f1_score(gold, predicted, average="micro"))
    assert results["test_f1_weighted"] == pytest.approx(f1_score(gold, predicted, average="weighted"))
    assert "positive label `正面`" in (out / "README.md").read_text()
    assert json.loads((out / "config.json").read_text())["bertcls_preprocessing"]["positive_label"] == "正面"


def test_per_label_thresholds_are_each_labels_best_for_macro_f1():
    from bertcls.evaluation import thresholds
    from bertcls.evaluation.decision import Decision

    rng = np.random.default_rng(0)
    gold = rng.random((300, 3)) < [0.5, 0.2, 0.05]
    # label 0 well calibrated, label 1 underconfident, label 2 overconfident
    probs = np.clip(gold * [0.4, 0.25, 0.4] + rng.random((300, 3)) * [0.5, 0.3, 0.7], 0, 1)
    tuned, summary = thresholds.tune(probs, gold.astype(int), Decision(multi_label=True, threshold=0.5), "f1_macro")
    for label, chosen in enumerate(tuned.threshold):
        cuts = np.append(np.unique(probs[:, label]), 1.1)  # every way to cut this label's rows
        scores = {t: f1_score(gold[:, label], probs[:, label] >= t, zero_division=0) for t in cuts}
        assert f1_score(gold[:, label], probs[:, label] >= chosen, zero_division=0) == pytest.approx(
            max(scores.values())
        )
    assert summary["tuned"] > summary["at_default"]
    assert summary["tuned"] == pytest.approx(f1_score(gold, probs >= np.array(tuned.threshold), average="macro"))
