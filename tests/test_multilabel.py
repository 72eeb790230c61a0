"""Multi-label classification: label lists, multi-hot labels, sigmoid metrics, predictions and the saved model."""

import json
import random

import numpy as np
import pandas as pd
import pytest
from transformers import AutoConfig, pipeline

import run_classification
from bertcls.config.arguments import DataArguments
from bertcls.data.labels import LabelSpace, label_list
from bertcls.data.loading import load_task_data
from bertcls.errors import UserError
from bertcls.evaluation.decision import Decision
from bertcls.evaluation.metrics import ComputeMetrics, multi_label_metrics
from bertcls.evaluation.outputs import predictions_frame
from bertcls.shipping import predict

KEYWORDS = {"体育": "球赛进球", "财经": "股票基金", "科技": "手机芯片"}
FILLER = "今天我们看到了一些新闻大家都在讨论这个事情"


def topic_rows(n: int, seed: int) -> list[dict]:
    """Short news-like texts; a label is on exactly when its keywords are in the text (each with p = 0.45)."""
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        labels = [label for label in KEYWORDS if rng.random() < 0.45]
        parts = [KEYWORDS[label] for label in labels]
        parts += [FILLER[rng.randrange(10) :][: rng.randrange(4, 12)] for _ in range(2)]
        rng.shuffle(parts)
        rows.append({"text": "，".join(parts), "label": labels})
    return rows


def jsonl(rows) -> str:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)


def tsv(rows, delimiter="|") -> str:
    return "label\ttext\n" + "".join(f"{delimiter.join(r['label']) or '[]'}\t{r['text']}\n" for r in rows)


def data_args(**kwargs) -> DataArguments:
    return DataArguments(**{"max_seq_length": 32, **kwargs})


def test_label_list():
    assert label_list(["b", 1, None]) == ["b", "1"]
    assert label_list('["体育", "财经"]') == ["体育", "财经"]
    assert label_list("[]") == [] and label_list([]) == []
    assert label_list("a| b ||c", "|") == ["a", "b", "c"]
    assert label_list(None, "|") is None and label_list("  ", "|") is None  # missing, not "no labels"
    with pytest.raises(ValueError):
        label_list("a,b")  # a plain string needs a delimiter


def test_json_lists_switch_multi_label_on_and_become_multi_hot(write, caplog):
    rows = topic_rows(40, 0)
    train = write("train.jsonl", jsonl(rows))
    with caplog.at_level("INFO"):
        task = load_task_data(data_args(train_file=train, validation_split_percentage=25), seed=3)
    assert "holds lists: multi-label" in caplog.text and "25.0%, random" in caplog.text
    assert task.labels == LabelSpace(("体育", "科技", "财经"), multi_label=True, delimiter="|")
    assert len(task.splits["train"]) == 30 and len(task.splits["validation"]) == 10
    hot = {tuple(r["label"]) for r in task.splits["train"]} | {tuple(r["label"]) for r in task.splits["validation"]}
    expected = {tuple(float(n in r["label"]) for n in ("体育", "科技", "财经")) for r in rows}
    assert hot == expected


def test_delimited_labels_and_their_mistakes(write):
    rows = topic_rows(30, 1)
    train = write("train.tsv", tsv(rows, ","))
    with pytest.raises(UserError, match=r"train.tsv line 2: multi-label column 'label' holds .* --label_delimiter"):
        load_task_data(data_args(train_file=train, multi_label=True), seed=0)
    task = load_task_data(data_args(train_file=train, multi_label=True, label_delimiter=","), seed=0)
    assert task.labels.names == ("体育", "科技", "财经") and task.labels.delimiter == ","
    test = write("test.tsv", "label\ttext\n体育,天气\t球赛\n")
    with pytest.raises(UserError, match="unknown label '天气'"):
        load_task_data(data_args(train_file=train, test_file=test, multi_label=True, label_delimiter=","), seed=0)
    with pytest.raises(UserError, match="--label_delimiter is set, but --multi_label is not"):
        load_task_data(data_args(train_file=train, label_delimiter=","), seed=0)


def test_multi_label_metrics_and_threshold():
    references = np.array([[1, 0, 1], [0, 1, 0], [1, 1, 0], [0, 0, 0]])
    logits = np.array([[3.0, -2.0, 0.2], [-1.0, 2.0, -0.2], [1.0, -0.1, -3.0], [-2.0, -2.0, -2.0]])
    metrics = ComputeMetrics(3, decision=Decision(multi_label=True))(
        type("P", (), {"predictions": logits, "label_ids": references})
    )
    # at threshold 0.5 (logit 0) the predictions are [1,0,1], [0,1,0], [1,0,0], [0,0,0]: one label missed
    assert metrics["subset_accuracy"] == 0.75 and metrics["hamming_loss"] == pytest.approx(1 / 12)
    assert metrics["precision_micro"] == 1.0 and metrics["recall_micro"] == pytest.approx(4 / 5)
    assert metrics["f1_micro"] == pytest.approx(8 / 9) and metrics["samples"] == 4
    strict = ComputeMetrics(3, decision=Decision(multi_label=True, threshold=0.6))(
        type("P", (), {"predictions": logits, "label_ids": references})
    )
    assert strict["recall_micro"] == pytest.approx(3 / 5)  # sigmoid(0.2) = 0.55 < 0.6
    assert multi_label_metrics(references, references)["f1_macro"] == 1.0


