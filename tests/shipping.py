"""Fine-tuned folders for the export and serve tests: trained once per test session, shared by both modules.

Three real runs of run_classification.main on a tiny BERT, a few steps each (parity needs trained weights, not a
good model): a single-text ChnSentiCorp model with head_tail truncation, an LCQMC sentence-pair model, and a custom
head (`--head mlp --pooling mean`) that reads long texts in sliding windows. Each run names a small test file, so
its recipe.json gives the export its default check rows.
"""

import shutil
from pathlib import Path

import run_classification
from bertcls.shipping import export

from .conftest import cli, shared

CHECK_ROWS = 120
_RUNS: dict[str, Path] = {}
_EXPORTS: dict[tuple, Path] = {}

COMMON = {
    "max_seq_length": 32,
    "per_device_train_batch_size": 16,
    "learning_rate": 3e-3,
    "max_steps": 12,
    "save_strategy": "no",
    "do_eval": False,
    "validation_split_percentage": 0,
    "max_train_samples": 200,
    "seed": 7,
    "report_to": "none",
}
KINDS = {
    "single": {"truncation": "head_tail", "head_tokens": 10},
    "pair": {"text_pair_column": "text_b"},
    "custom": {"head": "mlp", "pooling": "mean", "sliding_window": True, "stride": 8},
}


def subset(source: str, target: Path, rows: int) -> str:
    """The header and first `rows` lines of a shared TSV file, written to `target`."""
    with open(source, encoding="utf-8") as f:
        lines = [next(f) for _ in range(rows + 1)]
    target.write_text("".join(lines), encoding="utf-8")
    return str(target)


def fine_tuned(kind: str, tiny_model: str, tmp_path_factory) -> Path:
    """The run folder of `kind` (single, pair, custom), trained on first use."""
    if kind not in _RUNS:
        task = "lcqmc" if kind == "pair" else "chnsenticorp"
        folder = tmp_path_factory.mktemp(f"run-{kind}")
        d = shared(task)
        test_file = subset(f"{d}/test.tsv", folder.parent / f"{kind}-test.tsv", CHECK_ROWS)
        out = folder / "run"
        argv = cli(
            model_name_or_path=tiny_model,
            train_file=f"{d}/train.tsv" if task == "chnsenticorp" else f"{d}/dev.tsv",
            test_file=test_file,
            text_column="text_a",
            output_dir=out,
            **COMMON,
            **KINDS[kind],
        )
        run_classification.main(argv)
        _RUNS[kind] = out
    return _RUNS[kind]


def exported(run: Path, tmp_path_factory, *flags: str) -> Path:
    """The export folder of `run` (with extra export flags), made from a copy of the run that is deleted after:
    every test that uses it shows the export needs nothing from the training folder."""
    key = (str(run), flags)
    if key not in _EXPORTS:
        work = tmp_path_factory.mktemp("export")
        copy = work / "run-copy"
        shutil.copytree(run, copy)
        out = work / "onnx"
        export.main(["--model_name_or_path", str(copy), "--output_dir", str(out), *flags])
        shutil.rmtree(copy)
        _EXPORTS[key] = out
    return _EXPORTS[key]
