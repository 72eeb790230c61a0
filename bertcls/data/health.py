"""Data health: what to know about the rows before a model learns from them and is scored on them.

Per split: exact duplicate rows, texts that occur with different labels, near-duplicates, very short and very long
texts, rows per class. Across splits: texts of validation/test that also occur in train (or test in validation),
i.e. leakage, with how many of them carry a different label, and near-duplicates across the split boundary.

A row's text is its `text` (and `text_pair`, for pair tasks), compared exactly as read. Near-duplicates are pairs
of different texts whose sets of character 3-grams have a Jaccard similarity of at least NEAR_JACCARD (0.8):
character n-grams because Chinese has no spaces to cut words at, and a changed or added character changes only
three of a text's 3-grams. Candidates come from MinHash locality-sensitive hashing (datasketch, the well-kept
library for it, also behind the BigCode and text-dedup pipelines), which stays near-linear in the rows where an
all-pairs comparison is quadratic; every candidate pair is then checked with the exact Jaccard similarity, so a
reported pair is a real one (LSH may miss a few pairs near the threshold, it reports none below it).

`python -m bertcls inspect RECIPE` prints the report without training; every run logs it and puts it in analysis.md.
--drop_duplicate_rows and --drop_leaked_rows act on it (train rows only; held-out rows are never removed).
"""

import logging
from collections import defaultdict
from dataclasses import dataclass, field

import numpy as np

logger = logging.getLogger(__name__)

SHINGLE = 3  # characters per n-gram
NEAR_JACCARD = 0.8
NUM_PERM = 128
NEAR_MAX_TEXTS = 100_000  # distinct texts beyond which near-duplicates are not searched (logged)
SHORT_CHARS = 3  # a text shorter than this (after stripping spaces) is "very short"
SEPARATOR = "\x1f"  # between text and text_pair in a row's key
ORDER = ("train", "validation", "test")


def row_keys(ds) -> list[str]:
    """One string per row: its text, and its text_pair after a separator."""
    texts = ds["text"][:]
    if "text_pair" in ds.column_names:
        return [a + SEPARATOR + b for a, b in zip(texts, ds["text_pair"][:])]
    return list(texts)


def label_keys(ds) -> list | None:
    """One hashable label per row (a multi-hot row as a tuple), or None for an unlabelled split."""
    if "label" not in ds.column_names:
        return None
    return [tuple(v) if isinstance(v, list) else v for v in ds["label"][:]]


@dataclass
class SplitHealth:
    rows: int
    duplicate_rows: int  # rows whose text repeats an earlier row of the split
    duplicated_texts: int  # distinct texts that occur more than once
    conflicting_texts: int  # distinct texts that occur with more than one label
    conflicting_rows: int  # the rows of those texts
    near_duplicate_rows: int = 0  # rows with a near-duplicate (a different text) in the same split
    short: int = 0
    long: int = 0
    classes: dict[str, int] | None = None


@dataclass
class Leak:
    split: str  # the held-out split whose rows are counted
    source: str  # the split they also occur in
    rows: int  # rows of `split` whose text occurs in `source`
    texts: int  # distinct such texts
    other_label: int  # of those rows, how many carry a label no `source` row of the same text has
    near_rows: int = 0  # rows of `split` with a near-duplicate (not the same text) in `source`


