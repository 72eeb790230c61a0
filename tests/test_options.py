"""The training options end to end on real data subsets: imbalance, early stopping, FGM + R-Drop, k-fold."""

import json

import numpy as np
import pandas as pd
import pytest

import run_classification
from bertcls.training.trainer import ClassificationTrainer

from .conftest import cli, first_rows, shared

pytestmark = pytest.mark.slow

FAST = ["--max_seq_length", "48", "--per_device_train_batch_size", "16", "--learning_rate", "2e-3", "--seed", "7"]


@pytest.fixture
def capture_trainers(monkeypatch):
    """Every ClassificationTrainer that trains in the run, kept after training."""
    trainers = []
    original = ClassificationTrainer.train

    def train_and_keep(self, *args, **kwargs):
        trainers.append(self)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(ClassificationTrainer, "train", train_and_keep)
    return trainers


def smp2020_args(model, out, *extra):
    d = shared("smp2020_ewect_usual")
    return [
        "--model_name_or_path",
        model,
        "--train_file",
        f"{d}/train.tsv",
        "--validation_file",
        f"{d}/dev.tsv",
        "--text_column",
        "text_a",
        "--max_train_samples",
        "400",
        "--max_eval_samples",
        "100",
        "--output_dir",
        str(out),
        "--save_strategy",
        "no",
        *FAST,
        *extra,
    ]


def test_class_weights_auto_and_focal_on_imbalanced_smp2020(tiny_model, tmp_path, capture_trainers):
    argv = smp2020_args(tiny_model, tmp_path / "o", "--class_weights", "auto", "--loss", "focal", "--max_steps", "4")
    results = run_classification.main(argv)
    (trainer,) = capture_trainers
    counts = np.bincount(trainer.train_dataset["label"], minlength=6)
    assert counts.min() > 0 and counts.max() > 3 * counts.min()  # the subset is imbalanced too
    weights = trainer.loss.class_weights.numpy()
    assert trainer.loss.kind == "focal" and trainer.loss.focal_gamma == 2.0
    assert weights.mean() == pytest.approx(1.0, rel=1e-5)
    assert np.allclose(weights * counts, weights[0] * counts[0], rtol=1e-5)  # inverse frequency
    assert results["eval_samples"] == 100 and 0.0 <= results["eval_f1_macro"] <= 1.0
    recipe = json.loads((tmp_path / "o" / "recipe.json").read_text())
    assert recipe["class_weights"] == ["auto"] and recipe["loss"] == "focal"


