"""What users of transformers' examples/pytorch/text-classification/run_classification.py bring with them: its
flags with their documented meaning (DataTrainingArguments, ModelArguments), the commands of its README on local
files of the same shape, a JSON file of its key names, and any combination of flags stock TrainingArguments
accept. Expectations come from that script's documentation, not from this repo's code."""

import json
import logging
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from datasets import ClassLabel, Dataset, DatasetDict, Features, Value
from transformers import TrainingArguments

import run_classification
from bertcls.config.arguments import DataArguments
from bertcls.config.recipes import make_parser, parse_args
from bertcls.data.loading import load_task_data
from bertcls.errors import UserError

from .conftest import REPO, cli, shared

BASE = ["--model_name_or_path", "m", "--output_dir", "o"]


def parse(*flags):
    return parse_args([*BASE, *flags])


def load(**flags):
    return load_task_data(DataArguments(**{"validation_split_percentage": 0, **flags}), seed=0)


# -- every field of the reference's DataTrainingArguments and ModelArguments -----------------------------------------

# flag, value, (dataclass index, field, parsed value); the meaning is the reference script's
REFERENCE_FLAGS = [
    ("--dataset_name", "glue", (1, "dataset_name", "glue")),
    ("--dataset_config_name", "mrpc", (1, "dataset_config_name", "mrpc")),
    ("--do_regression", "true", (1, "do_regression", True)),
    ("--text_column_names", "sentence1,sentence2", (1, "text_column", "sentence1,sentence2")),
    ("--text_column_name", "sentence1,sentence2", (1, "text_column", "sentence1,sentence2")),  # README form
    ("--text_column_delimiter", "\n", (1, "text_column_delimiter", "\n")),
    ("--train_split_name", "tr", (1, "train_split_name", "tr")),
    ("--validation_split_name", "va", (1, "validation_split_name", "va")),
    ("--test_split_name", "te", (1, "test_split_name", "te")),
    ("--remove_splits", "unused", (1, "remove_splits", "unused")),
    ("--remove_columns", "title,date", (1, "remove_columns", "title,date")),
    ("--label_column_name", "topics", (1, "label_column", "topics")),
    ("--max_seq_length", "128", (1, "max_seq_length", 128)),
    ("--overwrite_cache", "true", (1, "overwrite_cache", True)),
    ("--pad_to_max_length", "true", (1, "pad_to_max_length", True)),
    ("--shuffle_train_dataset", "true", (1, "shuffle_train_dataset", True)),
    ("--shuffle_seed", "7", (1, "shuffle_seed", 7)),
    ("--max_train_samples", "5", (1, "max_train_samples", 5)),
    ("--max_eval_samples", "5", (1, "max_eval_samples", 5)),
    ("--max_predict_samples", "5", (1, "max_predict_samples", 5)),
    ("--metric_name", "accuracy", (1, "metric_name", "accuracy")),
    ("--train_file", "a.csv", (1, "train_file", "a.csv")),
    ("--validation_file", "b.csv", (1, "validation_file", "b.csv")),
    ("--test_file", "c.csv", (1, "test_file", "c.csv")),
    ("--config_name", "cfg", (0, "config_name", "cfg")),
    ("--tokenizer_name", "tok", (0, "tokenizer_name", "tok")),
    ("--cache_dir", "cache", (0, "cache_dir", "cache")),
    ("--use_fast_tokenizer", "false", (0, "use_fast_tokenizer", False)),
    ("--model_revision", "v1", (0, "model_revision", "v1")),
    ("--token", "hf_x", (0, "token", "hf_x")),
    ("--trust_remote_code", "true", (0, "trust_remote_code", True)),
    ("--ignore_mismatched_sizes", "true", (0, "ignore_mismatched_sizes", True)),
]


@pytest.mark.parametrize("flag,value,expected", REFERENCE_FLAGS, ids=[f for f, _, _ in REFERENCE_FLAGS])
def test_every_reference_flag_is_accepted(flag, value, expected):
    index, name, parsed = expected
    assert getattr(parse(flag, value)[index], name) == parsed