@dataclass
class HealthReport:
    splits: dict[str, SplitHealth] = field(default_factory=dict)
    leaks: list[Leak] = field(default_factory=list)
    dropped: dict[str, str] = field(default_factory=dict)  # what was removed before training, in words
    near_searched: bool = True
    max_chars: int | None = None

    def summary(self) -> str:
        """One log line per finding."""
        parts = []
        for split, h in self.splits.items():
            parts.append(
                f"{split}: {h.rows} rows, {h.duplicate_rows} duplicate rows, {h.conflicting_texts} texts with "
                f"conflicting labels ({h.conflicting_rows} rows), {h.near_duplicate_rows} rows with a "
                f"near-duplicate, {h.short} very short"
                + (f", {h.long} over {self.max_chars} characters" if self.max_chars else "")
            )
        for leak in self.leaks:
            parts.append(
                f"{leak.split} in {leak.source}: {leak.rows} rows ({leak.texts} texts; {leak.other_label} with a "
                f"different label), {leak.near_rows} more rows near-duplicate"
            )
        return "; ".join(parts)

    def markdown(self, classes: bool = True) -> str:
        """The report as analysis.md's "Data health" section (and `bertcls inspect`'s output)."""
        long_header = [f"over {self.max_chars} chars"] if self.max_chars else []
        header = ["split", "rows", "duplicate rows", "texts with conflicting labels (rows)"]
        header += ["rows with a near-duplicate", f"very short (< {SHORT_CHARS} chars)", *long_header]
        rows = []
        for split, h in self.splits.items():
            near = h.near_duplicate_rows if self.near_searched else "not searched"
            row = [split, h.rows, h.duplicate_rows, f"{h.conflicting_texts} ({h.conflicting_rows})", near, h.short]
            rows.append(row + ([h.long] if self.max_chars else []))
        lines = [_table(header, rows), ""]
        if self.leaks:
            header = ["rows of", "whose text is also in", "rows", "distinct texts", "with a label it never has there"]
            header.append("more rows near-duplicate")
            body = [
                [x.split, x.source, x.rows, x.texts, x.other_label, x.near_rows if self.near_searched else "-"]
                for x in self.leaks
            ]
            lines += [_table(header, body), ""]
        if classes and any(h.classes for h in self.splits.values()):
            names = list(next(h.classes for h in self.splits.values() if h.classes))
            labelled = [s for s, h in self.splits.items() if h.classes]
            body = []
            for name in names:
                cells = []
                for split in labelled:
                    n, total = self.splits[split].classes.get(name, 0), self.splits[split].rows
                    cells.append(f"{n} ({n / max(total, 1):.1%})")
                body.append([name, *cells])
            lines += [_table(["label", *labelled], body), ""]
        notes = []
        duplicates = self.splits.get("train").duplicate_rows if "train" in self.splits else 0
        leaked = sum(x.rows for x in self.leaks if x.source == "train")
        if duplicates:
            notes.append(
                f"- {duplicates} train rows repeat an earlier train row: they weigh their text more, and under "
                "--kfold the copies are kept in one fold (grouped folds), so out-of-fold scores stay honest. "
                "--drop_duplicate_rows keeps one row per text and label."
            )
        if leaked:
            notes.append(
                f"- {leaked} held-out rows have their text in train: their scores measure memory as much as "
                "generalisation. --drop_leaked_rows removes those texts from train (the held-out splits stay as "
                "they are, so scores remain comparable with published ones)."
            )
        if any(h.conflicting_texts for h in self.splits.values()):
            notes.append(
                "- Texts with conflicting labels: at least one of their labels is wrong, or the task is ambiguous "
                "for them; --kfold 5 --find_label_issues ranks them."
            )
        for what in self.dropped.values():
            notes.append(f"- Dropped before training: {what}.")
        if not self.near_searched:
            notes.append(f"- Near-duplicates were not searched: more than {NEAR_MAX_TEXTS:,} distinct texts.")
        notes.append(
            f"- Duplicates and leaks compare texts exactly; near-duplicates are different texts whose character "
            f"{SHINGLE}-grams overlap with a Jaccard similarity of at least {NEAR_JACCARD} (MinHash LSH, checked "
            "exactly)."
        )
        return "\n".join(lines + notes)


def _table(header, rows) -> str:
    out = ["| " + " | ".join(map(str, header)) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(map(str, row)) + " |" for row in rows]
    return "\n".join(out)


def shingles(text: str) -> set[bytes]:
    text = text.strip()
    if len(text) <= SHINGLE:
        return {text.encode("utf-8")}
    return {text[i : i + SHINGLE].encode("utf-8") for i in range(len(text) - SHINGLE + 1)}


def near_pairs(texts: list[str], seed: int = 1) -> dict[int, set[int]]:
    """For each index of `texts` (distinct strings), the indices of its near-duplicates (Jaccard of character
    3-gram sets >= NEAR_JACCARD, checked exactly)."""
    from datasketch import MinHash, MinHashLSH

    sets = [shingles(t) for t in texts]
    hashes = MinHash.bulk([list(s) for s in sets], num_perm=NUM_PERM, seed=seed)
    lsh = MinHashLSH(threshold=NEAR_JACCARD, num_perm=NUM_PERM)
    for i, m in enumerate(hashes):
        lsh.insert(i, m, check_duplication=False)
    found = defaultdict(set)
    for i, m in enumerate(hashes):
        for j in lsh.query(m):
            if j <= i:
                continue
            a, b = sets[i], sets[j]
            if len(a & b) >= NEAR_JACCARD * len(a | b):
                found[i].add(j)
                found[j].add(i)
    return found