def test_multi_label_predictions_frame():
    labels = LabelSpace(("a", "b", "c"), multi_label=True, delimiter=";")
    probs = np.array([[0.9, 0.2, 0.5], [0.1, 0.1, 0.1]])
    frame = predictions_frame(
        pd.DataFrame({"text": ["x", "y"], "label": [["a"], []]}), probs, labels, Decision(multi_label=True)
    )
    assert list(frame.columns) == ["text", "label", "prediction", "prob_a", "prob_b", "prob_c"]
    assert frame["prediction"].tolist() == ["a;c", ""]
    assert frame["label"].tolist() == ['["a"]', "[]"]  # list cells written as JSON


@pytest.mark.slow
def test_multi_label_end_to_end(tiny_model, write, tmp_path):
    train = write("train.jsonl", jsonl(topic_rows(240, 2)))
    test = write("test.jsonl", jsonl(topic_rows(60, 3)))
    out = tmp_path / "out"
    argv = ["--model_name_or_path", tiny_model, "--train_file", train, "--test_file", test, "--output_dir", str(out)]
    argv += ["--max_seq_length", "32", "--learning_rate", "3e-3", "--num_train_epochs", "10"]
    argv += ["--per_device_train_batch_size", "16", "--save_strategy", "no", "--logging_steps", "20", "--seed", "1"]
    results = run_classification.main(argv)
    # All-on predictions have Hamming loss ~0.55 and all-off ~0.45 on this data: the model must beat both.
    assert results["test_hamming_loss"] < 0.3 and results["test_f1_micro"] > 0.7
    assert {"test_f1_macro", "test_f1_samples", "test_subset_accuracy", "eval_f1_micro"} <= set(results)

    config = AutoConfig.from_pretrained(out)
    assert config.problem_type == "multi_label_classification" and list(config.id2label.values()) == [
        "体育",
        "科技",
        "财经",
    ]
    frame = pd.read_csv(out / "predictions.csv", keep_default_na=False)
    assert list(frame.columns) == ["text", "label", "prediction", "prob_体育", "prob_科技", "prob_财经", "source_file",
                                   "source_line"]  # fmt: skip
    for _, row in frame.iterrows():
        on = [n for n in ("体育", "科技", "财经") if row[f"prob_{n}"] >= 0.5]
        assert row["prediction"] == "|".join(on)
    report = (out / "classification_report.txt").read_text()
    assert "== test (60 rows, multi-label)" in report and "财经" in report and "samples avg" in report

    # pipeline() applies a sigmoid per label, giving the same probabilities
    classifier = pipeline("text-classification", model=str(out), device=-1)
    scores = classifier(frame["text"].tolist()[:10], top_k=None)
    for row, predicted in zip(frame.itertuples(), scores):
        by_label = {p["label"]: p["score"] for p in predicted}
        assert by_label["体育"] == pytest.approx(row.prob_体育, abs=1e-4)

    again = tmp_path / "again.csv"
    predict.main(["--model_name_or_path", str(out), "--input_file", test, "--output_file", str(again)])
    reread = pd.read_csv(again, keep_default_na=False)
    assert reread["prediction"].tolist() == frame["prediction"].tolist()
    assert np.allclose(reread["prob_财经"], frame["prob_财经"], atol=1e-5)


def test_dataset_folder_with_class_label_lists(tmp_path):
    from datasets import ClassLabel, Dataset, DatasetDict, Features, List, Value

    features = Features({"text": Value("string"), "label": List(ClassLabel(names=["neg", "pos", "meh"]))})
    train = Dataset.from_dict({"text": ["a", "b", "c", "d"], "label": [[0, 1], [1], [], [2, 0]]}, features=features)
    DatasetDict({"train": train}).save_to_disk(str(tmp_path / "ds"))
    task = load_task_data(data_args(dataset_name=str(tmp_path / "ds"), validation_split_percentage=0), seed=0)
    assert task.labels.multi_label and task.labels.names == ("meh", "neg", "pos")
    assert task.splits["train"]["label"] == [[0, 1, 1], [0, 0, 1], [0, 0, 0], [1, 1, 0]]
