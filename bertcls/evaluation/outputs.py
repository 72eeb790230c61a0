"""Everything a run writes besides the model: results, predictions, reports, plots, model card.

Every file is written atomically (files.py). Results and predictions come first, then the reports and the model
card, then all_results.json (its presence marks the run finished), and the figures last: a figure that fails is
logged and skipped (plots.py).
"""

import glob
import json
import logging
import os
import shutil
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from sklearn.metrics import f1_score

from bertcls.errors import UserError
from bertcls.evaluation import analysis, plots
from bertcls.evaluation.decision import Decision
from bertcls.evaluation.metrics import confusion, regression_metrics, report_text
from bertcls.files import atomic_path, write_json, write_text

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
    "regression_validation.png",
    "regression_test.png",
    "regression_oof.png",
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
    # Imported here: transformers.trainer_utils imports torch, which predict on an export folder never needs.
    from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

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


def predictions_frame(
    input_rows: pd.DataFrame, probs: np.ndarray, labels, decision: Decision, source=None
) -> pd.DataFrame:
    """The input columns, then `prediction`, `score` and one `prob_<label>` per class; with `source` (the rows'
    file, every data row of it in order), `source_file` and `source_line` last.

    Single-label: `prediction` is the label `decision` chooses (the most probable, unless a two-class threshold
    says otherwise) and `score` its probability. Multi-label: `prediction` holds every label at or above its
    threshold, joined by the label delimiter (empty when none is), and there is no `score` column: each label's own
    probability is in its `prob_<label>` column."""
    names = list(labels.names)
    frame = input_rows.reset_index(drop=True).copy()
    for column in frame.columns:  # list cells (multi-label json input) as JSON, not numpy's array repr
        if frame[column].map(lambda v: isinstance(v, (list, np.ndarray))).any():
            frame[column] = frame[column].map(
                lambda v: json.dumps(list(v), ensure_ascii=False) if v is not None else v
            )
    chosen = decision(probs)
    ours = {}
    if getattr(labels, "regression", False):
        ours["prediction"] = chosen  # the predicted value
    elif labels.multi_label:
        ours["prediction"] = [labels.join(row) for row in chosen]
    else:
        ours["prediction"] = [names[i] for i in chosen]
        ours["score"] = probs[np.arange(len(probs)), chosen]
    if not getattr(labels, "regression", False):
        ours.update({f"prob_{name}": probs[:, i] for i, name in enumerate(names)})
    for name, values in ours.items():
        frame[free_name(name, frame.columns)] = values
    if source is not None:
        frame = frame.join(analysis.source_columns(source, np.arange(len(frame))))
    return frame


def free_name(name: str, taken) -> str:
    """`name`, or when the input file already has a column of that name (which is kept as it is), `name_1`,
    `name_2` ... (logged)."""
    taken = set(taken)
    if name not in taken:
        return name
    n = 1
    while f"{name}_{n}" in taken:
        n += 1
    logger.warning(
        "the input already has a column %r (kept): the model's column is written as %r", name, f"{name}_{n}"
    )
    return f"{name}_{n}"


def write_predictions(path: str, frame: pd.DataFrame) -> None:
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=False, float_format="%.6f")


def write_test_predictions(output_dir: str, task, probs: np.ndarray, decision: Decision) -> None:
    """output_dir/predictions.csv: the raw test rows, in input order, with their predictions and their place in
    the file (source_file, source_line; test rows are never dropped, so row i is the file's data row i)."""
    frame = predictions_frame(task.raw_test.to_pandas(), probs, task.labels, decision, task.sources["test"])
    write_predictions(os.path.join(output_dir, "predictions.csv"), frame)