def check(splits: dict, label_names=None, max_chars: int | None = None, dropped: dict | None = None) -> HealthReport:
    """The health of standardized splits (text, [text_pair], [label] columns)."""
    order = [s for s in ORDER if s in splits] + [s for s in splits if s not in ORDER]
    keys = {s: row_keys(splits[s]) for s in order}
    labels = {s: label_keys(splits[s]) for s in order}
    report = HealthReport(dropped=dict(dropped or {}), max_chars=max_chars)
    for split in order:
        k, y = keys[split], labels[split]
        counts = defaultdict(int)
        label_sets = defaultdict(set)
        for i, key in enumerate(k):
            counts[key] += 1
            if y is not None:
                label_sets[key].add(y[i])
        conflicting = {key for key, seen in label_sets.items() if len(seen) > 1}
        texts = splits[split]["text"][:]
        lengths = np.array([len(t.strip()) for t in texts])
        if "text_pair" in splits[split].column_names:
            pair_lengths = np.array([len(t.strip()) for t in splits[split]["text_pair"][:]])
            short = int(((lengths < SHORT_CHARS) | (pair_lengths < SHORT_CHARS)).sum())
            lengths = lengths + pair_lengths
        else:
            short = int((lengths < SHORT_CHARS).sum())
        classes = None
        if y is not None and label_names is not None:
            if y and isinstance(y[0], tuple):
                totals = np.asarray(y, dtype=np.float32).sum(axis=0)
                classes = {name: int(totals[i]) for i, name in enumerate(label_names)}
            elif all(float(v).is_integer() for v in y):  # class ids; -1 is an unlabelled row (not counted)
                ids = np.asarray(y, dtype=np.int64)
                totals = np.bincount(ids[ids >= 0], minlength=len(label_names))
                classes = {name: int(totals[i]) for i, name in enumerate(label_names)}
            # regression values have no classes to count
        report.splits[split] = SplitHealth(
            rows=len(k),
            duplicate_rows=len(k) - len(counts),
            duplicated_texts=sum(1 for n in counts.values() if n > 1),
            conflicting_texts=len(conflicting),
            conflicting_rows=sum(counts[key] for key in conflicting),
            short=short,
            long=int((lengths > max_chars).sum()) if max_chars else 0,
            classes=classes,
        )
    pairs = [(a, b) for i, b in enumerate(order) for a in order[:i]]  # (source, held-out split): train -> test ...
    for source, split in pairs:
        source_labels = defaultdict(set)
        for i, key in enumerate(keys[source]):
            source_labels[key].add(labels[source][i] if labels[source] is not None else None)
        shared = [i for i, key in enumerate(keys[split]) if key in source_labels]
        other = 0
        if labels[split] is not None and labels[source] is not None:
            other = sum(1 for i in shared if labels[split][i] not in source_labels[keys[split][i]])
        report.leaks.append(Leak(split, source, len(shared), len({keys[split][i] for i in shared}), other))
    _near_duplicates(report, keys, order)
    return report


def _near_duplicates(report: HealthReport, keys: dict, order: list[str]) -> None:
    distinct = list(dict.fromkeys(key for split in order for key in keys[split]))
    if len(distinct) > NEAR_MAX_TEXTS:
        report.near_searched = False
        logger.info("data health: %d distinct texts, near-duplicates not searched", len(distinct))
        return
    index = {key: i for i, key in enumerate(distinct)}
    near = near_pairs([key.replace(SEPARATOR, " ") for key in distinct])
    present = {split: {index[key] for key in keys[split]} for split in order}
    for split in order:
        ids = [index[key] for key in keys[split]]
        report.splits[split].near_duplicate_rows = sum(1 for i in ids if near.get(i, set()) & present[split])
    for leak in report.leaks:
        source = present[leak.source]
        leak.near_rows = sum(
            1
            for key in keys[leak.split]
            if index[key] not in source and near.get(index[key], set()) & source
        )  # fmt: skip


def drop_duplicates(train):
    """Train without the rows that repeat an earlier row's text and label (rows of a text with conflicting labels
    stay: which label is right is for the user or cleanlab to say); returns the rows and how many went."""
    keys, labels = row_keys(train), label_keys(train)
    seen, kept = set(), []
    for i, key in enumerate(keys):
        marker = (key, labels[i] if labels is not None else None)
        if marker not in seen:
            seen.add(marker)
            kept.append(i)
    removed = len(train) - len(kept)
    return (train.select(kept) if removed else train), removed


def drop_leaks(train, held_out: dict):
    """Train without the rows whose text occurs in a held-out split; returns the rows and how many went, per
    split."""
    held = {split: set(row_keys(ds)) for split, ds in held_out.items()}
    kept, removed = [], defaultdict(int)
    for i, key in enumerate(row_keys(train)):
        hits = [split for split, texts in held.items() if key in texts]
        for split in hits:
            removed[split] += 1
        if not hits:
            kept.append(i)
    total = len(train) - len(kept)
    per_split = {
        split: removed[split]
        for split in sorted(removed, key=lambda s: (s not in ORDER, ORDER.index(s) if s in ORDER else 0))
    }
    return (train.select(kept) if total else train), total, per_split
