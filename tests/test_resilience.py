"""Interruption and resume, determinism, atomic outputs, and safe defaults."""

import json
import os
import signal
import subprocess
import sys
import time
from contextlib import contextmanager

import pandas as pd
import pytest
import torch

import run_classification
from bertcls.config.arguments import ModelArguments
from bertcls.evaluation.outputs import atomic_path, last_complete_checkpoint, write_json, write_predictions
from bertcls.training.trainer import ClassificationTrainer

from .conftest import REPO, chnsenticorp, shared

RUNTIME_KEYS = ("runtime", "per_second", "flos")


def training_args(model, out, **flags):
    return chnsenticorp(
        model,
        out,
        train=320,
        validation=100,
        test=100,
        max_seq_length=48,
        per_device_train_batch_size=16,
        learning_rate=2e-3,
        eval_strategy="no",
        logging_steps=10,
        seed=3,
        **flags,
    )


def scores(results: dict) -> dict:
    return {k: v for k, v in results.items() if not any(s in k for s in RUNTIME_KEYS)}


def start(argv, env=None):
    return subprocess.Popen(
        [sys.executable, str(REPO / "run_classification.py"), *argv],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        # The same thread count as this process: its runs are compared with this one's, and float sums
        # differ with the number of threads (400 steps amplify that into a different eval loss).
        env={**os.environ, "OMP_NUM_THREADS": str(torch.get_num_threads()), **(env or {})},
    )


@contextmanager
def count_training_steps(monkeypatch):
    """The optimizer steps this process really trains (one training_step each, no gradient accumulation)."""
    steps = []
    original = ClassificationTrainer.training_step

    def counted(self, *args, **kwargs):
        steps.append(self.state.global_step)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(ClassificationTrainer, "training_step", counted)
    yield steps
    monkeypatch.setattr(ClassificationTrainer, "training_step", original)


def wait_for(path, process, timeout=240):
    deadline = time.time() + timeout
    while not os.path.exists(path):
        assert process.poll() is None, f"run ended before {path} appeared: {process.stderr.read()[-3000:]}"
        assert time.time() < deadline, f"{path} did not appear"
        time.sleep(0.05)


@pytest.mark.slow
def test_sigkill_then_resume_auto_matches_an_uninterrupted_run(tiny_model, tmp_path, monkeypatch):
    steps = {"max_steps": 400, "save_steps": 50, "save_strategy": "steps"}
    reference = run_classification.main(training_args(tiny_model, tmp_path / "whole", **steps))

    out = tmp_path / "killed"
    process = start(training_args(tiny_model, out, **steps))
    wait_for(out / "checkpoint-50" / "trainer_state.json", process)
    process.kill()
    process.wait()
    assert not (out / "all_results.json").exists() and not (out / "predictions.csv").exists()
    assert last_complete_checkpoint(str(out)) is not None

    with pytest.raises(SystemExit):  # the same command again refuses to mix into the unfinished run...
        run_classification.main(training_args(tiny_model, out, **steps))
    done = int(last_complete_checkpoint(str(out)).rsplit("-", 1)[1])
    with count_training_steps(monkeypatch) as trained:
        resumed = run_classification.main(training_args(tiny_model, out, **steps, resume_from_checkpoint="auto"))
    assert len(trained) == 400 - done  # it went on from the checkpoint; a silent restart would train 400
    assert scores(resumed).keys() == scores(reference).keys()
    # train_loss is the Trainer's mean over the steps run in this session, so it differs after a resume.
    evaluated = {k: v for k, v in scores(reference).items() if k.startswith(("eval_", "test_"))}
    assert len(evaluated) >= 20
    for key, value in evaluated.items():
        assert resumed[key] == pytest.approx(value, rel=1e-4, abs=1e-6), key
    a, b = pd.read_csv(tmp_path / "whole" / "predictions.csv"), pd.read_csv(out / "predictions.csv")
    assert (a["prediction"] == b["prediction"]).all()
    assert (a["prob_1"] - b["prob_1"]).abs().max() < 1e-4

    # Resuming the finished run trains nothing (transformers went one step past max_steps) and keeps its results.
    train_results = (out / "train_results.json").read_text()
    with count_training_steps(monkeypatch) as trained:
        again = run_classification.main(training_args(tiny_model, out, **steps, resume_from_checkpoint="auto"))
    assert not trained and (out / "train_results.json").read_text() == train_results
    assert json.loads((out / "trainer_state.json").read_text())["global_step"] == 400
    assert again["test_accuracy"] == resumed["test_accuracy"]


@pytest.mark.slow
def test_sigint_saves_a_checkpoint_and_exits_cleanly(tiny_model, tmp_path, monkeypatch):
    out = tmp_path / "interrupted"

    def argv(max_steps, **extra):
        return training_args(tiny_model, out, max_steps=max_steps, save_strategy="no", **extra)

    process = start(argv(3000))
    # Wait until training has begun: the Trainer's progress bar counts to 3000 steps.
    deadline = time.time() + 240
    seen = ""
    while "/3000 [" not in seen:
        assert process.poll() is None and time.time() < deadline, seen[-3000:]
        seen += process.stderr.read(1)
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 130, err[-3000:]
    assert "SIGINT: finishing this step and saving a checkpoint" in seen + err
    checkpoint = last_complete_checkpoint(str(out))
    assert checkpoint is not None and "Traceback" not in err
    for name in ("all_results.json", "predictions.csv", "model.safetensors", "train_results.json"):
        assert not (out / name).exists(), name  # nothing pretends the run finished
    step = int(checkpoint.rsplit("-", 1)[1])
    assert 0 < step < 3000
    with count_training_steps(monkeypatch) as trained:
        resumed = run_classification.main(argv(step + 5, resume_from_checkpoint="auto"))
    assert len(trained) == 5
    with open(out / "trainer_state.json") as f:
        assert json.load(f)["global_step"] == step + 5
    assert "test_accuracy" in resumed


