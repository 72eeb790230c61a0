"""Everything a run writes besides the model: results, predictions, reports, plots, model card.

Every file is written to a temporary name and renamed into place, so a crash never leaves a truncated
predictions.csv or results json that a later reader could take for a result.
"""

import glob
import json
import logging
import os
import shutil
import tempfile
import warnings
from contextlib import contextmanager

import numpy as np
import pandas as pd
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

from .errors import UserError
from .metrics import confusion, decide, report_text

logger = logging.getLogger(__name__)

RUN_FILES = (
    "all_results.json",
    "trainer_state.json",
    "train_results.json",
    "eval_results.json",
    "test_results.json",
    "predictions.csv",
    "classification_report.txt",
    "recipe.json",
    "README.md",
    "learning_curve.png",
    "confusion_matrix_validation.png",
    "confusion_matrix_test.png",
    "confusion_matrix_oof.png",
    "kfold_results.json",
    "oof_predictions.csv",
)
MODEL_FILES = (
    "model.safetensors",
    "config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "vocab.txt",
    "special_tokens_map.json",
    "training_args.bin",
)
FINISHED_MARKER = "all_results.json"  # written last, so its presence means the run finished


@contextmanager
def atomic_path(path: str):
    """Yield a temporary path next to `path`; rename it onto `path` only when the block succeeds."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{os.path.basename(path)}.", suffix=".tmp")
    os.close(fd)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def write_text(path: str, text: str) -> None:
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
        f.write(text)


def write_json(path: str, obj) -> None:
    write_text(path, json.dumps(obj, indent=2, ensure_ascii=False, sort_keys=True) + "\n")


def check_output_dir(args, reads_from=()) -> str | None:
    """Refuse to mix a new run into an old one, or to write where a model or tokenizer is read from; return the
    checkpoint to resume from (or None). Removes nothing: `clear_output_dir` does, once everything is checked.

    `--resume_from_checkpoint auto` picks the last checkpoint in output_dir (or starts fresh when there is none).
    """
    out = args.output_dir
    if not out:
        raise UserError("no --output_dir given", fix="pass --output_dir (or set output_dir in the recipe)")
    for source in reads_from:
        if source and os.path.isdir(source) and os.path.realpath(source) == os.path.realpath(out):
            raise UserError(
                f"--output_dir {out} is the folder the model or tokenizer is read from; the run would overwrite it",
                fix="pass another --output_dir",
            )
    last = last_complete_checkpoint(out)
    resume = args.resume_from_checkpoint
    if resume == "auto":
        resume = last
        logger.info("resuming from %s", last) if last else logger.info("no checkpoint in %s yet: starting fresh", out)
    elif resume and not os.path.isdir(resume):
        raise UserError(
            f"checkpoint folder not found: {resume}",
            fix="pass a checkpoint-N folder, or `auto` for the last one in output_dir",
        )
    finished = os.path.exists(os.path.join(out, FINISHED_MARKER))
    if args.overwrite_output_dir:
        if resume:
            raise UserError(
                "--overwrite_output_dir and --resume_from_checkpoint contradict each other", fix="pass one of them"
            )
    elif finished and not resume:
        raise UserError(
            f"{out} already holds a finished run ({FINISHED_MARKER})",
            fix="pass --overwrite_output_dir to replace it, or choose another --output_dir",
        )
    elif last and not resume and args.do_train:
        raise UserError(
            f"{out} holds checkpoints of an unfinished run (last: {os.path.basename(last)})",
            fix="pass --resume_from_checkpoint auto to continue it, or --overwrite_output_dir to start over",
        )
    return resume


def clear_output_dir(args) -> None:
    """Just before the run writes: remove the earlier run's files under --overwrite_output_dir; a resumed run is
    unfinished until it writes its own all_results.json. Main process only."""
    out = args.output_dir
    if args.process_index != 0 or not os.path.isdir(out):
        return
    if args.overwrite_output_dir:
        clear_run(out)
    elif os.path.exists(os.path.join(out, FINISHED_MARKER)):
        os.remove(os.path.join(out, FINISHED_MARKER))


def last_complete_checkpoint(out: str) -> str | None:
    """The newest checkpoint-N holding trainer_state.json, which the Trainer writes last: a run killed while
    saving leaves a newer, incomplete folder that must not be resumed from."""
    steps = []
    for path in glob.glob(os.path.join(out, f"{PREFIX_CHECKPOINT_DIR}-*")):
        suffix = path.rsplit("-", 1)[-1]
        if os.path.isdir(path) and suffix.isdigit():
            steps.append((int(suffix), path))
    for rank, (_, path) in enumerate(sorted(steps, reverse=True)):
        if os.path.isfile(os.path.join(path, "trainer_state.json")):
            if rank:
                logger.warning(
                    "skipping %d incomplete checkpoint(s) (killed while saving?); newest complete: %s", rank, path
                )
            return path
    return None


def clear_run(out: str) -> None:
    """Remove what an earlier run wrote: its files, checkpoints and model, nothing else in the folder."""
    for name in RUN_FILES + MODEL_FILES:
        path = os.path.join(out, name)
        if os.path.isfile(path):
            os.remove(path)
    for folder in glob.glob(os.path.join(out, "checkpoint-*")) + glob.glob(os.path.join(out, "fold_[0-9]*")):
        shutil.rmtree(folder)
    logger.info("cleared the earlier run in %s (--overwrite_output_dir)", out)


def predictions_frame(input_rows: pd.DataFrame, probs: np.ndarray, labels, threshold: float = 0.5) -> pd.DataFrame:
    """The input columns, then `prediction`, `score` and one `prob_<label>` per class.

    Single-label: `prediction` is the most probable label and `score` its probability. Multi-label: `prediction`
    holds every label at or above `threshold`, joined by the label delimiter (empty when none is), and there is
    no `score` column: each label's own probability is in its `prob_<label>` column."""
    names = list(labels.names)
    frame = input_rows.reset_index(drop=True).copy()
    for column in frame.columns:  # list cells (multi-label json input) as JSON, not numpy's array repr
        if frame[column].map(lambda v: isinstance(v, (list, np.ndarray))).any():
            frame[column] = frame[column].map(
                lambda v: json.dumps(list(v), ensure_ascii=False) if v is not None else v
            )
    if labels.multi_label:
        chosen = decide(probs, multi_label=True, threshold=threshold)
        frame["prediction"] = [labels.join(row) for row in chosen]
    else:
        frame["prediction"] = [names[i] for i in probs.argmax(axis=-1)]
        frame["score"] = probs.max(axis=-1)
    for i, name in enumerate(names):
        frame[f"prob_{name}"] = probs[:, i]
    return frame


