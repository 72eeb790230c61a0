"""Sliding windows over long texts at prediction: the cut, the aggregation, and both entry points."""

import numpy as np
import pandas as pd
import pytest
import torch
from datasets import Dataset

import run_classification
from bertcls.config.arguments import DataArguments, ModelArguments
from bertcls.data.tokenization import aggregate_windows, check_settings, encode_windows
from bertcls.errors import UserError
from bertcls.model.checkpoints import load_config, load_tokenizer
from bertcls.model.classifier import load_trained_model
from bertcls.shipping import predict

from .conftest import cli, first_rows, shared

TEXT = "".join(chr(0x4E00 + i) for i in range(100))  # 100 distinct CJK characters, one token each


def test_windows_cover_every_token_with_the_stride_as_overlap(tokenizer):
    rows = Dataset.from_dict({"text": ["短文本", TEXT], "label": [0, 1]})
    windows = encode_windows(rows, tokenizer, DataArguments(max_seq_length=32, stride=10, sliding_window=True))
    assert windows.column_names == ["input_ids", "token_type_ids", "attention_mask", "row", "length"]
    assert windows["row"][0] == 0 and windows["input_ids"][0] == tokenizer("短文本")["input_ids"]
    long = [ids for ids, row in zip(windows["input_ids"], windows["row"]) if row == 1]
    assert len(long) == 5  # 30 text tokens per window, 20 new per window: 30 + 20 + 20 + 20 + 10 (last)
    assert all(
        len(ids) <= 32 and ids[0] == tokenizer.cls_token_id and ids[-1] == tokenizer.sep_token_id for ids in long
    )
    content = [ids[1:-1] for ids in long]
    for before, after in zip(content, content[1:]):
        assert before[-10:] == after[:10]  # consecutive windows share `stride` tokens
    rebuilt = content[0] + [t for ids in content[1:] for t in ids[10:]]
    assert rebuilt == tokenizer(TEXT, add_special_tokens=False)["input_ids"]
    assert windows["length"] == [len(ids) for ids in windows["input_ids"]]


def test_aggregate_windows():
    logits = np.array([[1.0, 0.0], [3.0, -2.0], [0.0, 5.0], [2.0, 2.0]], dtype=np.float32)
    rows = [0, 0, 0, 1]
    assert np.allclose(aggregate_windows(logits, rows, 2, "mean"), [[4 / 3, 1.0], [2.0, 2.0]])
    assert np.allclose(aggregate_windows(logits, rows, 2, "max"), [[3.0, 5.0], [2.0, 2.0]])


def test_window_settings_are_checked(tiny_model, tokenizer):
    config = load_config(ModelArguments(model_name_or_path=tiny_model))
    with pytest.raises(UserError, match="--stride 40 must be between 0 and 29"):
        check_settings(DataArguments(max_seq_length=32, sliding_window=True, stride=40), config, tokenizer, "m")
    with pytest.raises(UserError, match="--sliding_window works on single texts"):
        check_settings(
            DataArguments(max_seq_length=32, sliding_window=True, text_pair_column="b"), config, tokenizer, "m"
        )
    check_settings(DataArguments(max_seq_length=32, sliding_window=True), config, tokenizer, "m")  # stride 8


@pytest.mark.slow
def test_test_split_and_predict_cli_combine_window_logits(tiny_model, tmp_path):
    d = shared("chnsenticorp")
    out = tmp_path / "out"
    train_file, test_file = first_rows(f"{d}/train.tsv", 600, tmp_path), first_rows(f"{d}/test.tsv", 40, tmp_path)
    argv = cli(model_name_or_path=tiny_model, train_file=train_file, test_file=test_file, text_column="text_a")
    argv += cli(max_seq_length=32, num_train_epochs=3, save_strategy="no", output_dir=out, learning_rate=3e-3)
    argv += cli(sliding_window=True, stride=8, window_aggregation="mean", validation_split_percentage=0, seed=7)
    results = run_classification.main(argv)
    assert results["test_samples"] == 40 and results["test_windows"] > 80  # reviews are longer than 32 tokens

    frame = pd.read_csv(out / "predictions.csv", dtype={"label": str, "prediction": str})
    test = pd.read_csv(f"{d}/test.tsv", sep="\t", quoting=3, dtype=str, nrows=40)
    model, tokenizer = load_trained_model(str(out)).eval(), load_tokenizer(str(out))
    for i in (0, 7, 23):  # each row's probability is the softmax of its windows' mean logits
        enc = tokenizer(
            test["text_a"][i], truncation=True, max_length=32, stride=8, return_overflowing_tokens=True, padding=True
        )
        inputs = {k: torch.tensor(enc[k]) for k in ("input_ids", "token_type_ids", "attention_mask")}
        with torch.no_grad():
            mean = model(**inputs).logits.mean(dim=0)
        assert frame["prob_1"][i] == pytest.approx(torch.softmax(mean, -1)[1].item(), abs=1e-5)
    accuracy = (frame["prediction"] == frame["label"]).mean()
    assert accuracy == pytest.approx(results["test_accuracy"])  # metrics are scored on the combined logits

    # The saved config remembers the windows, so the predict CLI cuts the same ones by default.
    again = tmp_path / "again.csv"
    predict.main(["--model_name_or_path", str(out), "--input_file", f"{d}/test.tsv", "--output_file", str(again)])
    reread = pd.read_csv(again, dtype={"label": str, "prediction": str}).iloc[:40]
    assert np.allclose(reread["prob_1"], frame["prob_1"], atol=1e-5)
    truncated = tmp_path / "truncated.csv"
    predict.main(
        ["--model_name_or_path", str(out), "--input_file", f"{d}/test.tsv", "--output_file", str(truncated)]
        + ["--sliding_window", "false"]
    )
    assert not np.allclose(pd.read_csv(truncated)["prob_1"][:40], frame["prob_1"], atol=1e-3)
