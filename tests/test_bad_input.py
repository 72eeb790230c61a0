"""Every bad input: non-zero exit, one clear line naming the file/column/row/flag and the fix, no traceback, no
output a later run could take for a result."""

import json
import os
import shutil
import subprocess
import sys

import pandas as pd
import pytest
from transformers import AutoModelForSequenceClassification, ViTConfig, ViTModel

import run_classification

from .conftest import REPO, cli, make_tiny, shared

TRAIN = "label\ttext\npos\t这家酒店很好\nneg\t服务太差了\npos\t房间干净\nneg\t早餐难吃\n"


def quick(model, out, **flags) -> list[str]:
    """Flags for a run of a step or two on a small file, without evaluation."""
    settings = {"max_steps": 1, "validation_split_percentage": 0, "eval_strategy": "no", **flags}
    return cli(model_name_or_path=model, output_dir=out, **settings)


@pytest.fixture
def run(tiny_model, write, tmp_path, capsys):
    """run(*flags, train=TRAIN) -> the error line; asserts the failure contract on the way."""

    def _run(*flags, train=TRAIN, model=tiny_model):
        out = tmp_path / "out"
        args = quick(model, out, max_steps=2, per_device_train_batch_size=2)
        if train is not None:
            args += ["--train_file", write("train.tsv", train)]
        with pytest.raises(SystemExit) as exit_info:
            run_classification.main([*args, *flags])
        assert exit_info.value.code == 2
        err = capsys.readouterr().err
        assert "Traceback" not in err
        lines = [line for line in err.splitlines() if line.startswith(("error:", "(set BERTCLS_DEBUG"))]
        assert len(lines) == 2 and lines[0].startswith("error: ") and "Fix: " in lines[0], err[-2000:]
        assert not (out / "all_results.json").exists() and not (out / "predictions.csv").exists()
        return lines[0]

    return _run


@pytest.mark.parametrize(
    "train,flags,expected",
    [
        ("", [], r"data file is empty: .*train.tsv"),
        ("label\ttext\n", [], r"train.tsv has a header line but no data rows"),
        (
            TRAIN,
            ["--text_column", "review"],
            r"train.tsv: no column 'review' \(--text_column\); its columns are \['label', 'text'\]",
        ),
        (TRAIN, ["--label_column", "y"], r"no column 'y' \(--label_column\)"),
        (TRAIN, ["--text_pair_column", "text_b"], r"no column 'text_b' \(--text_pair_column\)"),
        (
            "label,text\npos,好\nneg,差\n",
            [],
            r"found one column 'label,text': the file looks separated by commas.*Fix: rename it to .csv",
        ),
        (
            "label\ttext\npos\t好\nneg\t   \npos\t\n",
            [],
            r"empty text in column 'text' in 2 rows \(.*train.tsv lines 3, 4\).*--drop_invalid_rows",
        ),
        (
            "label\ttext\npos\t好\n\t差\nneg\t坏\n",
            [],
            r"missing label in column 'label' in 1 row \(.*train.tsv line 3\)",
        ),
        ("label\ttext\npos\t好\npos\t差\n", [], r"holds only one class \(\['pos'\]\)"),
        (
            TRAIN,
            ["--max_seq_length", "513"],
            r"--max_seq_length 513 is over the limit of .*: 512 tokens.*Fix: use --max_seq_length 512 or less",
        ),
        (TRAIN, ["--truncation", "only_second"], r"--truncation only_second cuts one text of a pair"),
        (
            TRAIN,
            ["--learning_rat", "1e-4"],
            r"unknown argument\(s\) --learning_rat 1e-4.*did you mean --learning_rate",
        ),
        (
            TRAIN,
            ["--per_device_train_batch_size", "big"],
            r"argument --per_device_train_batch_size.*invalid int value: 'big'",
        ),
        (TRAIN, ["--resume_from_checkpoint", "nowhere"], r"checkpoint folder not found: nowhere"),
        (
            TRAIN,
            ["--config_overrides", "attention_dropout=0"],
            r"--config_overrides: 'attention_dropout' is not a setting .*did you mean attention_probs_dropout_prob",
        ),
        (
            TRAIN,
            ["--config_overrides", "hidden_dropout_prob"],
            r"--config_overrides: 'hidden_dropout_prob' is not key=",
        ),
        (TRAIN, ["--config_overrides", "num_hidden_layers=1.5"], r"--config_overrides: invalid literal for int"),
    ],
)
def test_bad_data_and_flags(run, train, flags, expected):
    import re

    assert re.search(expected, run(*flags, train=train))


def test_missing_and_gbk_files(run, write, tmp_path):
    assert "data file not found: nowhere.tsv" in run("--train_file", "nowhere.tsv", train=None)
    gbk = tmp_path / "gbk.tsv"
    gbk.write_bytes(TRAIN.encode("gbk"))
    line = run("--train_file", str(gbk), train=None)
    assert "gbk.tsv is not valid utf-8" in line and "Fix: add --encoding gbk" in line


