"""Regression, as transformers' run_classification.py does it: a float label column (or --do_regression) trains one
output with MSE; metrics, predictions, predict, export, serve and k-fold carry the predicted value."""

import csv
import json
import logging

import numpy as np
import pandas as pd
import pytest
import torch
from scipy.stats import pearsonr, spearmanr
from torch.nn import functional as F

import run_classification
from bertcls.data.labels import regression_reason
from bertcls.data.loading import load_task_data
from bertcls.errors import UserError
from bertcls.evaluation.decision import Decision, probabilities
from bertcls.evaluation.metrics import ComputeMetrics, regression_metrics
from bertcls.model.losses import ClassificationLoss, build_loss

from .conftest import cli, shared


def load(**flags):
    from bertcls.config.arguments import DataArguments

    return load_task_data(DataArguments(**{"validation_split_percentage": 0, **flags}), seed=0)


def score_file(path, n, seed=0, offset=0, unlabelled=0) -> str:
    """A float-score file of the shape of STS-B: sentence, a score with steps of 0.25 (here -2.75 .. 2.75, centred:
    a tiny model trained from scratch for a few hundred steps cannot move its output far from 0). The score follows
    ChnSentiCorp's sentiment (positive high), so a model can learn it."""
    frame = pd.read_csv(shared("chnsenticorp", "train.tsv"), sep="\t", quoting=csv.QUOTE_NONE).iloc[
        offset : offset + n
    ]
    rng = np.random.default_rng(seed)
    score = (frame["label"].to_numpy() - 0.5) * 4 + rng.integers(-3, 4, len(frame)) * 0.25
    out = pd.DataFrame({"sentence": frame["text_a"].to_numpy(), "score": score})
    out["score"] = out["score"].astype(object)
    out.loc[: unlabelled - 1, "score"] = ""
    out.to_csv(path, index=False)
    return str(path)


# -- inference of the problem type ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "values,regression",
    [
        (["0.0", "0.5", "1.0", "4.75"], True),  # a float score column (STS-B)
        ([0.1, 2.0, 3.0], True),  # json floats
        (["1", "2", "5"], False),  # integer ratings stay classes
        (["1.0", "2.0", "3.0"], False),  # integer-valued floats too
        (["pos", "neg", "0.5"], False),  # text
        (["0.5", "", None, "1.5"], True),  # missing values do not decide
    ],
)
def test_a_float_column_means_regression(values, regression):
    assert (regression_reason(values) is not None) == regression


def test_regression_is_inferred_and_logged(write, caplog):
    train = write("train.csv", "sentence,score\n好,4.5\n差,0.25\n一般,2.0\n")
    with caplog.at_level(logging.INFO):
        task = load(train_file=train, label_column="score")
    assert task.labels.regression and len(task.labels) == 1
    assert task.splits["train"]["label"][:] == [4.5, 0.25, 2.0]
    line = next(r.getMessage() for r in caplog.records if "regression" in r.getMessage())
    assert "'score'" in line and "2 of its 3 values are not integers" in line and "--do_regression false" in line


def test_do_regression_forces_and_false_keeps_classes(write):
    train = write("train.csv", "sentence,score\n好,4\n差,0\n一般,2\n")
    assert load(train_file=train, label_column="score", do_regression=True).labels.regression
    floats = write("floats.csv", "sentence,score\n好,4.5\n差,0.5\n")
    task = load(train_file=floats, label_column="score", do_regression=False)
    assert not task.labels.regression and task.labels.names == ("0.5", "4.5")


def test_a_text_label_under_do_regression_names_the_row(write):
    train = write("train.csv", "sentence,score\n好,4.5\n差,bad\n")
    with pytest.raises(UserError, match=r"label 'bad' is not a number in 1 row \(.*train.csv line 3\)"):
        load(train_file=train, label_column="score", do_regression=True)


# -- loss and metrics, pinned against independent computations -------------------------------------------------------


def test_mse_and_huber_losses():
    predicted, gold = torch.tensor([[0.5], [2.0], [4.0]]), torch.tensor([1.0, 2.0, 1.0])
    mse = ((0.5 - 1) ** 2 + 0 + (4 - 1) ** 2) / 3
    assert ClassificationLoss(regression=True)(predicted, gold).item() == pytest.approx(mse)
    huber = (0.5 * 0.5**2 + 0 + (3 - 0.5)) / 3  # squared below 1, linear above
    assert ClassificationLoss(regression=True, kind="huber")(predicted, gold).item() == pytest.approx(huber)
    assert F.mse_loss(predicted.view(-1), gold).item() == pytest.approx(mse)