def write_predictions(path: str, frame: pd.DataFrame) -> None:
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=False, float_format="%.6f")


def write_test_predictions(output_dir: str, task, probs: np.ndarray, threshold: float) -> None:
    """output_dir/predictions.csv: the raw test rows, in input order, with their predictions."""
    frame = predictions_frame(task.raw_test.to_pandas(), probs, task.labels, threshold)
    write_predictions(os.path.join(output_dir, "predictions.csv"), frame)


def plot_confusion(path: str, matrix: np.ndarray, names: list[str], title: str) -> None:
    from sklearn.metrics import ConfusionMatrixDisplay

    plt = _pyplot()
    size = max(4.0, 0.6 * len(names) + 2)
    fig, ax = plt.subplots(figsize=(size, size))
    ConfusionMatrixDisplay(matrix, display_labels=names).plot(ax=ax, colorbar=False, xticks_rotation=45)
    ax.set_title(title)
    _save_figure(fig, path)


def plot_learning_curve(path: str, log_history: list[dict], metric: str) -> bool:
    """Training loss per logged step, and eval loss / `metric` per evaluation. False when nothing was logged."""
    train = [(e["step"], e["loss"]) for e in log_history if "loss" in e]
    evals = [(e["step"], e.get("eval_loss"), e.get(f"eval_{metric}")) for e in log_history if "eval_loss" in e]
    if not train and not evals:
        return False
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4))
    if train:
        ax.plot(*zip(*train), label="train loss")
    if evals:
        ax.plot([s for s, _, _ in evals], [v for _, v, _ in evals], "o-", label="eval loss")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.legend(loc="upper left")
    scored = [(s, m) for s, _, m in evals if m is not None]
    if scored:
        right = ax.twinx()
        right.plot(*zip(*scored), "s--", color="tab:green", label=f"eval {metric}")
        right.set_ylabel(metric)
        right.legend(loc="upper right")
    ax.set_title("learning curve")
    _save_figure(fig, path)
    return True


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save_figure(fig, path: str) -> None:
    plt = _pyplot()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # label names in scripts the default font lacks only draw as boxes
        fig.tight_layout()
        with atomic_path(path) as tmp:
            fig.savefig(tmp, dpi=120, format="png")
    plt.close(fig)


