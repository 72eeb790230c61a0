"""run_classification.py end to end on real data subsets with tiny models: train, evaluate, save, predict."""

import json
import os

import numpy as np
import pandas as pd
import pytest
import torch
from transformers import AutoConfig, AutoTokenizer, pipeline

import run_classification
from bertcls.model.classifier import load_trained_model
from bertcls.model.heads import HEAD_KEY
from bertcls.shipping import predict
from bertcls.training.trainer import ClassificationTrainer

from .conftest import REPO, chnsenticorp, cli, shared

pytestmark = pytest.mark.slow

BINARY_KEYS = [
    "accuracy",
    "precision_macro",
    "recall_macro",
    "f1_macro",
    "f1_micro",
    "f1_weighted",
    "precision",
    "recall",
    "f1",
    "samples",
]
FAST = {
    "max_seq_length": 64,
    "per_device_train_batch_size": 16,
    "learning_rate": 2e-3,
    "logging_steps": 10,
    "save_strategy": "no",
    "eval_strategy": "epoch",
    "seed": 7,
}


def chnsenticorp_args(model, out, **flags):
    return chnsenticorp(model, out, **{**FAST, **flags})


def predict_again(model_dir, target, **flags):
    predict.main(
        cli(model_name_or_path=model_dir, input_file=shared("chnsenticorp", "test.tsv"), output_file=target, **flags)
    )
    return read_predictions(target)


def read_predictions(path) -> pd.DataFrame:
    return pd.read_csv(path, dtype={"prediction": str, "label": str}, keep_default_na=False)


@pytest.fixture(scope="module")
def chnsenticorp_run(tiny_model, tmp_path_factory):
    out = tmp_path_factory.mktemp("chnsenticorp")
    results = run_classification.main(chnsenticorp_args(tiny_model, out, num_train_epochs=6))
    return out, results


def test_training_loss_falls_and_beats_chance(chnsenticorp_run):
    out, results = chnsenticorp_run
    with open(out / "trainer_state.json") as f:
        losses = [e["loss"] for e in json.load(f)["log_history"] if "loss" in e]
    assert len(losses) >= 10
    assert np.mean(losses[-3:]) < 0.5 * np.mean(losses[:3])
    assert results["test_accuracy"] > 0.6  # chance is 0.5 on this balanced set


def test_metric_files_hold_every_key(chnsenticorp_run):
    out, _ = chnsenticorp_run
    for split, prefix, rows in (("eval", "eval", 200), ("test", "test", 300)):
        with open(out / f"{split}_results.json") as f:
            metrics = json.load(f)
        assert {f"{prefix}_{k}" for k in BINARY_KEYS} <= set(metrics)
        assert metrics[f"{prefix}_samples"] == rows
        assert all(0.0 <= metrics[f"{prefix}_{k}"] <= 1.0 for k in BINARY_KEYS if k != "samples")
    with open(out / "all_results.json") as f:
        combined = json.load(f)
    assert combined["train_samples"] == 600 and "train_loss" in combined and "test_f1" in combined


def test_saved_folder_has_model_tokenizer_labels_and_reports(chnsenticorp_run):
    out, _ = chnsenticorp_run
    for name in (
        "model.safetensors",
        "config.json",
        "tokenizer.json",
        "tokenizer_config.json",
        "recipe.json",
        "README.md",
        "classification_report.txt",
        "learning_curve.png",
        "confusion_matrix_test.png",
        "confusion_matrix_validation.png",
    ):
        assert (out / name).is_file(), name
    assert not list(out.glob("checkpoint-*")) and not list(out.glob(".*.tmp"))
    config = AutoConfig.from_pretrained(out)
    assert config.id2label == {0: "0", 1: "1"} and config.problem_type == "single_label_classification"
    assert AutoTokenizer.from_pretrained(out).model_max_length == 64
    report = (out / "classification_report.txt").read_text()
    assert "== test (300 rows)" in report and "== validation (200 rows)" in report
    card = (out / "README.md").read_text()
    assert "test_accuracy" in card and '"learning_rate": 0.002' in card
    assert (out / "learning_curve.png").read_bytes()[:4] == b"\x89PNG"