def test_reference_spellings_are_the_same_field_and_help_shows_both():
    parser = make_parser()
    actions = parser._option_string_actions
    assert actions["--text_column_names"] is actions["--text_column"] is actions["--text_column_name"]
    assert actions["--label_column_name"] is actions["--label_column"]
    assert actions["--label_names"] is actions["--class_names"]
    help_text = parser.format_help()
    for flag in ("--text_column_names", "--text_column_name", "--label_column_name", "--label_names"):
        assert f"{flag} " in help_text


def test_one_field_given_twice_under_two_names_is_one_error(tmp_path):
    with pytest.raises(UserError, match="--label_column and --label_column_name are the same setting"):
        parse("--label_column", "a", "--label_column_name", "b")
    recipe = tmp_path / "r.json"
    recipe.write_text(json.dumps({"model_name_or_path": "m", "label_column": "a", "label_column_name": "b"}))
    with pytest.raises(UserError, match="keys 'label_column' and 'label_column_name' are the same setting"):
        parse_args([str(recipe), "--output_dir", "o"])


def test_label_names_is_our_old_spelling_and_the_trainers_field_is_untouched(caplog):
    with caplog.at_level(logging.INFO):
        _, data, training = parse("--label_names", "neg", "pos")
    assert data.class_names == ["neg", "pos"] and training.label_names is None
    assert any("--label_names is the old spelling of --class_names" in r.getMessage() for r in caplog.records)


DIFFERING = {
    0: [],
    1: ["text_column", "max_seq_length", "pad_to_max_length", "validation_split_percentage", "max_train_samples"],
    2: [
        "learning_rate",
        "weight_decay",
        "warmup_steps",
        "per_device_train_batch_size",
        "per_device_eval_batch_size",
        "eval_strategy",
        "save_strategy",
        "save_total_limit",
        "logging_steps",
        "train_sampling_strategy",
        "metric_for_best_model",
        "do_train",
    ],
}


def test_help_marks_every_default_that_differs_from_the_reference():
    from dataclasses import fields

    from bertcls.config.recipes import run_dataclasses

    for index, names in DIFFERING.items():
        helps = {f.name: f.metadata.get("help", "") for f in fields(run_dataclasses()[index])}
        for name in names:
            assert "Differs from transformers' run_classification.py" in helps[name], name
    assert os.path.isfile(REPO / "docs" / "differences-from-transformers.md")


# -- data flags ----------------------------------------------------------------------------------------------------


def test_text_column_names_are_joined_by_the_delimiter(write):
    train = write("train.csv", "sentence1,sentence2,label\n今天,天气好,1\n明天,下雨,0\n")
    task = load(train_file=train, text_column="sentence1,sentence2", text_column_delimiter="\n")
    assert task.splits["train"]["text"][:] == ["今天\n天气好", "明天\n下雨"] and not task.is_pair
    default = load(train_file=train, text_column="sentence1,sentence2")
    assert default.splits["train"]["text"][:] == ["今天 天气好", "明天 下雨"]  # the reference's default: a space


def test_the_references_default_text_column_sentence_works(caplog):
    # TNEWS (FewCLUE) names its text column `sentence`, as the reference script's default does
    with caplog.at_level(logging.INFO):
        task = load(train_file=shared("tnews_fewclue", "train_few_all.json"))
    assert task.splits["train"][0]["text"] == "孩子跟谁睡，就是谁的孩子"
    assert any("reading the texts from `sentence`" in r.getMessage() for r in caplog.records)