def test_regression_metrics_match_scipy_and_sklearn():
    rng = np.random.default_rng(3)
    gold = rng.uniform(0, 5, 200)
    predicted = gold + rng.normal(0, 0.8, 200)
    m = regression_metrics(gold, predicted)
    assert m["pearson"] == pytest.approx(pearsonr(gold, predicted).statistic, abs=1e-12)
    assert m["spearman"] == pytest.approx(spearmanr(gold, predicted).statistic, abs=1e-12)
    assert m["mse"] == pytest.approx(np.mean((gold - predicted) ** 2))
    assert m["rmse"] == pytest.approx(np.sqrt(np.mean((gold - predicted) ** 2)))
    assert m["mae"] == pytest.approx(np.mean(np.abs(gold - predicted)))
    assert m["samples"] == 200
    # a constant prediction has no correlation: NaN, not a made-up 0
    assert np.isnan(regression_metrics(gold, np.full(200, 2.0))["pearson"])


def test_the_prediction_is_the_models_output():
    logits = np.array([[0.25], [3.5]], dtype=np.float32)
    values = Decision(regression=True)(probabilities(logits))
    assert values.tolist() == [0.25, 3.5]  # no softmax over one output
    metrics = ComputeMetrics(1, decision=Decision(regression=True))
    assert metrics.score(probabilities(logits), np.array([0.25, 3.0]))["mae"] == pytest.approx(0.25)


@pytest.mark.parametrize(
    "flags,message",
    [
        ({"class_weights": ["auto"]}, "--class_weights applies to classes"),
        ({"loss": "focal"}, "--loss focal applies to classes"),
        ({"label_smoothing_factor": 0.1}, "--label_smoothing_factor applies to classes"),
        ({"rdrop_alpha": 1.0}, "--rdrop_alpha applies to classes"),
    ],
)
def test_classifier_losses_are_refused_for_regression(flags, message):
    from bertcls.config.training_arguments import ClassificationTrainingArguments
    from bertcls.data.labels import LabelSpace

    args = ClassificationTrainingArguments(output_dir="o", **flags)
    with pytest.raises(UserError, match=message):
        build_loss(args, LabelSpace.for_regression("score"))


# -- end to end ----------------------------------------------------------------------------------------------------

FAST = {
    "max_seq_length": 64,
    "per_device_train_batch_size": 16,
    "learning_rate": 2e-3,
    "num_train_epochs": 3,
    "logging_steps": 10,
    "seed": 7,
}


@pytest.fixture(scope="module")
def regression_run(tiny_model, tmp_path_factory):
    d = tmp_path_factory.mktemp("regression")
    files = {
        "train_file": score_file(d / "train.csv", 600),
        "validation_file": score_file(d / "dev.csv", 100, seed=1, offset=2000),
        "test_file": score_file(d / "test.csv", 40, seed=2, offset=3000, unlabelled=4),
    }
    out = d / "out"
    argv = cli(model_name_or_path=tiny_model, output_dir=out, label_column_name="score", **files, **FAST)
    argv += ["--eval_strategy", "epoch", "--load_best_model_at_end"]
    results = run_classification.main(argv)
    return out, files, results


@pytest.mark.slow
def test_regression_trains_evaluates_and_predicts_values(regression_run):
    out, files, results = regression_run
    config = json.loads((out / "config.json").read_text())
    assert len(config["id2label"]) == 1 and config["problem_type"] == "regression"
    frame = pd.read_csv(out / "predictions.csv")
    assert (
        list(frame.columns) == ["sentence", "score", "prediction", "source_file", "source_line"] and len(frame) == 40
    )
    assert frame["prediction"].std() > 0.05  # it learned something, not one constant
    labelled = frame.iloc[4:]
    # the reported test metrics are those of the written predictions on the labelled rows (pinned with scipy)
    assert results["test_pearson"] == pytest.approx(
        pearsonr(labelled["score"], labelled["prediction"]).statistic, abs=1e-4
    )
    assert results["test_spearman"] == pytest.approx(
        spearmanr(labelled["score"], labelled["prediction"]).statistic, abs=1e-4
    )
    assert results["test_mse"] == pytest.approx(np.mean((labelled["score"] - labelled["prediction"]) ** 2), abs=1e-4)
    assert results["test_samples"] == 36 and results["test_unlabelled"] == 4
    assert results["eval_pearson"] > 0.35  # sentiment-driven scores are learnable (0.55 with these settings)
    state = json.loads((out / "trainer_state.json").read_text())
    assert state["best_metric"] == pytest.approx(min(e["eval_mse"] for e in state["log_history"] if "eval_mse" in e))
    # figures and analysis for numbers, not classes
    assert (out / "regression_validation.png").exists() and not (out / "confusion_matrix_validation.png").exists()
    analysis = (out / "analysis.md").read_text()
    assert "## Largest errors on validation" in analysis
    errors = pd.read_csv(out / "errors_validation.csv")
    assert (errors["error"].abs().diff().dropna() <= 1e-9).all()  # largest first