def test_a_class_weight_list_of_the_wrong_length_names_the_label_count(tiny_model, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        run_classification.main(smp2020_args(tiny_model, tmp_path / "o", "--class_weights", "1", "2", "3"))
    assert exit_info.value.code == 2
    assert "--class_weights has 3 weights, but there are 6 labels (0, 1, 2, 3, 4, 5)" in capsys.readouterr().err


def test_early_stopping_stops_and_keeps_the_best_checkpoint(tiny_model, tmp_path):
    # Learning rate 1e-12 (0 is refused as a mistake): the weights barely move, the metric never improves after the
    # first evaluation, so with patience 2 training stops at the third evaluation (step 6 of 40).
    out = tmp_path / "o"
    argv = smp2020_args(tiny_model, out, "--learning_rate", "1e-12", "--max_steps", "40")
    argv += ["--early_stopping_patience", "2"]
    argv += ["--eval_strategy", "steps", "--eval_steps", "2", "--save_strategy", "steps", "--save_steps", "2"]
    argv += ["--logging_steps", "2"]
    run_classification.main(argv)
    state = json.loads((out / "trainer_state.json").read_text())
    assert state["global_step"] == 6
    assert state["best_model_checkpoint"].endswith("checkpoint-2")
    evaluations = [e for e in state["log_history"] if "eval_f1_macro" in e]
    assert [e["step"] for e in evaluations] == [2, 4, 6]
    assert state["best_metric"] == evaluations[0]["eval_f1_macro"]


def test_fgm_and_rdrop_with_gradient_accumulation_train(tiny_model, tmp_path, capture_trainers):
    d = shared("chnsenticorp")
    out = tmp_path / "o"
    argv = ["--model_name_or_path", tiny_model, "--train_file", f"{d}/train.tsv", "--validation_file", f"{d}/dev.tsv"]
    argv += ["--text_column", "text_a", "--max_train_samples", "320", "--max_eval_samples", "100"]
    argv += ["--output_dir", str(out), "--save_strategy", "no", "--num_train_epochs", "2", *FAST]
    argv += [
        "--adversarial",
        "fgm",
        "--adv_epsilon",
        "0.5",
        "--rdrop_alpha",
        "2",
        "--gradient_accumulation_steps",
        "2",
    ]
    results = run_classification.main(argv)
    (trainer,) = capture_trainers
    assert trainer.fgm is not None and trainer.fgm.epsilon == 0.5 and trainer.loss.rdrop_alpha == 2.0
    assert trainer.state.global_step == 20  # 320 rows / (16 x 2) = 10 steps per epoch, 2 epochs
    assert np.isfinite(results["train_loss"]) and 0.3 < results["eval_loss"] < 1.0


def test_kfold_out_of_fold_and_averaged_test_predictions(tiny_model, tmp_path):
    d = shared("chnsenticorp")
    out = tmp_path / "o"
    train_file, test_file = first_rows(f"{d}/train.tsv", 150, tmp_path), first_rows(f"{d}/test.tsv", 30, tmp_path)
    argv = cli(model_name_or_path=tiny_model, train_file=train_file, test_file=test_file, text_column="text_a")
    argv += cli(output_dir=out, save_strategy="no", num_train_epochs=1, kfold=3, kfold_seed=5) + FAST
    results = run_classification.main(argv)

    oof = pd.read_csv(out / "oof_predictions.csv", dtype={"label": str, "prediction": str})
    train = pd.read_csv(f"{d}/train.tsv", sep="\t", quoting=3, dtype=str, nrows=150)
    assert oof["text_a"].tolist() == train["text_a"].tolist()  # every train row once, in order
    assert sorted(oof["fold"].unique()) == [0, 1, 2] and oof["fold"].value_counts().tolist() == [50, 50, 50]
    for _, fold in oof.groupby("fold"):  # stratified: each fold has the train split's class balance
        assert abs((fold["label"] == "1").mean() - (train["label"] == "1").mean()) < 0.03
    assert results["oof_accuracy"] == pytest.approx((oof["prediction"] == oof["label"]).mean())

    summary = json.loads((out / "kfold_results.json").read_text())
    per_fold = [f["eval_accuracy"] for f in summary["folds"]]
    assert len(per_fold) == 3
    assert summary["mean"]["eval_accuracy"] == pytest.approx(np.mean(per_fold))
    assert results["kfold_eval_accuracy_std"] == pytest.approx(np.std(per_fold))

    ensemble = pd.read_csv(out / "predictions.csv", dtype={"label": str, "prediction": str})
    folds = [pd.read_csv(out / f"fold_{k}" / "predictions.csv") for k in range(3)]
    assert len(ensemble) == 30
    assert np.allclose(ensemble["prob_1"], np.mean([f["prob_1"] for f in folds], axis=0), atol=1e-5)
    assert not np.allclose(folds[0]["prob_1"], folds[1]["prob_1"], atol=1e-6)  # the folds are different models
    assert results["test_accuracy"] == pytest.approx((ensemble["prediction"] == ensemble["label"]).mean())
    assert all((out / f"fold_{k}" / "model.safetensors").is_file() for k in range(3))
    assert (out / "all_results.json").is_file()


@pytest.mark.parametrize("pooling", ["cls", "mean"])
def test_config_overrides_reach_the_model_that_trains(tiny_model, pooling):
    """With every dropout overridden to 0, training-mode forwards repeat exactly; without, they differ."""
    import torch

    from bertcls.config.arguments import ModelArguments
    from bertcls.model.checkpoints import load_config
    from bertcls.model.heads import configure_head, load_model

    def two_forwards(overrides):
        model_args = ModelArguments(model_name_or_path=tiny_model, pooling=pooling, config_overrides=overrides)
        config = load_config(model_args)
        configure_head(config, model_args)
        config.num_labels = 2
        model = load_model(model_args, config).train()
        ids = torch.tensor([[101, 2769, 1599, 3614, 102]])
        return config, model(input_ids=ids).logits, model(input_ids=ids).logits

    config, first, second = two_forwards("attention_probs_dropout_prob=0, hidden_dropout_prob = 0")
    assert config.attention_probs_dropout_prob == 0.0 and config.hidden_dropout_prob == 0.0
    if pooling == "mean":
        assert config.bertcls_head["dropout"] == 0.0  # the custom head follows the overridden hidden dropout
    torch.testing.assert_close(first, second, rtol=0, atol=0)
    _, first, second = two_forwards(None)
    assert not torch.equal(first, second)