def test_predictions_csv_one_row_per_test_row_in_input_order(chnsenticorp_run):
    out, _ = chnsenticorp_run
    frame = read_predictions(out / "predictions.csv")
    test = pd.read_csv(shared("chnsenticorp", "test.tsv"), sep="\t", quoting=3, dtype=str, nrows=300)
    assert list(frame.columns) == ["label", "text_a", "prediction", "score", "prob_0", "prob_1", "source_file",
                                   "source_line"]  # fmt: skip
    assert frame["source_line"].tolist() == list(range(2, 302))  # test.tsv's lines 2..301: its first 300 rows
    assert frame["text_a"].tolist() == test["text_a"].tolist()
    assert frame["label"].tolist() == test["label"].tolist()
    assert np.allclose(frame["prob_0"] + frame["prob_1"], 1.0, atol=1e-5)
    assert np.allclose(frame["score"], frame[["prob_0", "prob_1"]].max(axis=1))
    accuracy = (frame["prediction"] == frame["label"]).mean()
    with open(out / "test_results.json") as f:
        assert accuracy == pytest.approx(json.load(f)["test_accuracy"])


def test_pipeline_on_saved_folder_predicts_the_same_labels(chnsenticorp_run):
    out, _ = chnsenticorp_run
    frame = read_predictions(out / "predictions.csv")
    classifier = pipeline("text-classification", model=str(out), device=-1)
    predicted = classifier(frame["text_a"].tolist(), truncation=True, batch_size=32)
    assert [p["label"] for p in predicted] == frame["prediction"].tolist()
    assert np.allclose([p["score"] for p in predicted], frame["score"], atol=1e-4)


def test_predict_cli_reproduces_predictions_csv(chnsenticorp_run, tmp_path):
    out, _ = chnsenticorp_run
    reference = read_predictions(out / "predictions.csv")
    again = predict_again(out, tmp_path / "again.csv", batch_size=48)
    assert len(again) == 1200  # the whole file, in input order
    head = again.iloc[: len(reference)]
    assert list(again.columns) == list(reference.columns)
    assert head["text_a"].tolist() == reference["text_a"].tolist()
    assert head["prediction"].tolist() == reference["prediction"].tolist()
    assert np.allclose(head["prob_1"], reference["prob_1"], atol=1e-5)


def test_optimizer_the_trainer_steps_has_the_right_groups(tiny_model, tmp_path, monkeypatch):
    """Capture the Trainer after a few real steps and inspect the optimizer it stepped."""
    captured = {}
    original = ClassificationTrainer.train

    def train_and_capture(self, *args, **kwargs):
        result = original(self, *args, **kwargs)
        captured["trainer"] = self
        return result

    monkeypatch.setattr(ClassificationTrainer, "train", train_and_capture)
    argv = chnsenticorp_args(
        tiny_model,
        tmp_path / "o",
        max_steps=3,
        weight_decay=0.05,
        layerwise_lr_decay=0.8,
        do_eval=False,
        do_predict=False,
        eval_strategy="no",
        warmup_steps=0,
        lr_scheduler_type="constant",
    )
    run_classification.main(argv)
    trainer = captured["trainer"]
    optimizer = trainer.optimizer.optimizer if hasattr(trainer.optimizer, "optimizer") else trainer.optimizer
    assert isinstance(optimizer, torch.optim.AdamW)
    group_of = {id(p): g for g in optimizer.param_groups for p in g["params"]}
    named = dict(trainer.model.named_parameters())
    assert len(group_of) == len(named)  # every trainable parameter is in exactly one group
    lr, decay, layers = 2e-3, 0.8, 2
    for name, param in named.items():
        group = group_of[id(param)]
        no_decay = name.endswith(".bias") or "LayerNorm" in name
        assert group["weight_decay"] == (0.0 if no_decay else 0.05), name
        if "embeddings" in name:
            expected = lr * decay ** (layers + 1)
        elif ".layer." in name:
            i = int(name.split(".layer.")[1].split(".")[0])
            expected = lr * decay ** (layers - i)
        else:  # pooler and classifier
            expected = lr
        assert group["lr"] == pytest.approx(expected), name
    lrs = {g["name"].split("/")[0]: g["lr"] for g in optimizer.param_groups}
    assert lrs["embeddings"] < lrs["layer_0"] < lrs["layer_1"] < lrs["head"]
    # the weights really moved under these groups
    assert trainer.state.global_step == 3