def dataset_folder(path) -> str:
    """A DatasetDict saved with save_to_disk, shaped like the Hub datasets of the reference's README: ClassLabel
    labels, an extra split to remove and extra columns."""
    features = Features({"text": Value("string"), "title": Value("string"), "label": ClassLabel(names=["neg", "pos"])})
    rows = {"text": ["好", "差", "很好", "太差", "不错", "糟糕"], "title": ["t"] * 6, "label": [1, 0, 1, 0, 1, 0]}
    DatasetDict(
        {
            "training": Dataset.from_dict(rows, features=features),
            "dev": Dataset.from_dict(rows, features=features),
            "unused": Dataset.from_dict(rows, features=features),
        }
    ).save_to_disk(str(path))
    return str(path)


def test_split_names_remove_splits_and_remove_columns(tmp_path):
    folder = dataset_folder(tmp_path / "ds")
    task = load(dataset_name=folder, train_split_name="training", remove_splits="unused", remove_columns="title")
    assert set(task.splits) == {"train", "validation"}  # dev is found as validation
    assert "title" not in task.raw["train"].column_names
    assert task.labels.names == ("neg", "pos")
    with pytest.raises(
        UserError, match=r"has no split 'train' \(--train_split_name\); its splits are \['dev', 'training', 'unused'\]"
    ):
        load(dataset_name=folder)
    with pytest.raises(UserError, match="--remove_splits nope: .* its splits are"):
        load(dataset_name=folder, train_split_name="training", remove_splits="nope")
    with pytest.raises(UserError, match="--remove_columns nope: no split has that column"):
        load(dataset_name=folder, train_split_name="training", remove_columns="nope")


def test_shuffle_train_dataset_is_seeded(write):
    lines = "".join(f"句子{i},{i % 2}\n" for i in range(40))
    train = write("train.csv", "text,label\n" + lines)
    plain = load(train_file=train).splits["train"]["text"][:]
    first = load(train_file=train, shuffle_train_dataset=True, shuffle_seed=3).splits["train"]["text"][:]
    again = load(train_file=train, shuffle_train_dataset=True, shuffle_seed=3).splits["train"]["text"][:]
    other = load(train_file=train, shuffle_train_dataset=True, shuffle_seed=4).splits["train"]["text"][:]
    assert first == again and first != plain and first != other and sorted(first) == sorted(plain)


def test_max_train_samples_on_a_label_sorted_file_keeps_every_class(caplog):
    path = shared("tnews_fewclue", "train_few_all.json")
    with caplog.at_level(logging.INFO):
        task = load(train_file=path, max_train_samples=50)
    ids = np.asarray(task.splits["train"]["label"][:])
    full = pd.read_json(path, lines=True)["label"]
    assert len(ids) == 50 and (full != full.shift()).sum() == 15  # the file holds one block per label
    counts = np.bincount(ids, minlength=15)
    assert (counts > 0).sum() == 15 and counts.max() - counts.min() <= 1  # 15 classes of 72-80 rows: 3 or 4 each
    assert any("a stratified by label sample, seed 0" in r.getMessage() for r in caplog.records)


def test_max_predict_samples_keeps_the_predicted_rows_in_file_order(write):
    train = write("train.csv", "text,label\n好,1\n差,0\n")
    test = write("test.csv", "text\n" + "".join(f"第{i}行\n" for i in range(20)))
    task = load(train_file=train, test_file=test, max_predict_samples=5)
    rows = task.raw_test["text"][:]
    assert rows == task.splits["test"]["text"][:] and len(rows) == 5
    assert rows != [f"第{i}行" for i in range(5)]  # a sample, not the first five
    assert rows == sorted(rows, key=lambda t: int(t[1:-1]))


def test_glue_style_test_labels_minus_one_are_unlabelled(write, caplog):
    train = write("train.tsv", "text\tlabel\n好\t1\n差\t0\n")
    test = write("test.tsv", "text\tlabel\n很好\t-1\n太差\t0\n还行\t\n")
    with caplog.at_level(logging.INFO):
        task = load(train_file=train, test_file=test)
    assert task.splits["test"]["label"][:] == [-1, 0, -1]
    assert any("2 of 3 rows are unlabelled" in r.getMessage() for r in caplog.records)
    with pytest.raises(UserError, match="unknown label '-1'"):  # in training data -1 is no such sentinel
        load(train_file=train, validation_file=test)