@dataclass
class SplitReport:
    """One labelled split's gold labels and predictions: its per-class report, confusion matrix and F1."""

    split: str
    prefix: str | None  # the split's key prefix in the results (eval, test, oof)
    references: np.ndarray  # class ids, multi-hot rows, or gold values (regression)
    predictions: np.ndarray
    labels: object  # LabelSpace
    rows: np.ndarray | None = None  # each reference's row in its split, when only some rows are labelled

    @property
    def regression(self) -> bool:
        return getattr(self.labels, "regression", False)

    @property
    def text(self) -> str:
        if self.regression:
            scores = regression_metrics(self.references, self.predictions)
            body = "\n".join(f"{k:>10} {v:.4f}" for k, v in scores.items() if k != "samples")
            return f"== {self.split} ({len(self.references)} rows, regression)\n{body}\n"
        kind = ", multi-label" if self.labels.multi_label else ""
        body = report_text(self.references, self.predictions, list(self.labels.names))
        return f"== {self.split} ({len(self.references)} rows{kind})\n{body}"

    @property
    def matrix(self) -> np.ndarray | None:
        """Rows true labels, columns predictions; None for multi-label splits, which report per label instead,
        and for regression."""
        if self.labels.multi_label or self.regression:
            return None
        return confusion(self.references, self.predictions, len(self.labels))

    def per_class_f1(self) -> list[float]:
        if self.regression:
            return []
        ids = list(range(len(self.labels)))
        return [
            float(v) for v in f1_score(self.references, self.predictions, labels=ids, average=None, zero_division=0)
        ]


@dataclass
class Findings:
    """What a run found, for classification_report.txt and analysis.md: the labelled splits' reports, their
    misclassified rows (errors_<split>.csv, written as each split is scored), and extra analysis.md sections."""

    reports: list[SplitReport] = field(default_factory=list)
    errors: dict[str, dict] = field(default_factory=dict)  # split -> analysis.write_errors' summary
    notes: dict[str, str] = field(default_factory=dict)

    def add(self, report: SplitReport, task, out: str, probs: np.ndarray, rows_of: str | None = None) -> None:
        """A scored split: its report, and errors_<split>.csv (`rows_of`: the split whose file holds its rows)."""
        self.reports.append(report)
        self.errors[report.split] = analysis.write_errors(out, task, report, probs, rows_of or report.split)


def split_report(split: str, references, probs: np.ndarray, labels, decision: Decision, prefix=None) -> SplitReport:
    """The report of one labelled split, its predictions made by `decision`. Unlabelled rows of a test split
    (label -1, or an empty value) are left out; `rows` then says which rows the report covers."""
    references = np.asarray(references)
    if labels.multi_label:
        references = references.astype(int)
    rows = labelled_rows(references, labels)
    predictions = decision(probs)
    if rows is not None:
        references, predictions = references[rows], predictions[rows]
    return SplitReport(split, prefix, references, predictions, labels, rows)


def labelled_rows(references: np.ndarray, labels) -> np.ndarray | None:
    """The rows with a gold label (None when all have one): regression NaN and class id -1 mark unlabelled rows."""
    if labels.multi_label:
        return None
    references = np.asarray(references, dtype=np.float64)
    unlabelled = np.isnan(references) if getattr(labels, "regression", False) else references < 0
    return np.flatnonzero(~unlabelled) if unlabelled.any() else None


def is_hub_id(name: str) -> bool:
    return not os.path.exists(name) and not os.path.isabs(name) and not name.startswith(".") and name.count("/") <= 1