def test_pair_task_on_lcqmc(tiny_model, tmp_path):
    d = shared("lcqmc")
    out = tmp_path / "lcqmc"
    flags = {
        **FAST,
        "max_train_samples": 800,
        "max_eval_samples": 100,
        "max_predict_samples": 200,
        "num_train_epochs": 2,
    }
    results = run_classification.main(
        cli(
            model_name_or_path=tiny_model,
            train_file=f"{d}/dev.tsv",
            test_file=f"{d}/test.tsv",
            text_column="text_a",
            text_pair_column="text_b",
            output_dir=out,
            **flags,
        )
    )
    # the held-out validation comes from the 800 train rows kept by --max_train_samples: 10% of them
    assert results["eval_samples"] == 80 and results["test_samples"] == 200
    frame = read_predictions(out / "predictions.csv")
    assert list(frame.columns[:3]) == ["text_a", "text_b", "label"] and len(frame) == 200
    classifier = pipeline("text-classification", model=str(out), device=-1)
    pairs = [{"text": a, "text_pair": b} for a, b in zip(frame["text_a"], frame["text_b"])]
    assert [p["label"] for p in classifier(pairs[:50])] == frame["prediction"].tolist()[:50]
    assert json.loads((out / "config.json").read_text())["bertcls_preprocessing"]["text_pair_column"] == "text_b"


def test_mlp_head_with_mean_pooling_trains_saves_reloads_and_predicts(tiny_model, tmp_path):
    out = tmp_path / "mlp"
    results = run_classification.main(
        chnsenticorp_args(tiny_model, out, head="mlp", pooling="mean", head_hidden_size=48, num_train_epochs=3)
    )
    assert results["train_loss"] < 0.69
    config = json.loads((out / "config.json").read_text())
    assert config[HEAD_KEY] == {
        "head": "mlp",
        "pooling": "mean",
        "hidden_size": 48,
        "dropout": 0.1,
        "activation": "gelu",
    }
    model = load_trained_model(str(out))
    assert model.head[1].out_features == 48 and model.head[-1].out_features == 2
    reference = read_predictions(out / "predictions.csv")
    again = predict_again(out, tmp_path / "again.csv").iloc[: len(reference)]
    assert again["prediction"].tolist() == reference["prediction"].tolist()
    assert np.allclose(again["prob_1"], reference["prob_1"], atol=1e-5)


def test_demo_recipe_runs_offline(tmp_path):
    from bertcls.model.tiny import TinyModelArguments, make_tiny_bert

    demo = REPO / "bertcls" / "demo"
    model = make_tiny_bert(
        TinyModelArguments(
            output_dir=str(tmp_path / "demo-model"),
            vocab_from_files=[str(demo / f"{s}.tsv") for s in ("train", "validation", "test")],
        )
    )
    out = tmp_path / "demo-out"
    recipe = str(REPO / "recipes" / "demo.json")
    results = run_classification.main([recipe, *cli(model_name_or_path=model, output_dir=out, num_train_epochs=4)])
    assert results["test_accuracy"] > 0.75
    frame = read_predictions(out / "predictions.csv")
    assert set(frame["prediction"]) <= {"negative", "positive"} and len(frame) == 200
    assert os.path.exists(out / "model.safetensors")


MATTHEWS = """
import datasets
import evaluate
from sklearn.metrics import matthews_corrcoef


class Matthews(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description="Matthews correlation", citation="", inputs_description="",
            features=datasets.Features({"predictions": datasets.Value("int64"), "references": datasets.Value("int64")}),
        )

    def _compute(self, predictions, references):
        return {"matthews_correlation": float(matthews_corrcoef(references, predictions))}
"""


def test_extra_metrics_from_a_local_folder_and_a_clear_error_offline(tiny_model, tmp_path, capsys):
    folder = tmp_path / "matthews"
    folder.mkdir()
    (folder / "matthews.py").write_text(MATTHEWS)
    out = tmp_path / "extra"
    results = run_classification.main(chnsenticorp_args(tiny_model, out, max_steps=5, extra_metrics=str(folder)))
    assert -1.0 <= results["eval_matthews_correlation"] <= 1.0 and "test_matthews_correlation" in results
    with pytest.raises(SystemExit):
        run_classification.main(chnsenticorp_args(tiny_model, tmp_path / "hub", extra_metrics="accuracy"))
    err = capsys.readouterr().err
    assert "could not load extra metric 'accuracy'" in err and "Hub metrics need network access" in err
    assert not (tmp_path / "hub").exists()  # failed before anything was written
