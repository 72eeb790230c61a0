"""What to read after a run: where the model is wrong, on which classes, and whether the data itself is.

Every run with labelled validation/test rows writes
- errors_<split>.csv: the misclassified rows with their own columns, then gold, predicted and the model's
  confidence, most confident mistakes first;
- analysis.md: the headline scores, per-class counts of every split beside per-class F1 (a class missing from a
  split is pointed out), the most confused pairs, the most confident mistakes, the tuned threshold and the label
  issues when there are any. It is the page to read first.
`--find_label_issues` (with --kfold) ranks the train rows by how likely their label is wrong, with cleanlab on the
out-of-fold probabilities: label_issues.csv.
"""

import logging
import os

import numpy as np
import pandas as pd

from bertcls.files import atomic_path, write_text

logger = logging.getLogger(__name__)

CONFUSED_PAIRS = 10
ERRORS_SHOWN = 5
TEXT_SHOWN = 60  # characters of a text in analysis.md


def raw_rows(task, split: str, rows: np.ndarray) -> pd.DataFrame:
    """The user's own columns of `rows` (indices into the standardized split), read back from their file."""
    standardized = task.splits[split]
    source_rows = np.asarray(standardized.select(rows)["source_row"][:], dtype=np.int64) if len(rows) else []
    return task.raw[split].select(source_rows).to_pandas()


def source_columns(source, source_rows) -> pd.DataFrame:
    """Where rows are in their input file: `source_file`, and `source_line`, the line of the file as an editor
    numbers it (1 = the first line; a header line counts, so with a header the first data row is line 2), or for
    files whose rows are not lines (parquet, a JSON array, a --dataset_name split) `source_row`, the data row
    (1 = the first). A validation split held out from train names the train file."""
    source_rows = np.asarray(source_rows, dtype=np.int64)
    frame = pd.DataFrame({"source_file": [source.name] * len(source_rows)})
    if source.first_line:
        frame["source_line"] = source_rows + source.first_line
    else:
        frame["source_row"] = source_rows + 1
    return frame


def _location(row) -> str:
    """`line 12` / `row 12` of a frame row with source columns, for analysis.md."""
    return f"line {row['source_line']}" if "source_line" in row else f"row {row['source_row']}"


def wrong_rows(references: np.ndarray, predicted: np.ndarray, multi_label: bool) -> np.ndarray:
    if multi_label:
        return np.flatnonzero((np.asarray(references).astype(int) != predicted).any(axis=1))
    return np.flatnonzero(np.asarray(references) != predicted)


def error_confidence(probs: np.ndarray, references: np.ndarray, predicted: np.ndarray, multi_label: bool):
    """How sure the model was of its mistake: the probability of the predicted class; multi-label, the highest
    probability of a wrongly added label or the highest 1 - probability of a missed one."""
    if not multi_label:
        return probs[np.arange(len(probs)), predicted]
    references = np.asarray(references).astype(int)
    extra = np.where((predicted == 1) & (references == 0), probs, 0.0).max(axis=1)
    missed = np.where((predicted == 0) & (references == 1), 1 - probs, 0.0).max(axis=1)
    return np.maximum(extra, missed)


def errors_frame(task, report, probs: np.ndarray, rows_of: str) -> pd.DataFrame:
    """The misclassified rows of a scored split (an outputs.SplitReport), most confident mistakes first; their own
    columns and their place (source_file, source_line) come from the file of split `rows_of`. The index holds
    each row's position in the split."""
    labels = task.labels
    references, predicted = report.references, report.predictions
    at = report.rows if report.rows is not None else np.arange(len(references))  # rows in the split
    if report.regression:  # every row has an error: the largest first
        wrong = np.argsort(-np.abs(predicted - references), kind="stable")
        frame = raw_rows(task, rows_of, at[wrong])
        frame["gold"] = references[wrong]
        frame["predicted"] = predicted[wrong]
        frame["error"] = predicted[wrong] - references[wrong]
        frame["confidence"] = np.abs(frame["error"])  # for analysis.md's table: the size of the error
        return with_source(frame, task, rows_of, at[wrong])
    if report.rows is not None:
        probs = probs[report.rows]
    wrong = wrong_rows(references, predicted, labels.multi_label)
    frame = raw_rows(task, rows_of, at[wrong])
    if labels.multi_label:
        frame["gold"] = [labels.join(references[i].astype(int)) for i in wrong]
        frame["predicted"] = [labels.join(predicted[i]) for i in wrong]
    else:
        frame["gold"] = [labels.names[references[i]] for i in wrong]
        frame["predicted"] = [labels.names[predicted[i]] for i in wrong]
        frame["gold_probability"] = probs[wrong, references[wrong]]
    frame["confidence"] = error_confidence(probs[wrong], references[wrong], predicted[wrong], labels.multi_label)
    return with_source(frame, task, rows_of, at[wrong]).sort_values("confidence", ascending=False, kind="stable")