def model_card(model_name: str, task, results: dict, recipe: dict, custom_head: bool) -> str:
    """A README.md for the output folder: what the model is, its scores, how to load it, and the recipe."""
    names = list(task.labels.names)
    kind = ("multi-label " if task.labels.multi_label else "") + ("sentence-pair" if task.is_pair else "text")
    labels_line = f"Labels ({len(names)}): {', '.join(f'`{n}`' for n in names)}"
    if task.labels.regression:
        kind = ("sentence-pair " if task.is_pair else "text ") + "regression"
        labels_line = f"Predicts one number, the value of `{names[0]}` (num_labels 1, MSE regression)."
    # base_model is a Hub id in the card's metadata; a local folder is named by its last part only.
    base = f"base_model: {model_name}\n" if is_hub_id(model_name) else ""
    source = f"`{model_name}`" if is_hub_id(model_name) else f"a local checkpoint (`{os.path.basename(model_name)}`)"
    positive = results.get("positive_label")
    rows = "\n".join(
        f"| {k} | {v:.4f} |" if isinstance(v, float) else f"| {k} | {v} |" for k, v in sorted(results.items())
    )
    example = '{"text": "今天天气很好", "text_pair": "适合出去玩"}' if task.is_pair else '"这家酒店的服务很好"'
    if custom_head:
        # pipeline() would build the stock head and leave this folder's custom head out (random predictions).
        pair = ', pairs=["适合出去玩"]' if task.is_pair else ""
        first = '"今天天气很好"' if task.is_pair else '"这家酒店的服务很好"'
        use = f"""This folder has a custom head (`bertcls_head` in config.json), which `pipeline()` and
`AutoModelForSequenceClassification` cannot build: load it with bertcls.

```python
from bertcls.model.classifier import TrainedClassifier
classifier = TrainedClassifier.load("path/to/this/folder")
probs = classifier.predict_texts([{first}]{pair})
print({{name: round(float(p), 4) for name, p in zip(classifier.labels.names, probs[0])}})
```"""
    else:
        # A multi-label model's pipeline applies a sigmoid per label; top_k=None shows every label, not only the best.
        call_end = ", top_k=None)" if task.labels.multi_label else ")"
        use = f"""```python
from transformers import pipeline
classifier = pipeline("text-classification", model="path/to/this/folder")
print(classifier({example}{call_end})
```"""
    return f"""---
library_name: transformers
pipeline_tag: text-classification
{base}---

# {kind} {"model" if task.labels.regression else "classifier"} fine-tuned from {source}

{labels_line}
{f"{chr(10)}Two classes: `precision`, `recall` and `f1` are those of the positive label `{positive}`.{chr(10)}" if positive else ""}
## Results

| metric | value |
|---|---|
{rows}

## Use

{use}

Batch inference on a file, with inputs built exactly as in training:
`python -m bertcls predict --model_name_or_path path/to/this/folder --input_file F --output_file G`.

## Recipe

Made with bertcls `run_classification.py`; `recipe.json` in this folder re-runs it:

```json
{json.dumps(recipe, indent=2, ensure_ascii=False, sort_keys=False)}
```
"""


def finish_run(
    out: str,
    recipe: dict,
    model_name: str,
    task,
    results: dict,
    findings: Findings,
    log_history,
    model_saved: bool = True,
    custom_head: bool = False,
    card_extra: str = "",
) -> None:
    """The files every finished run ends with: recipe, reports, analysis.md, the model card (when the run saved a
    model; `card_extra` is a section appended to it), all_results.json (its presence marks the run finished), then the
    figures, each of which may fail alone. Main process only."""
    write_json(os.path.join(out, "recipe.json"), recipe)
    reports = findings.reports
    if reports:
        write_text(os.path.join(out, "classification_report.txt"), "\n".join(r.text for r in reports))
    if reports or findings.notes or getattr(task, "health", None) is not None:
        analysis.write_analysis(out, task, results, reports, findings.errors, findings.notes)
    if model_saved:
        card = model_card(model_name, task, results, recipe, custom_head)
        write_text(os.path.join(out, "README.md"), f"{card}\n{card_extra}" if card_extra else card)
    write_json(os.path.join(out, FINISHED_MARKER), results)
    names = list(task.labels.names)
    for report in reports:
        if report.regression:
            path = os.path.join(out, f"regression_{report.split}.png")
            plots.draw(
                f"{report.split} regression plot",
                plots.plot_regression,
                path,
                report.references,
                report.predictions,
                report.split,
            )
        elif report.matrix is not None:
            path = os.path.join(out, f"confusion_matrix_{report.split}.png")
            title = f"{report.split}: rows = true label, columns = prediction"
            plots.draw(f"{report.split} confusion matrix", plots.plot_confusion, path, report.matrix, names, title)
    curve_metric = "f1_macro" if task.labels.multi_label else "mse" if task.labels.regression else "accuracy"
    path = os.path.join(out, "learning_curve.png")
    plots.draw("learning curve", plots.plot_learning_curve, path, log_history, curve_metric)


def print_summary(results: dict, out: str) -> None:
    """The headline metrics and where the model and predictions are, on stdout."""

    def wanted(key: str) -> bool:  # test_accuracy, eval_f1_macro, kfold_eval_accuracy_mean ...
        name = key.removeprefix("kfold_").removesuffix("_mean").removesuffix("_std").split("_", 1)[-1]
        return name in (
            "accuracy",
            "subset_accuracy",
            "f1_macro",
            "f1_micro",
            "loss",
            "mse",
            "pearson",
            "spearman",
        ) or (name == "samples" and not key.startswith("kfold_"))

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