def test_pad_to_max_length_pads_every_row(tokenizer):
    from bertcls.training.trainer import make_data_collator

    args = TrainingArguments(output_dir="o")
    rows = [tokenizer("好"), tokenizer("今天天气很好")]
    assert make_data_collator(tokenizer, args, 32)(rows)["input_ids"].shape == (2, 32)
    assert make_data_collator(tokenizer, args)(rows)["input_ids"].shape[1] < 32


def test_model_flags_reach_what_loads(tiny_model, monkeypatch, tmp_path):
    import transformers

    from bertcls.config.arguments import ModelArguments
    from bertcls.model import checkpoints

    seen = []
    real = transformers.AutoConfig.from_pretrained

    def spy(name, **options):
        seen.append((name, options))
        return real(name, **{k: v for k, v in options.items() if k != "token"})

    monkeypatch.setattr(checkpoints.AutoConfig, "from_pretrained", spy)
    other = tmp_path / "other-config"
    config = real(tiny_model)
    config.hidden_dropout_prob = 0.37
    config.save_pretrained(other)
    args = ModelArguments(model_name_or_path=tiny_model, config_name=str(other), token="hf_x", model_revision="v2")
    assert checkpoints.load_config(args).hidden_dropout_prob == 0.37
    name, options = seen[-1]
    assert name == str(other) and options["token"] == "hf_x" and options["revision"] == "v2"


def test_metric_name_computed_here_needs_no_download_and_a_hub_name_offline_is_one_line(monkeypatch):
    from bertcls.evaluation.metrics import load_extra_metrics, metric_names

    assert metric_names([], "accuracy") == [] and metric_names([], "pearsonr") == []
    with pytest.raises(
        UserError, match="could not load extra metric 'matthews_correlation'.*Hub metrics need network"
    ):
        load_extra_metrics(metric_names([], "matthews_correlation"))


# -- TrainingArguments: what stock accepts works here --------------------------------------------------------------

# Combinations stock TrainingArguments accept (checked below against the real class), with what they mean there.
STOCK_COMBINATIONS = [
    {"eval_strategy": "steps", "eval_steps": 5, "load_best_model_at_end": True},
    {"eval_strategy": "epoch", "save_strategy": "epoch", "load_best_model_at_end": True},
    {"eval_strategy": "steps", "eval_steps": 2, "save_steps": 4, "load_best_model_at_end": True},
    {"save_steps": 3},
    {"eval_strategy": "steps", "eval_steps": 4, "save_steps": 8},
    {"eval_strategy": "no", "save_strategy": "no"},
    {"save_strategy": "best", "eval_strategy": "steps", "eval_steps": 3, "metric_for_best_model": "accuracy"},
]


@pytest.mark.parametrize("combination", STOCK_COMBINATIONS, ids=lambda c: " ".join(f"{k}={v}" for k, v in c.items()))
def test_combinations_stock_training_arguments_accept_are_accepted(combination):
    TrainingArguments(output_dir="o", **combination)  # stock accepts it (else this test is wrong)
    training = parse(*cli(**combination))[2]
    for key, value in combination.items():
        assert str(getattr(getattr(training, key), "value", getattr(training, key))) == str(value)


def test_save_strategy_follows_eval_strategy_and_save_steps_alone_means_steps():
    training = parse("--eval_strategy", "steps", "--eval_steps", "3", "--load_best_model_at_end")[2]
    assert training.save_strategy.value == "steps" and training.save_steps == 3
    assert parse("--save_steps", "2")[2].save_strategy.value == "steps"
    assert parse("--eval_steps", "4")[2].eval_strategy.value == "steps"
    assert parse("--eval_strategy", "no")[2].save_strategy.value == "epoch"  # no evaluation: our default saving