def with_source(frame: pd.DataFrame, task, rows_of: str, positions: np.ndarray) -> pd.DataFrame:
    """`frame` (one row per split position in `positions`) with each row's file and line; indexed by position."""
    frame = frame.reset_index(drop=True)
    sources = task.splits[rows_of].select(positions)["source_row"][:]
    frame = frame.join(source_columns(task.sources[rows_of], sources))
    frame.index = positions
    return frame


def write_errors(out: str, task, report, probs: np.ndarray, rows_of: str) -> dict:
    """errors_<split>.csv; returns what analysis.md shows of it: the count and the most confident mistakes (for
    regression: every row, largest error first)."""
    frame = errors_frame(task, report, probs, rows_of)
    with atomic_path(os.path.join(out, f"errors_{report.split}.csv")) as tmp:
        frame.to_csv(tmp, index=False, float_format="%.6f")
    split = task.splits[rows_of]
    shown = []
    for position, row in frame.head(ERRORS_SHOWN).iterrows():
        example = split[int(position)]
        text = example["text"] + (f" / {example['text_pair']}" if "text_pair" in example else "")
        shown.append([_location(row), _short(text), row["gold"], row["predicted"], float(row["confidence"])])
    return {
        "wrong": len(frame),
        "rows": len(report.references),
        "shown": shown,
        "file": task.sources[rows_of].name,
        "regression": report.regression,
    }


def class_counts(task) -> pd.DataFrame:
    """Rows per label in every split (multi-label: rows carrying the label)."""
    counts = {}
    for split, ds in task.splits.items():
        if "label" not in ds.column_names or task.labels.regression:
            continue
        values = ds["label"][:]
        if task.labels.multi_label:
            counts[split] = np.asarray(values, dtype=np.float32).sum(axis=0).astype(int) if values else 0
        else:
            ids = np.asarray(values, dtype=np.int64)
            counts[split] = np.bincount(ids[ids >= 0], minlength=len(task.labels))  # -1: unlabelled test rows
    return pd.DataFrame(counts, index=list(task.labels.names))


def confused_pairs(matrix: np.ndarray, names: list[str], top: int = CONFUSED_PAIRS) -> list[tuple]:
    """(gold, predicted as, rows, share of the gold class's rows) of the largest off-diagonal cells."""
    off = matrix.astype(float).copy()
    np.fill_diagonal(off, 0)
    order = np.argsort(-off, axis=None, kind="stable")[:top]
    pairs = []
    for flat in order:
        gold, predicted = divmod(int(flat), len(names))
        if off[gold, predicted] <= 0:
            break
        share = matrix[gold, predicted] / max(matrix[gold].sum(), 1)
        pairs.append((names[gold], names[predicted], int(matrix[gold, predicted]), float(share)))
    return pairs


def _short(text) -> str:
    text = str(text).replace("\n", " ").replace("|", "/")
    return text if len(text) <= TEXT_SHOWN else text[:TEXT_SHOWN] + "…"


