"""A recipe file sets defaults, the command line overrides them, and mistakes name the key."""

import json
import os
import re
import subprocess
import sys
from dataclasses import fields

import pytest

from bertcls.config.arguments import DataArguments, ModelArguments
from bertcls.config.recipes import parse_args, recipe_of
from bertcls.config.training_arguments import ClassificationTrainingArguments
from bertcls.errors import UserError

from .conftest import REPO


@pytest.fixture
def recipe(tmp_path):
    def _recipe(content: dict | str, name: str = "r.json") -> str:
        path = tmp_path / "recipes" / name
        path.parent.mkdir(exist_ok=True)
        path.write_text(content if isinstance(content, str) else json.dumps(content), encoding="utf-8")
        return str(path)

    return _recipe


BASE = {
    "model_name_or_path": "hfl/chinese-bert-wwm-ext",
    "train_file": "../data/train.tsv",
    "output_dir": "out",
    "learning_rate": 2e-5,
    "num_train_epochs": 3,
    "label_names": ["neg", "pos"],
    "fp16": False,
}


def test_recipe_alone(recipe):
    model, data, training = parse_args([recipe(BASE)])
    assert model.model_name_or_path == "hfl/chinese-bert-wwm-ext"  # a Hub id is left alone
    assert training.learning_rate == 2e-5 and isinstance(training.learning_rate, float)
    assert training.num_train_epochs == 3.0 and data.class_names == ["neg", "pos"]
    # relative paths resolve against the recipe's folder; output_dir stays relative to where you run
    assert data.train_file == os.path.normpath(os.path.join(os.path.dirname(recipe(BASE)), "../data/train.tsv"))
    assert training.output_dir == "out"


def test_command_line_overrides_the_recipe(recipe):
    _, data, training = parse_args(
        [recipe(BASE), "--learning_rate", "3e-5", "--label_names", "a", "b", "c", "--train_file", "here.tsv"]
    )
    assert training.learning_rate == 3e-5 and data.class_names == ["a", "b", "c"]
    assert data.train_file == "here.tsv"  # command-line paths are relative to the working directory


def test_yaml_recipe(recipe):
    path = recipe("model_name_or_path: m\noutput_dir: out\nlearning_rate: 2e-5\nfp16: true\n", name="r.yaml")
    _, _, training = parse_args([path, "--fp16", "false"])
    assert training.learning_rate == 2e-5 and training.fp16 is False


def test_unknown_key_names_it_and_the_closest_valid_names(recipe):
    with pytest.raises(UserError, match=r"r.json: unknown key 'learning_rat'") as error:
        parse_args([recipe({**BASE, "learning_rat": 1e-5})])
    assert "'learning_rate'" in error.value.fix


@pytest.mark.parametrize(
    "key,value,message",
    [
        ("per_device_train_batch_size", 2.5, "must be of type int, got 2.5"),
        ("learning_rate", "fast", "must be of type float, got 'fast'"),
        ("truncation", "middle", r"must be one of \['longest_first', 'only_first', 'only_second', 'head_tail'\]"),
        ("label_names", "neg,pos", "must be a list"),
        ("text_column", 3, "must be a string"),
        ("fp16", "maybe", "must be of type"),
    ],
)
def test_wrong_type_names_the_key(recipe, key, value, message):
    with pytest.raises(UserError, match=rf"key '{key}' {message}"):
        parse_args([recipe({**BASE, key: value})])


def test_not_a_flat_object_and_missing_file(recipe):
    with pytest.raises(UserError, match="must hold one flat object"):
        parse_args([recipe("[1, 2]")])
    with pytest.raises(UserError, match="recipe file not found"):
        parse_args(["nowhere.json"])
    with pytest.raises(UserError, match="is not valid JSON"):
        parse_args([recipe("{bad json")])


def test_recipe_of_round_trips(recipe, tmp_path):
    args = parse_args([recipe(BASE), "--max_seq_length", "128"])
    snapshot = recipe_of(*args)
    assert snapshot["max_seq_length"] == 128 and snapshot["learning_rate"] == 2e-5
    assert "adam_beta1" not in snapshot and "truncation" not in snapshot  # defaults are left out...
    assert snapshot["weight_decay"] == 0.01  # ...except the hyperparameters that decide the result
    again = parse_args([recipe(snapshot, name="again.json")])
    assert recipe_of(*again) == snapshot


def test_help_lists_every_field():
    result = subprocess.run(
        [sys.executable, str(REPO / "run_classification.py"), "--help"],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "COLUMNS": "200"},
    )
    for dataclass in (ModelArguments, DataArguments, ClassificationTrainingArguments):
        for f in fields(dataclass):
            if f.init:
                assert f"--{f.name}" in result.stdout, f.name
    assert "--layerwise_lr_decay" in result.stdout and "head+tail" not in result.stderr


@pytest.mark.parametrize(
    "flag, value, expected",
    [
        ("--layerwise_lr_decay", "1.5", r"in \(0, 1\]"),
        ("--layerwise_lr_decay", "0", r"in \(0, 1\]"),
        ("--layerwise_lr_decay", "-0.9", r"in \(0, 1\]"),
        ("--learning_rate", "-1e-5", "above 0"),
        ("--per_device_train_batch_size", "0", "at least 1"),
        ("--gradient_accumulation_steps", "0", "at least 1"),
        ("--seed", "-1", r"in \[0, 4294967295\]"),
        ("--validation_split_percentage", "100", r"in \[0, 100\)"),
        ("--max_seq_length", "0", "at least 1"),
        ("--max_train_samples", "0", "at least 1"),
        ("--stride", "-1", "at least 0"),
        ("--multi_label_threshold", "1.5", r"in \(0, 1\)"),
        ("--head_dropout", "1", r"in \[0, 1\)"),
        ("--label_smoothing_factor", "1.0", r"in \[0, 1\)"),
        ("--warmup_steps", "-0.1", "at least 0"),
        ("--weight_decay", "-0.01", "at least 0"),
        ("--max_grad_norm", "-1", "at least 0"),
        ("--adv_epsilon", "0", "above 0"),
        ("--focal_gamma", "-2", "at least 0"),
        ("--early_stopping_patience", "0", "at least 1"),
        ("--save_total_limit", "0", "at least 1"),
        ("--max_steps", "0", "-1 .* or at least 1"),
        ("--num_train_epochs", "0", "above 0"),
    ],
)
def test_numeric_options_out_of_range_fail_when_parsed(flag, value, expected):
    with pytest.raises(UserError, match=re.escape(flag) + " must be") as error:
        parse_args(["--model_name_or_path", "m", "--output_dir", "o", f"{flag}={value}"])
    assert re.search(expected, str(error.value)) and f"got {value}" in str(error.value).replace(
        "got -1e-05", "got -1e-5"
    )
