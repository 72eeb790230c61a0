"""analysis.md's advice and notes follow the task and the run: options the task allows, a note when the model
predicts one class almost everywhere, and label_issues.csv's suggested label by the run's decision rule."""

import numpy as np

from bertcls.config.recipes import parse_args
from bertcls.data.loading import load_task_data
from bertcls.evaluation import analysis
from bertcls.evaluation.decision import Decision
from bertcls.evaluation.outputs import split_report


def task_with(tmp_path, labels: list[str]):
    path = tmp_path / "train.tsv"
    path.write_text("label\ttext\n" + "".join(f"{y}\t第{i}条评论的文字\n" for i, y in enumerate(labels)), "utf-8")
    _, data_args, _ = parse_args(["--model_name_or_path", "x", "--output_dir", "x", "--train_file", str(path),
                                  "--validation_split_percentage", "0"])  # fmt: skip
    return load_task_data(data_args, seed=1)


def test_imbalance_advice_names_tune_threshold_only_where_it_applies(tmp_path):
    six = task_with(tmp_path, ["a"] * 30 + ["b", "c", "d", "e", "f"] * 2)
    page = analysis.analysis_markdown(six, {}, [], {}, {})
    assert "Imbalanced train" in page and "--class_weights" in page and "--tune_threshold" not in page
    two = task_with(tmp_path, ["a"] * 30 + ["b"] * 5)
    assert "see --class_weights and --tune_threshold" in analysis.analysis_markdown(two, {}, [], {}, {})


def test_a_model_predicting_one_class_almost_everywhere_gets_a_note(tmp_path):
    task = task_with(tmp_path, ["neg"] * 50 + ["pos"] * 50)
    probs = np.tile([0.9, 0.1], (100, 1))
    probs[:4] = [0.2, 0.8]  # 96 of 100 rows predicted neg
    gold = np.array([0] * 50 + [1] * 50)
    report = split_report("validation", gold, probs, task.labels, Decision(False, None, 1), "eval")
    (note,) = analysis.one_class_notes([report], ["neg", "pos"])
    assert "predicts `neg` for 96.0% of the rows" in note and "gold share of `neg` is 50.0%" in note
    probs[:6] = [0.2, 0.8]  # 94%: no note
    report = split_report("validation", gold, probs, task.labels, Decision(False, None, 1), "eval")
    assert analysis.one_class_notes([report], ["neg", "pos"]) == []


def test_suggested_labels_follow_the_tuned_threshold(tmp_path):
    task = task_with(tmp_path, ["neg", "pos"] * 20)
    rng = np.random.default_rng(0)
    p = rng.uniform(0.05, 0.6, 40)
    oof = np.stack([1 - p, p], axis=1)
    frame, _ = analysis.find_label_issues(task, oof, np.arange(40) % 4, Decision(False, 0.3, 1))
    expected = {int(line): ("pos" if q >= 0.3 else "neg") for line, q in zip(range(2, 42), p)}
    assert all(frame["suggested_label"] == frame["source_line"].map(expected))
    assert (p >= 0.3).sum() != (p >= 0.5).sum()  # the threshold changes some suggestions