@pytest.mark.slow
def test_predict_export_and_serve_return_the_value(regression_run, tmp_path):
    from fastapi.testclient import TestClient

    from bertcls.model.classifier import TrainedClassifier
    from bertcls.shipping import export, predict, serve

    out, files, _ = regression_run
    written = pd.read_csv(out / "predictions.csv")
    frame = predict.main(cli(model_name_or_path=out, input_file=files["test_file"], output_file=tmp_path / "p.csv"))
    assert np.allclose(frame["prediction"].to_numpy(float), written["prediction"], atol=1e-5)
    report = export.main(
        cli(model_name_or_path=out, output_dir=tmp_path / "onnx", check_file=files["validation_file"])
    )
    shipped = report["onnx_fp32"]
    assert shipped["agreement"] == 1.0 and shipped["max_abs_prob_diff"] < 1e-4
    onnx = predict.main(
        cli(model_name_or_path=tmp_path / "onnx", input_file=files["test_file"], output_file=tmp_path / "o.csv")
    )
    assert np.allclose(onnx["prediction"].to_numpy(float), written["prediction"], atol=1e-4)
    app = serve.build_app(TrainedClassifier.load(str(out)), serve.ServeArguments(model_name_or_path=str(out)))
    with TestClient(app) as client:
        response = client.post("/predict", json={"texts": written["sentence"].tolist()[:3]})
    assert response.status_code == 200, response.text
    answers = response.json()["predictions"]
    assert [a["label"] for a in answers] == ["score"] * 3
    assert np.allclose([a["score"] for a in answers], written["prediction"][:3], atol=1e-5)


@pytest.mark.slow
def test_kfold_regression(tiny_model, tmp_path):
    train = score_file(tmp_path / "train.csv", 60)
    out = tmp_path / "out"
    argv = cli(model_name_or_path=tiny_model, train_file=train, label_column="score", output_dir=out, kfold=3)
    results = run_classification.main([*argv, "--max_steps", "4", "--max_seq_length", "32", "--eval_strategy", "no"])
    oof = pd.read_csv(out / "oof_predictions.csv")
    assert len(oof) == 60 and sorted(oof["fold"].unique()) == [0, 1, 2]
    gold = pd.read_csv(train)["score"]
    assert results["oof_mse"] == pytest.approx(np.mean((oof["prediction"] - gold) ** 2), abs=1e-4)


@pytest.mark.parametrize(
    "flags,message",
    [
        (["--tune_threshold"], "--tune_threshold picks a class threshold, and this is a regression task"),
        (["--decision_threshold", "0.3"], "--decision_threshold: a regression model predicts a number"),
        (["--positive_label", "1"], "--positive_label 1: a regression model has no classes"),
        (["--class_weights", "auto"], "--class_weights applies to classes"),
        (["--kfold", "2", "--find_label_issues"], "--find_label_issues ranks rows whose class looks wrong"),
    ],
)
def test_options_without_meaning_for_regression_are_one_line(tiny_model, write, tmp_path, capsys, flags, message):
    train = write("train.csv", "sentence,score\n好,4.5\n差,0.25\n一般,2.0\n很好,5.0\n")
    argv = cli(model_name_or_path=tiny_model, train_file=train, label_column="score", output_dir=tmp_path / "o")
    with pytest.raises(SystemExit) as exit_info:
        run_classification.main([*argv, "--max_steps", "1", "--validation_split_percentage", "0", *flags])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not (tmp_path / "o" / "model.safetensors").exists()
