"""Launching: the shell entry points, and a real two-process run (DDP over gloo on CPU) against one process.

The two-process run goes through the whole user path: scripts/run_pair_task.sh -> scripts/run_recipe.sh ->
`accelerate launch` with recipes/accelerate/multi_gpu.yaml -> run_classification.py with the LCQMC recipe.
"""

import json
import os
import socket
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from safetensors.torch import load_file

import run_classification

from .conftest import REPO, first_rows, make_tiny, shared

PAIR_SCRIPT = REPO / "scripts" / "run_pair_task.sh"
RECIPE_SCRIPT = REPO / "scripts" / "run_recipe.sh"
LCQMC_RECIPE = REPO / "recipes" / "lcqmc" / "chinese-bert-wwm-ext.json"
PAIR_TASKS = ["lcqmc", "bq_corpus", "afqmc"]


def run_script(*args, env=None, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", *map(str, args)], capture_output=True, text=True, env=env, cwd=cwd, timeout=300, check=False
    )


@pytest.fixture
def fake_accelerate(tmp_path):
    """An `accelerate` first on PATH that records its arguments instead of launching anything."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    record = tmp_path / "argv.txt"
    fake = bin_dir / "accelerate"
    fake.write_text(f'#!/usr/bin/env bash\nprintf "%s\\n" "$@" > "{record}"\n')
    fake.chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}
    env.pop("ACCELERATE_CONFIG", None)
    env.pop("ACCELERATE_ARGS", None)
    return env, record


@pytest.mark.parametrize("task", PAIR_TASKS)
def test_pair_script_launches_the_task_recipe_and_forwards_every_flag(task, fake_accelerate, tmp_path):
    env, record = fake_accelerate
    flags = ["--learning_rate", "3e-5", "--output_dir", "out dir/with space", "--label_names", "0", "1"]
    result = run_script(PAIR_SCRIPT, task, *flags, env=env, cwd=tmp_path)  # any working directory
    assert result.returncode == 0, result.stderr
    argv = record.read_text().splitlines()
    recipe = REPO / "recipes" / task / "chinese-bert-wwm-ext.json"
    assert recipe.is_file()
    assert argv == ["launch", str(REPO / "run_classification.py"), str(recipe), *flags]


def test_accelerate_config_and_launcher_flags_come_from_the_environment(fake_accelerate):
    env, record = fake_accelerate
    config = REPO / "recipes" / "accelerate" / "multi_gpu.yaml"
    env.update(ACCELERATE_CONFIG=str(config), ACCELERATE_ARGS="--num_processes 4 --machine_rank 1")
    result = run_script(PAIR_SCRIPT, "lcqmc", "--seed", "3", env=env)
    assert result.returncode == 0, result.stderr
    argv = record.read_text().splitlines()
    assert argv[:7] == ["launch", "--config_file", str(config), "--num_processes", "4", "--machine_rank", "1"]
    assert argv[-2:] == ["--seed", "3"]


@pytest.mark.parametrize(
    "args,message",
    [
        (["xnli"], "unknown pair task 'xnli'; known: lcqmc bq_corpus afqmc"),
        ([], "usage: bash scripts/run_pair_task.sh TASK"),
    ],
)
def test_pair_script_refuses_unknown_or_missing_tasks(args, message, fake_accelerate):
    env, record = fake_accelerate
    result = run_script(PAIR_SCRIPT, *args, env=env)
    assert result.returncode == 2 and message in result.stderr
    assert not record.exists()  # nothing was launched


def test_recipe_script_refuses_a_missing_recipe(fake_accelerate):
    env, record = fake_accelerate
    result = run_script(RECIPE_SCRIPT, "recipes/nope.json", env=env)
    assert result.returncode == 2 and "recipe not found: recipes/nope.json" in result.stderr
    assert not record.exists()


# ---------------------------------------------------------------------------------------------------------------
# Two processes against one


def free_port() -> int:
    # The machine is shared: a fixed rendezvous port (29500) could collide with another run.
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def files_under(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()}


def read_json(path: Path) -> dict:
    return json.loads(path.read_text())


TRAIN_ROWS, EVAL_ROWS, TEST_ROWS = 192, 101, 103  # 101 and 103 do not split evenly over 2 processes x batch 16


@pytest.fixture(scope="module")
def one_and_two(tmp_path_factory):
    """The LCQMC recipe trained on 2 processes (batch 8 each) and on 1 (batch 16), plus the 2-process model
    evaluated again on 1 process. Dropout is off and batches are sequential, so both runs see the same 16 rows per
    step and should compute the same numbers up to float rounding."""
    tmp = tmp_path_factory.mktemp("launch")
    model = Path(make_tiny(tmp / "tiny"))
    config = read_json(model / "config.json")
    config.update(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    (model / "config.json").write_text(json.dumps(config))
    lcqmc = shared("lcqmc")
    common = [
        "--model_name_or_path", str(model),
        # no LCQMC train file here: train on dev, evaluate on test (their first rows, as files)
        "--train_file", first_rows(f"{lcqmc}/dev.tsv", TRAIN_ROWS, tmp),
        "--validation_file", first_rows(f"{lcqmc}/test.tsv", EVAL_ROWS, tmp),
        "--test_file", first_rows(f"{lcqmc}/test.tsv", TEST_ROWS, tmp),
        "--max_seq_length", "64",
        "--learning_rate", "1e-3",
        "--num_train_epochs", "1",
        "--train_sampling_strategy", "sequential",
        "--per_device_eval_batch_size", "16",
        "--logging_steps", "4",
        "--seed", "3",
    ]  # fmt: skip
    two, one = tmp / "two", tmp / "one"
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",  # 2 ranks on 2 cores
        "MKL_NUM_THREADS": "1",
        "ACCELERATE_CONFIG": str(REPO / "recipes" / "accelerate" / "multi_gpu.yaml"),
        "ACCELERATE_ARGS": f"--num_processes 2 --main_process_port {free_port()}",
    }
    launched = run_script(
        PAIR_SCRIPT, "lcqmc", *common, "--per_device_train_batch_size", "8", "--output_dir", two, env=env, cwd=tmp
    )
    assert launched.returncode == 0, launched.stdout[-4000:] + launched.stderr[-4000:]
    run_classification.main(
        [str(LCQMC_RECIPE), *common, "--per_device_train_batch_size", "16", "--output_dir", str(one)]
    )
    nodes = tmp / "nodes"
    node_log = launch_two_machines(
        [*common, "--per_device_train_batch_size", "8", "--output_dir", str(nodes)], env, cwd=tmp
    )
    again = tmp / "again"
    run_classification.main(
        [
            str(LCQMC_RECIPE),
            *common,
            "--model_name_or_path",
            str(two),
            "--do_train",
            "false",
            "--output_dir",
            str(again),
        ]
    )
    log = launched.stdout + launched.stderr
    return {"two": two, "one": one, "again": again, "nodes": nodes, "tiny": model, "log": log, "node_log": node_log}


def launch_two_machines(flags: list[str], env: dict, cwd) -> str:
    """recipes/accelerate/multi_node.yaml as the README says to use it on two machines, here two launchers on
    this one over loopback: machine_rank 0 and 1, main_process_ip 127.0.0.1, one CPU process each (gloo)."""
    config = REPO / "recipes" / "accelerate" / "multi_node.yaml"
    port = free_port()
    launchers = [
        subprocess.Popen(
            ["accelerate", "launch", "--config_file", str(config), "--num_processes", "2"]
            + ["--machine_rank", str(rank), "--main_process_ip", "127.0.0.1", "--main_process_port", str(port)]
            + [str(REPO / "run_classification.py"), str(LCQMC_RECIPE), *flags],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
            cwd=cwd,
        )
        for rank in (0, 1)
    ]
    logs = [launcher.communicate(timeout=300)[0] for launcher in launchers]
    for rank, (launcher, log) in enumerate(zip(launchers, logs)):
        assert launcher.returncode == 0, f"machine_rank {rank}:\n{log[-4000:]}"
    return "\n".join(logs)


@pytest.mark.slow
@pytest.mark.multiprocess
def test_both_ranks_train_one_model_over_gloo(one_and_two):
    log = one_and_two["log"]
    assert "2 processes launched and no GPU found: training on CPU with gloo" in log
    # 192 rows in global batches of 2 x 8 is 12 steps; two ranks training alone would take 24 steps each.
    assert read_json(one_and_two["two"] / "trainer_state.json")["global_step"] == TRAIN_ROWS // 16
    assert read_json(one_and_two["one"] / "trainer_state.json")["global_step"] == TRAIN_ROWS // 16


@pytest.mark.slow
@pytest.mark.multiprocess
def test_only_rank_0_writes(one_and_two):
    two, one = files_under(one_and_two["two"]), files_under(one_and_two["one"])
    checkpoint = f"checkpoint-{TRAIN_ROWS // 16}"
    # The same files as one process writes; the only per-rank files are the checkpoint's random states, which
    # each rank needs to resume exactly (the Trainer's design).
    assert two - one == {f"{checkpoint}/rng_state_0.pth", f"{checkpoint}/rng_state_1.pth"}
    assert one - two == {f"{checkpoint}/rng_state.pth"}
    assert {"predictions.csv", "all_results.json", "model.safetensors", "trainer_state.json"} <= two
    assert not [name for name in two if name.endswith(".tmp")]
    assert one_and_two["log"].count("\nresults:\n") == 1  # the summary is printed by rank 0 only


@pytest.mark.slow
@pytest.mark.multiprocess
def test_every_eval_and_test_row_is_counted_once_in_input_order(one_and_two):
    results = read_json(one_and_two["two"] / "all_results.json")
    assert results["eval_samples"] == EVAL_ROWS and results["test_samples"] == TEST_ROWS
    frame = pd.read_csv(one_and_two["two"] / "predictions.csv", dtype=str, keep_default_na=False)
    test = pd.read_csv(shared("lcqmc", "test.tsv"), sep="\t", quoting=3, dtype=str, nrows=TEST_ROWS)
    assert frame["text_a"].tolist() == test["text_a"].tolist()
    assert frame["text_b"].tolist() == test["text_b"].tolist()


@pytest.mark.slow
@pytest.mark.multiprocess
def test_two_processes_match_one(one_and_two):
    two = read_json(one_and_two["two"] / "all_results.json")
    one = read_json(one_and_two["one"] / "all_results.json")
    for key in ("train_loss", "eval_loss", "test_loss", "eval_accuracy", "test_accuracy", "test_f1_macro"):
        assert two[key] == pytest.approx(one[key], rel=1e-3, abs=1e-4), key
    probs = [pd.read_csv(one_and_two[k] / "predictions.csv")["prob_1"].to_numpy() for k in ("two", "one")]
    assert np.allclose(*probs, atol=1e-5)
    # The trained weights themselves: equal up to float rounding, while training moved them by far more.
    two, one = (load_file(one_and_two[k] / "model.safetensors") for k in ("two", "one"))
    start = load_file(one_and_two["tiny"] / "model.safetensors")
    assert set(two) == set(one)
    assert max((two[k] - one[k]).abs().max().item() for k in two) < 1e-5
    assert max((two[f"bert.{k}"] - start[k]).abs().max().item() for k in start) > 1e-3


@pytest.mark.slow
@pytest.mark.multiprocess
def test_the_same_model_reports_the_same_losses_on_one_and_two_processes(one_and_two):
    """transformers 5.24 multiplied every loss by the process count (eval_loss 1.386 for 0.693 on 2 processes)."""
    two = read_json(one_and_two["two"] / "all_results.json")
    again = read_json(one_and_two["again"] / "all_results.json")
    assert two["eval_loss"] == pytest.approx(again["eval_loss"], rel=1e-5)
    assert two["test_loss"] == pytest.approx(again["test_loss"], rel=1e-5)
    assert two["eval_accuracy"] == again["eval_accuracy"]


@pytest.mark.slow
@pytest.mark.multiprocess
def test_two_machines_over_loopback_match_one(one_and_two):
    """The multi-node config the README documents, started on two 'machines' (two launchers on loopback)."""
    assert "2 processes launched and no GPU found: training on CPU with gloo" in one_and_two["node_log"]
    nodes = read_json(one_and_two["nodes"] / "all_results.json")
    one = read_json(one_and_two["one"] / "all_results.json")
    assert read_json(one_and_two["nodes"] / "trainer_state.json")["global_step"] == TRAIN_ROWS // 16
    for key in ("train_loss", "eval_loss", "test_loss", "eval_accuracy", "test_accuracy", "test_f1_macro"):
        assert nodes[key] == pytest.approx(one[key], rel=1e-3, abs=1e-4), key
    probs = [pd.read_csv(one_and_two[k] / "predictions.csv")["prob_1"].to_numpy() for k in ("nodes", "one")]
    assert np.allclose(*probs, atol=1e-5)