@pytest.mark.slow
def test_same_seed_same_results(tiny_model, tmp_path):
    first = run_classification.main(training_args(tiny_model, tmp_path / "a", num_train_epochs=2, save_strategy="no"))
    second = run_classification.main(training_args(tiny_model, tmp_path / "b", num_train_epochs=2, save_strategy="no"))
    assert scores(first) == scores(second)
    assert (tmp_path / "a" / "predictions.csv").read_bytes() == (tmp_path / "b" / "predictions.csv").read_bytes()


def test_a_crash_while_writing_leaves_no_partial_file(tmp_path, monkeypatch):
    target = tmp_path / "predictions.csv"
    write_predictions(str(target), pd.DataFrame({"text": ["old"], "prediction": ["pos"]}))
    original = pd.DataFrame.to_csv

    def crash_midway(self, path, **kwargs):
        original(self.head(1), path, **kwargs)  # something is on disk...
        raise OSError("disk full")  # ...then the write fails

    monkeypatch.setattr(pd.DataFrame, "to_csv", crash_midway)
    with pytest.raises(OSError):
        write_predictions(str(target), pd.DataFrame({"text": ["a", "b"], "prediction": ["neg", "pos"]}))
    assert pd.read_csv(target)["text"].tolist() == ["old"]  # the previous file, whole
    assert sorted(os.listdir(tmp_path)) == ["predictions.csv"]  # no temporary left behind

    with pytest.raises(RuntimeError), atomic_path(str(tmp_path / "results.json")) as tmp:
        with open(tmp, "w") as f:
            f.write('{"accu')
        raise RuntimeError("killed")
    assert sorted(os.listdir(tmp_path)) == ["predictions.csv"]
    write_json(str(tmp_path / "results.json"), {"accuracy": 1.0})
    assert json.loads((tmp_path / "results.json").read_text()) == {"accuracy": 1.0}


def test_incomplete_checkpoints_are_skipped(tmp_path):
    for step, complete in ((10, True), (20, True), (30, False)):
        folder = tmp_path / f"checkpoint-{step}"
        folder.mkdir()
        if complete:
            (folder / "trainer_state.json").write_text("{}")
    assert last_complete_checkpoint(str(tmp_path)) == str(tmp_path / "checkpoint-20")
    assert last_complete_checkpoint(str(tmp_path / "missing")) is None


def test_safe_defaults():
    args = ModelArguments(model_name_or_path="m")
    assert args.trust_remote_code is False


NETWORK_GUARD = """
import atexit, socket, sys
attempts = []
def record(kind):
    def refuse(*args, **kwargs):
        attempts.append((kind, repr(args[1:] if kind == "connect" else args)[:120]))
        raise OSError("network access attempted")
    return refuse
socket.socket.connect = record("connect")
socket.socket.connect_ex = record("connect")
socket.create_connection = record("create_connection")
socket.getaddrinfo = record("getaddrinfo")
atexit.register(lambda: print(f"NETWORK ATTEMPTS: {len(attempts)} {attempts[:3]}", file=sys.stderr))
sys.path.insert(0, sys.argv[1])
import importlib
importlib.import_module(sys.argv[2]).main(sys.argv[3:])
"""


def run_guarded(entry_point: str, argv: list[str]):
    """Run an entry point with every connection attempt (DNS lookups included) recorded and refused, and
    HF_HUB_OFFLINE / HF_DATASETS_OFFLINE / TRANSFORMERS_OFFLINE unset: nothing may even try."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE")
    }
    return subprocess.run(
        [sys.executable, "-c", NETWORK_GUARD, str(REPO), entry_point, *argv],
        capture_output=True,
        text=True,
        env={**env, "OMP_NUM_THREADS": "1"},
        timeout=300,
    )


@pytest.mark.slow
def test_local_files_open_no_network_connection(tiny_model, tmp_path):
    argv = training_args(tiny_model, tmp_path / "net", max_steps=2, save_strategy="no")
    done = run_guarded("run_classification", argv)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "NETWORK ATTEMPTS: 0 []" in done.stderr, done.stderr[-2000:]
    assert (tmp_path / "net" / "all_results.json").exists()
    target = tmp_path / "p.csv"
    done = run_guarded(
        "bertcls.shipping.predict",
        ["--model_name_or_path", str(tmp_path / "net"), "--input_file", shared("chnsenticorp", "dev.tsv")]
        + ["--output_file", str(target)],
    )
    assert done.returncode == 0 and target.exists(), done.stderr[-3000:]
    assert "NETWORK ATTEMPTS: 0 []" in done.stderr, done.stderr[-2000:]
