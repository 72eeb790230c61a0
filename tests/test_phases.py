"""Hugging Face habits: --do_train / --do_eval / --do_predict run exactly what they name, and an eval-only run on a
fine-tuned folder evaluates that model as it was trained (its stored truncation, head_tail and length)."""

import json
import logging
import os

import pandas as pd
import pytest

import run_classification
from bertcls.shipping import predict

from .conftest import REPO, cli

pytestmark = pytest.mark.slow

# The demo reviews end in the clause that decides them (虽然服务很周到，但是房间太小了): keeping the head and the
# tail of 16 tokens reads them differently from keeping the first 16.
HEAD_TAIL = {"truncation": "head_tail", "max_seq_length": 16, "head_tokens": 4}
DEMO = REPO / "bertcls" / "demo"


def demo_files(train=True) -> dict:
    files = {"validation_file": DEMO / "validation.tsv", "test_file": DEMO / "test.tsv"}
    return {"train_file": DEMO / "train.tsv", **files} if train else files


@pytest.fixture(scope="module")
def head_tail_run(tiny_model, tmp_path_factory):
    """A folder fine-tuned with --truncation head_tail --max_seq_length 16 on the demo reviews (test accuracy about
    0.8 after 3 epochs; 60% of the rows are longer than 16 tokens)."""
    out = tmp_path_factory.mktemp("head-tail") / "run"
    results = run_classification.main(
        cli(
            model_name_or_path=tiny_model,
            output_dir=out,
            num_train_epochs=3,
            learning_rate=5e-3,
            eval_strategy="no",
            save_strategy="no",
            seed=5,
            **HEAD_TAIL,
            **demo_files(),
        )
    )
    assert results["test_accuracy"] > 0.7
    return out, results


def test_eval_only_on_a_fine_tuned_folder_trains_nothing_and_reproduces_its_predictions(head_tail_run, tmp_path):
    trained, trained_results = head_tail_run
    weights_before = os.stat(trained / "model.safetensors").st_mtime_ns
    out = tmp_path / "eval-only"
    # No --text_column, --max_seq_length or --truncation: the folder remembers them.
    results = run_classification.main(
        cli(model_name_or_path=trained, output_dir=out, do_eval=True, do_predict=True, **demo_files(train=False))
    )
    assert not any(k.startswith("train_") for k in results)
    assert not (out / "model.safetensors").exists() and not (out / "train_results.json").exists()
    assert os.stat(trained / "model.safetensors").st_mtime_ns == weights_before
    for key in ("eval_accuracy", "eval_f1_macro", "test_accuracy", "test_loss"):
        assert results[key] == pytest.approx(trained_results[key], abs=1e-6), key
    # the same rows, probabilities and labels, byte for byte
    assert (out / "predictions.csv").read_bytes() == (trained / "predictions.csv").read_bytes()


def test_a_flag_overrides_the_stored_preprocessing_and_is_logged(head_tail_run, tmp_path, caplog):
    trained, _ = head_tail_run
    flags = cli(model_name_or_path=trained, output_dir=tmp_path / "o", do_predict=True, test_file=DEMO / "test.tsv")
    with caplog.at_level(logging.WARNING, logger="bertcls"):
        results = run_classification.main([*flags, "--truncation", "longest_first"])
    assert "--truncation longest_first (trained with head_tail)" in caplog.text
    reference = pd.read_csv(trained / "predictions.csv")
    cut_at_the_end = pd.read_csv(tmp_path / "o" / "predictions.csv")
    assert (reference["prediction"] != cut_at_the_end["prediction"]).sum() >= 10  # the deciding clause is cut off
    assert results["test_accuracy"] < trained_results_accuracy(trained) - 0.05


def test_the_length_limit_is_the_models_positions_not_the_saved_tokenizer(head_tail_run, tmp_path):
    trained, _ = head_tail_run
    assert json.loads((trained / "tokenizer_config.json").read_text())["model_max_length"] == 16
    flags = cli(model_name_or_path=trained, output_dir=tmp_path / "o", do_predict=True, max_seq_length=128)
    results = run_classification.main([*flags, *cli(test_file=DEMO / "test.tsv")])
    assert results["test_samples"] == 200


def test_predict_cli_reuses_head_tail(head_tail_run, tmp_path):
    trained, _ = head_tail_run
    target = tmp_path / "p.csv"
    predict.main(cli(model_name_or_path=trained, input_file=DEMO / "test.tsv", output_file=target))
    assert target.read_bytes() == (trained / "predictions.csv").read_bytes()


def test_do_train_alone_neither_evaluates_nor_predicts(tiny_model, tmp_path):
    out = tmp_path / "train-only"
    results = run_classification.main(
        cli(model_name_or_path=tiny_model, output_dir=out, max_steps=6, do_train=True, save_strategy="no")
        + cli(max_seq_length=32, **demo_files())
    )
    assert not any(k.startswith(("eval_", "test_")) for k in results)
    history = json.loads((out / "trainer_state.json").read_text())["log_history"]
    assert not any("eval_loss" in entry for entry in history)  # no evaluation inside train() either
    assert not (out / "predictions.csv").exists() and (out / "model.safetensors").exists()


def test_do_eval_false_turns_off_evaluation_during_training(tiny_model, tmp_path):
    out = tmp_path / "no-eval"
    flags = cli(model_name_or_path=tiny_model, output_dir=out, do_eval=False, max_steps=20, save_strategy="no")
    results = run_classification.main(flags + cli(eval_strategy="steps", eval_steps=5, **demo_files()))
    history = json.loads((out / "trainer_state.json").read_text())["log_history"]
    assert not any("eval_loss" in entry for entry in history)
    assert "test_accuracy" in results and not any(k.startswith("eval_") for k in results)


def trained_results_accuracy(folder) -> float:
    return json.loads((folder / "test_results.json").read_text())["test_accuracy"]


def errors_of(argv, capsys) -> str:
    with pytest.raises(SystemExit) as exit_info:
        run_classification.main(argv)
    assert exit_info.value.code == 2
    return capsys.readouterr().err


def test_eval_only_refuses_a_pretrained_encoder(tiny_model, tmp_path, capsys):
    err = errors_of(
        cli(model_name_or_path=tiny_model, output_dir=tmp_path / "o", do_eval=True, **demo_files()), capsys
    )
    assert "is not a fine-tuned classifier: its classification head was never trained" in err
    assert "classifier.bias" in err and not (tmp_path / "o").exists()
    err = errors_of(
        ["--model_name_or_path", tiny_model, "--output_dir", str(tmp_path / "o"), "--do_eval", "false"]
        + ["--early_stopping_patience", "2", *cli(**demo_files())],
        capsys,
    )
    assert "--early_stopping_patience / --load_best_model_at_end pick checkpoints by evaluation" in err


def test_predict_refuses_a_pretrained_encoder(tiny_model, tmp_path, capsys):
    with pytest.raises(SystemExit):
        predict.main(cli(model_name_or_path=tiny_model, input_file=DEMO / "test.tsv", output_file="x"))
    assert "is not a fine-tuned classifier" in capsys.readouterr().err