@pytest.mark.parametrize(
    "flags,message",
    [
        (["--save_strategy", "steps", "--load_best_model_at_end"], "--save_strategy must match --eval_strategy"),
        (["--lr_scheduler_type", "bogus"], "--lr_scheduler_type"),
        (["--prediction_loss_only"], "--prediction_loss_only: this script scores every evaluation"),
        (["--report_to", "nosuchlogger"], "--report_to nosuchlogger: not a logging integration"),
    ],
)
def test_training_argument_errors_are_one_line(flags, message):
    with pytest.raises(UserError, match=message):
        parse(*flags)


def test_report_to_tensorboard_names_the_extra_or_logs(tiny_model, write, tmp_path):
    from transformers.integrations import is_tensorboard_available

    out = tmp_path / "out"
    train = write("train.tsv", "text\tlabel\n好\t1\n差\t0\n不错\t1\n太差\t0\n")
    argv = cli(model_name_or_path=tiny_model, train_file=train, output_dir=out, max_steps=2, logging_steps=1)
    argv += ["--report_to", "tensorboard", "--validation_split_percentage", "0"]
    if not is_tensorboard_available():
        with pytest.raises(
            UserError, match=r"the tensorboard package is not installed. Fix: pip install 'bertcls\[tensorboard\]'"
        ):
            parse_args(argv)
        setup = (REPO / "setup.cfg").read_text()
        assert "tensorboard =\n    tensorboard>=" in setup
        return
    run_classification.main(argv)
    assert any(name.startswith("events.out.tfevents") for _, _, files in os.walk(out) for name in files)


def test_bf16_on_a_cpu_without_bf16_instructions_is_one_line(monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: False)
    with pytest.raises(UserError, match="this CPU lacks bf16 instructions"):
        parse("--bf16")


@pytest.mark.slow
def test_bf16_trains_on_a_cpu_that_has_it(tiny_model, write, tmp_path):
    import torch

    if torch.cuda.is_available() or not torch.ops.mkldnn._is_mkldnn_bf16_supported():
        pytest.skip("needs a CPU with avx512_bf16 or AMX and no GPU")
    train = write("train.tsv", "text\tlabel\n好\t1\n差\t0\n不错\t1\n太差\t0\n")
    out = tmp_path / "out"
    argv = cli(model_name_or_path=tiny_model, train_file=train, output_dir=out, max_steps=2, bf16=True)
    results = run_classification.main([*argv, "--validation_split_percentage", "0"])
    args = torch.load(out / "training_args.bin", weights_only=False)
    assert args.bf16 and args.use_cpu and results["train_loss"] > 0


# -- end to end ----------------------------------------------------------------------------------------------------

FAST = ["--max_seq_length", "64", "--learning_rate", "2e-3", "--logging_steps", "10"]


@pytest.mark.slow
def test_eval_steps_with_load_best_model_at_end_runs_and_save_steps_saves_every_n(tiny_model, write, tmp_path):
    lines = "".join(f"{'好' * (i % 5 + 1)}\t{i % 2}\n" for i in range(40))
    train = write("train.tsv", "text\tlabel\n" + lines)
    out = tmp_path / "best"
    argv = cli(model_name_or_path=tiny_model, train_file=train, output_dir=out, max_steps=6, eval_steps=2)
    run_classification.main(
        [*argv, "--eval_strategy", "steps", "--load_best_model_at_end", "--per_device_train_batch_size", "8"]
    )
    state = json.loads((out / "trainer_state.json").read_text())
    assert state["best_model_checkpoint"] is not None and [
        e["step"] for e in state["log_history"] if "eval_loss" in e
    ] == [2, 4, 6]
    out = tmp_path / "steps"
    argv = cli(model_name_or_path=tiny_model, train_file=train, output_dir=out, max_steps=6, save_steps=2)
    run_classification.main(
        [*argv, "--save_total_limit", "10", "--eval_strategy", "no", "--per_device_train_batch_size", "8"]
    )
    assert sorted(p.name for p in out.iterdir() if p.name.startswith("checkpoint-")) == [
        "checkpoint-2",
        "checkpoint-4",
        "checkpoint-6",
    ]