def test_label_unseen_in_train(run, write):
    dev = write("dev.tsv", "label\ttext\npos\t好\nmeh\t一般\n")
    line = run("--validation_file", dev)
    assert "unknown label 'meh' in 1 row" in line and "dev.tsv line 3" in line and "--class_names" in line


def test_recipe_errors_are_one_line(write, tiny_model, capsys):
    recipe = write("r.json", json.dumps({"model_name_or_path": tiny_model, "num_train_epoch": 3}))
    with pytest.raises(SystemExit) as exit_info:
        run_classification.main([recipe])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and "unknown key 'num_train_epoch'" in err and "'num_train_epochs'" in err
    bad = write("bad.json", json.dumps({"model_name_or_path": tiny_model, "num_train_epochs": "three"}))
    with pytest.raises(SystemExit):
        run_classification.main([bad])
    assert "key 'num_train_epochs' must be of type float, got 'three'" in capsys.readouterr().err


def test_model_problems(run, tmp_path, tiny_model):
    assert "model folder not found: /nowhere/model" in run(model="/nowhere/model")
    vocab_only = tmp_path / "vocab-only"
    vocab_only.mkdir()
    shutil.copy(shared("vocab", "vocab.txt"), vocab_only / "vocab.txt")
    assert "holds only a vocabulary (vocab.txt), not a model" in run(model=str(vocab_only))
    vit = ViTConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=37, image_size=8)
    ViTModel(vit).save_pretrained(tmp_path / "vit")
    line = run("--tokenizer_name", tiny_model, model=str(tmp_path / "vit"))
    assert "is not a model that can classify text" in line
    line = run(model="someone/not-downloaded")
    assert "not a local folder and the Hugging Face Hub cannot be reached" in line


def test_finetuned_checkpoint_with_other_label_count(run, tmp_path, tiny_model):
    model = AutoModelForSequenceClassification.from_pretrained(tiny_model, num_labels=3)
    model.save_pretrained(tmp_path / "three-labels")
    line = run(model=str(tmp_path / "three-labels"))
    assert "fine-tuned for a different number of labels; this data has 2" in line
    assert "Fix: pass --ignore_mismatched_sizes" in line


def test_finished_output_dir_is_refused_unless_asked(tiny_model, write, tmp_path, capsys):
    out = tmp_path / "done"
    args = quick(tiny_model, out, train_file=write("train.tsv", TRAIN), max_steps=2, save_strategy="no")
    run_classification.main(args)
    before = (out / "all_results.json").read_text()
    with pytest.raises(SystemExit):
        run_classification.main(args)
    err = capsys.readouterr().err
    assert "already holds a finished run (all_results.json)" in err and "--overwrite_output_dir" in err
    assert (out / "all_results.json").read_text() == before  # untouched
    (out / "notes.txt").write_text("mine")
    run_classification.main([*args, "--overwrite_output_dir"])
    assert (out / "all_results.json").exists() and (out / "notes.txt").read_text() == "mine"


def test_a_100k_character_text_is_truncated(tiny_model, write, tmp_path):
    long_text = "这家酒店很好" * 17000  # 102,000 characters
    train = write("train.tsv", f"label\ttext\npos\t{long_text}\nneg\t服务太差了\n")
    out = tmp_path / "long"
    run_classification.main(
        quick(tiny_model, out, train_file=train, test_file=train, max_seq_length=128, save_strategy="no")
    )
    predictions = pd.read_csv(out / "predictions.csv")
    assert len(predictions) == 2 and len(predictions["text"][0]) == 102_000


def test_real_process_exit_code_and_debug_traceback(tiny_model, write):
    gbk = write("gbk.tsv", TRAIN, encoding="gbk")
    command = [
        sys.executable,
        str(REPO / "run_classification.py"),
        *cli(model_name_or_path=tiny_model, train_file=gbk, output_dir=os.path.dirname(gbk) + "/out"),
    ]
    plain = subprocess.run(command, capture_output=True, text=True)
    assert plain.returncode == 2 and "Traceback" not in plain.stderr
    assert plain.stderr.splitlines()[-2].startswith("error: ") and "--encoding gbk" in plain.stderr
    debug = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "BERTCLS_DEBUG": "1"})
    assert debug.returncode != 0 and "Traceback" in debug.stderr and "UserError" in debug.stderr


def test_vocab_only_checkpoint_with_config_trains(tmp_path, write):
    """A converted Chinese checkpoint: vocab.txt + config.json + weights, no tokenizer files."""
    folder = make_tiny(tmp_path / "converted", vocab_only=True)
    results = run_classification.main(quick(folder, tmp_path / "o", train_file=write("train.tsv", TRAIN)))
    assert results["train_samples"] == 4