def _table(header: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        lines.append("| " + " | ".join(f"{v:.4f}" if isinstance(v, float) else str(v) for v in row) + " |")
    return "\n".join(lines)


HEADLINE = ("accuracy", "f1_macro", "f1_micro", "top3_accuracy", "top5_accuracy", "subset_accuracy", "f1_samples")


ONE_CLASS_SHARE = 0.95


def one_class_notes(reports, names: list[str]) -> list[str]:
    """A line for each scored split on which the model predicts one class for more than 95% of the rows."""
    notes = []
    for report in reports:
        if report.labels.multi_label or not len(report.predictions):
            continue
        counts = np.bincount(np.asarray(report.predictions, dtype=np.int64), minlength=len(names))
        top = int(counts.argmax())
        share = counts[top] / counts.sum()
        if share > ONE_CLASS_SHARE:
            gold = float(np.mean(np.asarray(report.references) == top))
            notes.append(
                f"- **On {report.split} the model predicts `{names[top]}` for {share:.1%} of the rows** (the gold "
                f"share of `{names[top]}` is {gold:.1%}): it has learned little beyond the most frequent class. "
                "Train longer or with a higher learning rate, check the labels, or weigh the classes "
                "(--class_weights auto)."
            )
    return notes


def analysis_markdown(task, results: dict, reports, errors: dict, extras: dict) -> str:
    """analysis.md: the page to read first after a run."""
    labels = task.labels
    if labels.regression:
        return regression_markdown(results, reports, errors, extras)
    names = list(labels.names)
    parts = ["# What this run got wrong, and where to look", ""]
    scored = [(r.split, {k: results.get(f"{r.prefix}_{k}") for k in HEADLINE}) for r in reports if r.prefix]
    shown = [k for k in HEADLINE if any(s.get(k) is not None for _, s in scored)]
    if scored:
        parts += [
            "## Scores",
            "",
            _table(["split", *shown], [[split, *(s.get(k, "") for k in shown)] for split, s in scored]),
            "",
        ]
    counts = class_counts(task)
    f1 = {r.split: r.per_class_f1() for r in reports}
    header = ["label", *[f"{s} rows" for s in counts.columns], *[f"{s} F1" for s in f1]]
    rows = [[name, *counts.loc[name].tolist(), *(f1[s][i] for s in f1)] for i, name in enumerate(names)]
    parts += ["## Classes", "", _table(header, rows), ""]
    for split in counts.columns:
        missing = [name for name in names if counts.loc[name, split] == 0]
        if missing and split != "train":
            parts.append(
                f"- **{len(missing)} label(s) have no {split} rows** ({', '.join(missing[:10])}): their {split} F1 "
                "is not measured, and they are left out of its macro averages."
            )
    if "train" in counts.columns and len(counts) and counts["train"].min() < counts["train"].max() / 2:
        rare, common = counts["train"].idxmin(), counts["train"].idxmax()
        # --tune_threshold refuses tasks of three or more classes: advise only what this task can use.
        options = (
            "--class_weights and --tune_threshold" if labels.multi_label or len(names) == 2 else "--class_weights"
        )
        parts.append(
            f"- Imbalanced train: `{rare}` has {counts['train'].min()} rows, `{common}` {counts['train'].max()} "
            f"(see {options})."
        )
    parts += one_class_notes(reports, names)
    parts.append("")
    if getattr(task, "health", None) is not None:  # rows per class are in the table above
        parts += ["## Data health", "", task.health.markdown(classes=False), ""]
    for report in reports:
        if report.matrix is None:
            continue
        pairs = confused_pairs(report.matrix, names)
        if pairs:
            rows = [[gold, predicted, n, f"{share:.1%}"] for gold, predicted, n, share in pairs]
            parts += [
                f"## Most confused on {report.split}",
                "",
                _table(["gold", "predicted as", "rows", "of gold"], rows),
                "",
            ]
    for split, found in errors.items():
        if not found["wrong"]:
            continue
        parts += [
            f"## Most confident mistakes on {split} ({found['wrong']} of {found['rows']} rows wrong, all in "
            f"errors_{split}.csv)",
            "",
            _table(
                [f"where in {os.path.basename(found['file'])}", "text", "gold", "predicted", "confidence"],
                found["shown"],
            ),  # fmt: skip
            "",
        ]
    for title, text in extras.items():
        parts += [f"## {title}", "", text, ""]
    return "\n".join(parts)


REGRESSION_HEADLINE = ("mse", "rmse", "mae", "pearson", "spearman", "r2")


def regression_markdown(results: dict, reports, errors: dict, extras: dict) -> str:
    """analysis.md of a regression run: the scores, the gold and predicted value ranges, the largest errors."""
    parts = ["# What this run got wrong, and where to look", "", "## Scores", ""]
    rows = [[r.split, *(results.get(f"{r.prefix}_{k}", "") for k in REGRESSION_HEADLINE)] for r in reports if r.prefix]
    parts += [_table(["split", *REGRESSION_HEADLINE], rows), ""]
    ranges = []
    for r in reports:
        gold, predicted = np.asarray(r.references, float), np.asarray(r.predictions, float)
        ranges.append(
            [r.split, gold.min(), gold.max(), gold.mean(), predicted.min(), predicted.max(), predicted.mean()]
        )
    if ranges:
        parts += [
            "## Value ranges",
            "",
            _table(
                ["split", "gold min", "gold max", "gold mean", "predicted min", "predicted max", "predicted mean"],
                ranges,
            ),
            "",
        ]
    for split, found in errors.items():
        parts += [
            f"## Largest errors on {split} (all {found['rows']} rows in errors_{split}.csv, largest first)",
            "",
            _table(["row", "text", "gold", "predicted", "abs error"], found["shown"]),
            "",
        ]
    for title, text in extras.items():
        parts += [f"## {title}", "", text, ""]
    return "\n".join(parts)


def write_analysis(out: str, task, results: dict, reports, errors: dict, extras: dict) -> None:
    write_text(os.path.join(out, "analysis.md"), analysis_markdown(task, results, reports, errors, extras))


# -- label issues ----------------------------------------------------------------------------------------------------


def find_label_issues(task, oof: np.ndarray, folds: np.ndarray, decision) -> tuple[pd.DataFrame, str]:
    """Every train row ranked by cleanlab's label quality on the out-of-fold probabilities (most likely wrong
    first), with cleanlab's verdict (`label_issue`), the suggested label, and the fold; and a markdown summary."""
    labels = task.labels
    train = task.splits["train"]
    given = train["label"][:]
    if labels.multi_label:
        from cleanlab.multilabel_classification.filter import find_label_issues as find
        from cleanlab.multilabel_classification.rank import get_label_quality_scores as quality

        label_sets = [list(np.flatnonzero(np.asarray(row) > 0.5)) for row in given]
        issues = find(labels=label_sets, pred_probs=oof)
        scores = quality(label_sets, oof)
        suggested = [labels.join(row) for row in decision(oof)]
        given_names = [labels.join(np.asarray(row).astype(int)) for row in given]
    else:
        from cleanlab.filter import find_label_issues as find
        from cleanlab.rank import get_label_quality_scores as quality

        ids = np.asarray(given, dtype=np.int64)
        issues = find(labels=ids, pred_probs=oof)
        scores = quality(ids, oof)
        suggested = [labels.names[i] for i in decision(oof)]  # the run's decision rule (a tuned threshold too)
        given_names = [labels.names[i] for i in ids]
    frame = raw_rows(task, "train", np.arange(len(train)))
    frame["given_label"] = given_names
    frame["suggested_label"] = suggested
    frame["label_quality"] = scores
    frame["label_issue"] = issues
    frame["fold"] = folds
    frame = frame.join(source_columns(task.sources["train"], train["source_row"][:]))
    frame = frame.sort_values("label_quality", kind="stable").reset_index(drop=True)
    flagged = frame[frame["label_issue"]]
    per_class = flagged.groupby("given_label").size().reindex(list(labels.names), fill_value=0)
    moves = flagged.groupby(["given_label", "suggested_label"]).size().sort_values(ascending=False).head(10)
    summary = "\n".join(
        [
            f"cleanlab flags **{len(flagged)} of {len(frame)} train rows** ({len(flagged) / max(len(frame), 1):.1%}) "
            "as likely mislabelled, from out-of-fold probabilities; label_issues.csv ranks every train row, most "
            "likely wrong first.",
            "",
            _table(["given label", "flagged rows"], [[k, int(v)] for k, v in per_class.items()]),
            "",
            _table(["given", "suggested", "rows"], [[g, s, int(n)] for (g, s), n in moves.items()]),
        ]
    )
    logger.info("label issues: cleanlab flags %d of %d train rows (label_issues.csv)", len(flagged), len(frame))
    return frame, summary


def write_label_issues(out: str, frame: pd.DataFrame) -> None:
    with atomic_path(os.path.join(out, "label_issues.csv")) as tmp:
        frame.to_csv(tmp, index=False, float_format="%.6f")