def lcqmc_csv(path, rows, offset=0) -> str:
    """LCQMC pairs as the reference README's custom csv: sentence1, sentence2, label."""
    frame = pd.read_csv(shared("lcqmc", "dev.tsv"), sep="\t").iloc[offset : offset + rows]
    frame.rename(columns={"text_a": "sentence1", "text_b": "sentence2"}).to_csv(path, index=False)
    return str(path)


@pytest.mark.slow
def test_reference_readme_custom_file_command_runs_unchanged(tiny_model, tmp_path):
    """The README's run on your own csv files, with a tiny model and small files of the same shape."""
    train, dev = lcqmc_csv(tmp_path / "train.csv", 200), lcqmc_csv(tmp_path / "dev.csv", 64, offset=1000)
    out = tmp_path / "out"
    argv = [
        "--model_name_or_path", tiny_model,
        "--train_file", train,
        "--validation_file", dev,
        "--shuffle_train_dataset",
        "--metric_name", "accuracy",
        "--text_column_name", "sentence1,sentence2",
        "--text_column_delimiter", "\n",
        "--label_column_name", "label",
        "--do_train",
        "--do_eval",
        "--max_seq_length", "128",
        "--per_device_train_batch_size", "32",
        "--learning_rate", "2e-5",
        "--num_train_epochs", "1",
        "--output_dir", str(out),
    ]  # fmt: skip
    results = run_classification.main(argv)
    assert results["eval_samples"] == 64 and 0 <= results["eval_accuracy"] <= 1
    assert not (out / "predictions.csv").exists()  # only the phases given run: no --do_predict


@pytest.mark.slow
def test_reference_readme_dataset_command_runs_unchanged(tiny_model, tmp_path):
    """The README's Hub-dataset run (--dataset_name with --remove_splits / --remove_columns), on a local dataset
    folder of the same shape."""
    folder = dataset_folder(tmp_path / "ds")
    out = tmp_path / "out"
    argv = [
        "--model_name_or_path", tiny_model,
        "--dataset_name", folder,
        "--train_split_name", "training",
        "--shuffle_train_dataset",
        "--remove_splits", "unused",
        "--remove_columns", "title",
        "--metric_name", "accuracy",
        "--text_column_name", "text",
        "--label_column_name", "label",
        "--do_train",
        "--do_eval",
        "--max_seq_length", "512",
        "--per_device_train_batch_size", "32",
        "--learning_rate", "2e-5",
        "--num_train_epochs", "1",
        "--output_dir", str(out),
    ]  # fmt: skip
    results = run_classification.main(argv)
    assert results["eval_samples"] == 6


@pytest.mark.slow
def test_a_json_file_of_reference_key_names_is_the_only_argument(tiny_model, tmp_path):
    train, dev = lcqmc_csv(tmp_path / "train.csv", 64), lcqmc_csv(tmp_path / "dev.csv", 32, offset=1000)
    test = tmp_path / "test.csv"
    pd.read_csv(dev).assign(label=-1, prediction="theirs").to_csv(test, index=False)  # GLUE-style test file
    recipe = {
        "model_name_or_path": tiny_model,
        "train_file": train,
        "validation_file": dev,
        "test_file": str(test),
        "text_column_names": "sentence1,sentence2",
        "text_column_delimiter": " ",
        "label_column_name": "label",
        "shuffle_train_dataset": True,
        "metric_name": "accuracy",
        "max_seq_length": 64,
        "do_train": True,
        "do_eval": True,
        "do_predict": True,
        "max_steps": 2,
        "output_dir": str(tmp_path / "out"),
    }
    path = tmp_path / "hf_args.json"
    path.write_text(json.dumps(recipe))
    done = subprocess.run(
        [sys.executable, "run_classification.py", str(path)], cwd=REPO, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-2000:]
    results = json.loads((tmp_path / "out" / "all_results.json").read_text())
    assert results["test_unlabelled"] == 32 and "test_accuracy" not in results  # predicted, not scored
    frame = pd.read_csv(tmp_path / "out" / "predictions.csv", dtype=str, keep_default_na=False)
    # the file's own `prediction` column is kept; ours gets a free name
    assert list(frame.columns[:6]) == ["sentence1", "sentence2", "label", "prediction", "prediction_1", "score"]
    assert (frame["prediction"] == "theirs").all() and set(frame["prediction_1"]) <= {"0", "1"}
    assert "the model's column is written as 'prediction_1'" in done.stdout  # logged