def model_card(model_name: str, task: str, label_names: list[str], results: dict, recipe: dict) -> str:
    """A README.md for the output folder: what the model is, its scores, and the recipe that made it."""
    # A multi-label model's pipeline applies a sigmoid per label; top_k=None shows every label, not only the best.
    call_end = ", top_k=None)" if task.startswith("multi-label") else ")"
    rows = "\n".join(
        f"| {k} | {v:.4f} |" if isinstance(v, float) else f"| {k} | {v} |" for k, v in sorted(results.items())
    )
    return f"""---
library_name: transformers
pipeline_tag: text-classification
base_model: {model_name}
---

# {task} classifier fine-tuned from `{model_name}`

Labels ({len(label_names)}): {", ".join(f"`{n}`" for n in label_names)}

## Results

| metric | value |
|---|---|
{rows}

## Use

```python
from transformers import pipeline
classifier = pipeline("text-classification", model="path/to/this/folder")
classifier("这家酒店的服务很好"{call_end}
```

or batch inference on a file: `python -m bertcls.predict --model_name_or_path path/to/this/folder --input_file F --output_file G`.

## Recipe

Made with bertcls `run_classification.py`; `recipe.json` in this folder re-runs it:

```json
{json.dumps(recipe, indent=2, ensure_ascii=False, sort_keys=False)}
```
"""


def finish_run(
    out: str, recipe: dict, model_name: str, task, results: dict, reports: list[str], log_history, model_saved=True
) -> None:
    """The files every finished run ends with: recipe, reports, learning curve, model card (when the run saved a
    model), and all_results.json written last (its presence marks the run finished). Main process only."""
    write_json(os.path.join(out, "recipe.json"), recipe)
    if reports:
        write_text(os.path.join(out, "classification_report.txt"), "\n".join(reports))
    curve_metric = "f1_macro" if task.labels.multi_label else "accuracy"
    plot_learning_curve(os.path.join(out, "learning_curve.png"), log_history, curve_metric)
    if model_saved:
        task_name = ("multi-label " if task.labels.multi_label else "") + ("sentence-pair" if task.is_pair else "text")
        card = model_card(model_name, task_name, list(task.labels.names), results, recipe)
        write_text(os.path.join(out, "README.md"), card)
    write_json(os.path.join(out, FINISHED_MARKER), results)


def split_report(
    output_dir: str, split: str, references: np.ndarray, probs: np.ndarray, labels, threshold: float = 0.5
) -> str:
    """Per-class report text for one labelled split, and its confusion-matrix PNG (single-label only: a
    multi-label report lists each label's precision/recall/F1 instead)."""
    names = list(labels.names)
    predictions = decide(probs, labels.multi_label, threshold)
    if labels.multi_label:
        references = np.asarray(references).astype(int)
        return f"== {split} ({len(references)} rows, multi-label)\n{report_text(references, predictions, names)}"
    plot_confusion(
        os.path.join(output_dir, f"confusion_matrix_{split}.png"),
        confusion(references, predictions, len(names)),
        names,
        f"{split}: rows = true label, columns = prediction",
    )
    return f"== {split} ({len(references)} rows)\n{report_text(references, predictions, names)}"


def print_summary(results: dict, out: str) -> None:
    """The headline metrics and where the model and predictions are, on stdout."""

    def wanted(key: str) -> bool:  # test_accuracy, eval_f1_macro, kfold_eval_accuracy_mean ...
        name = key.removeprefix("kfold_").removesuffix("_mean").removesuffix("_std").split("_", 1)[-1]
        return name in ("accuracy", "subset_accuracy", "f1_macro", "f1_micro", "loss") or (
            name == "samples" and not key.startswith("kfold_")
        )

    shown = {k: v for k, v in results.items() if wanted(k)}
    print(
        "\n".join(
            ["", "results:"]
            + [f"  {k:<32} {v:.4f}" if isinstance(v, float) else f"  {k:<32} {v}" for k, v in sorted(shown.items())]
        )
    )
    print(f"model, tokenizer and reports: {os.path.abspath(out)}")
    for name, what in (("predictions.csv", "test predictions:"), ("oof_predictions.csv", "out-of-fold predictions:")):
        if os.path.exists(os.path.join(out, name)):
            print(f"{what:<30}{os.path.abspath(os.path.join(out, name))}")