def test_a_test_files_own_prediction_columns_are_kept():
    from bertcls.data.labels import LabelSpace
    from bertcls.evaluation.decision import Decision
    from bertcls.evaluation.outputs import predictions_frame

    rows = pd.DataFrame({"text": ["好", "差"], "prediction": ["x", "y"], "score": [9, 8]})
    probs = np.array([[0.2, 0.8], [0.9, 0.1]])
    frame = predictions_frame(rows, probs, LabelSpace(("neg", "pos")), Decision())
    assert list(frame.columns) == ["text", "prediction", "score", "prediction_1", "score_1", "prob_neg", "prob_pos"]
    assert frame["prediction"].tolist() == ["x", "y"] and frame["prediction_1"].tolist() == ["pos", "neg"]


def test_the_best_regression_checkpoint_has_the_lowest_mse():
    from bertcls.evaluation.decision import Decision
    from bertcls.evaluation.metrics import ComputeMetrics
    from bertcls.training.trainer import check_metric_for_best_model

    training = parse("--load_best_model_at_end")[2]
    check_metric_for_best_model(training, ComputeMetrics(1, decision=Decision(regression=True)))
    assert training.metric_for_best_model == "mse" and training.greater_is_better is False
    training = parse("--load_best_model_at_end", "--metric_for_best_model", "pearson")[2]
    check_metric_for_best_model(training, ComputeMetrics(1, decision=Decision(regression=True)))
    assert training.metric_for_best_model == "pearson" and training.greater_is_better is True


def test_bf16_with_no_gpu_runs_on_a_bf16_cpu(caplog):
    import torch

    if torch.cuda.is_available() or not torch.ops.mkldnn._is_mkldnn_bf16_supported():
        pytest.skip("needs a CPU with avx512_bf16 or AMX and no GPU")
    training = parse("--bf16")[2]
    assert training.bf16 and training.use_cpu


def test_an_optimizer_whose_package_is_missing_is_one_line_before_any_data():
    import importlib.util

    if importlib.util.find_spec("bitsandbytes") is not None:
        pytest.skip("bitsandbytes is installed")
    with pytest.raises(UserError, match="--optim adamw_bnb_8bit: You need to install `bitsandbytes`"):
        parse("--optim", "adamw_bnb_8bit")


@pytest.mark.parametrize(
    "flags,message",
    [
        (["--fsdp", "full_shard"], "Using fsdp only works in distributed training"),
        (["--torch_compile", "--torch_compile_backend", "nope"], "'NOPE' is not a valid DynamoBackend"),
    ],
)
def test_the_trainers_own_refusals_are_one_line(tiny_model, write, tmp_path, capsys, flags, message):
    train = write("train.tsv", "text\tlabel\n好\t1\n差\t0\n")
    argv = cli(model_name_or_path=tiny_model, train_file=train, output_dir=tmp_path / "o", max_steps=1)
    with pytest.raises(SystemExit) as exit_info:
        run_classification.main([*argv, "--validation_split_percentage", "0", *flags])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and "the Trainer refuses these arguments" in err and message in err
    assert "Traceback" not in err
