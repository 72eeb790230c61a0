"""The label space: which label values exist, in which order, and how they map to ids.

Label values may come as ints (json), strings of digits (csv/tsv read as text), or free strings. Each value is
turned into one canonical string, so `1`, `"1"` and `1.0` are the same label wherever they come from; distinct
strings stay distinct (`"007"` and `"7"` are two labels).

Multi-label rows hold a list of labels: a JSON list (json/jsonl/parquet, or a `["a", "b"]` cell in csv/tsv; also
the `['a', 'b']` a pandas DataFrame writes), or a string cut by --label_delimiter (`a|b`). `[]` is a row with no
labels; an empty field is a missing label.
"""

import ast
import json
import logging
import math
import re
from dataclasses import dataclass

from bertcls.errors import UserError

logger = logging.getLogger(__name__)

_INT = re.compile(r"[+-]?\d+")
# More classes than this, and more than this share of the train rows: the "labels" are most likely texts.
MANY_CLASSES, MANY_CLASSES_SHARE = 50, 0.5
# What people call the positive class of a binary task, compared in lower case (ids 0/1 first: "1" is positive).
POSITIVE_NAMES = (
    "1", "true", "yes", "y", "pos", "positive", "正面", "积极", "好评", "正向", "正例", "正", "是", "相似", "相同",
)  # fmt: skip


def canonical_label(value) -> str | None:
    """The label's name as a string, or None when the value is missing (None, NaN, empty, whitespace)."""
    if value is None:
        return None
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        if math.isnan(value):
            return None
        return str(int(value)) if value.is_integer() else repr(value)
    if isinstance(value, int):
        return str(value)
    text = str(value).strip()
    return text or None


def default_order(names) -> list[str]:
    """Numeric order when every label is an integer (100 < 99 is wrong), else sorted strings."""
    names = set(names)
    if names and all(_INT.fullmatch(n) for n in names):
        return sorted(names, key=lambda n: (int(n), n))  # "007" and "7" are two labels, in a fixed order
    return sorted(names)


def label_list(value, delimiter: str | None = None) -> list[str] | None:
    """A multi-label row's labels as canonical strings; None when the value is missing.

    Lists are taken as they are; a string holding a JSON list is parsed; any other string is cut at `delimiter`
    (empty parts are skipped). Raises ValueError for a plain string when no delimiter is set, so that a forgotten
    --label_delimiter never turns `a,b` into one label.
    """
    if isinstance(value, (list, tuple)):
        return [n for n in (canonical_label(v) for v in value) if n is not None]
    name = canonical_label(value)
    if name is None:
        return None
    if name.startswith("[") and name.endswith("]"):
        parsed = _parse_list(name)
        if isinstance(parsed, list):
            return label_list(parsed)
    if delimiter is None:
        raise ValueError(name)
    return [n for n in (canonical_label(part) for part in name.split(delimiter)) if n is not None]


def _parse_list(text: str):
    """A JSON list, or the Python list a pandas DataFrame writes to csv (`['体育', '财经']`): literals only, no code."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        pass
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        return None


def as_number(value) -> float | None:
    """A regression label as a float; None when missing (None, NaN, empty). Raises ValueError for a non-number."""
    if value is None or isinstance(value, bool):
        if isinstance(value, bool):
            raise ValueError(str(value))
        return None
    if isinstance(value, (int, float)):
        return None if isinstance(value, float) and math.isnan(value) else float(value)
    text = str(value).strip()
    if not text:
        return None
    number = float(text)  # ValueError for a text
    return None if math.isnan(number) else number


def regression_reason(values) -> str | None:
    """Why a train label column is a regression target, as the reference script decides (a float column), or None.

    Files read as text carry no dtype, so the values decide: every present value a number and at least one not an
    integer (0.5, 3.7). Integer-valued columns (1, 2, 5; 1.0, 2.0) and text columns stay classes."""
    numbers, fractional, example = 0, 0, None
    for value in values:
        try:
            number = as_number(value)
        except ValueError:
            return None
        if number is None:
            continue
        numbers += 1
        if not number.is_integer():
            fractional += 1
            example = example if example is not None else value
    if not fractional:
        return None
    return f"{fractional:,} of its {numbers:,} values are not integers (e.g. {example!r})"


@dataclass(frozen=True)
class LabelSpace:
    names: tuple[str, ...]
    multi_label: bool = False
    # Joins a multi-label row's predicted labels in predictions.csv: --label_delimiter, or "|" for JSON lists.
    delimiter: str = "|"
    # One number per row (num_labels 1, problem_type "regression"); `names` is then the label column's name alone.
    regression: bool = False

    @classmethod
    def for_regression(cls, column: str = "label") -> "LabelSpace":
        return cls((column,), regression=True)

    @classmethod
    def from_train(
        cls,
        train_values,
        label_names=None,
        source="train data",
        multi_label=False,
        delimiter=None,
        column="label",
        allow_many_classes=False,
    ) -> "LabelSpace":
        """Build the label space from the training labels, or check them against an explicit `label_names`.

        For multi-label data `train_values` are lists (see `label_list`) and the space is the union of their labels.
        A single-label column with about as many classes as rows is text read as labels: an error unless
        `allow_many_classes`.
        """
        if multi_label:
            seen = {n for v in train_values for n in (v or ())}
        else:
            seen = {n for n in (canonical_label(v) for v in train_values) if n is not None}
            rows = len(train_values)
            if not allow_many_classes and len(seen) > MANY_CLASSES and len(seen) > MANY_CLASSES_SHARE * rows:
                examples = ", ".join(repr(n[:20]) for n in sorted(seen)[:3])
                raise UserError(
                    f"{source}: column {column!r} holds {len(seen):,} different labels in {rows:,} rows (e.g. "
                    f"{examples}): that looks like text read as labels",
                    fix="check --label_column and --text_column (header-less .txt files are read as "
                    "label<TAB>text; for text<TAB>label pass --column_names text label), or pass "
                    "--allow_many_classes if each class really has this few rows",
                )
        if label_names:
            names = [canonical_label(n) for n in label_names]
            duplicates = sorted({n for n in names if names.count(n) > 1})
            if duplicates:
                raise UserError(f"--class_names lists {duplicates} more than once", fix="list each label once")
            extra = sorted(seen - set(names))
            if extra:
                raise UserError(
                    f"{source} has labels missing from --class_names: {extra[:10]}",
                    fix="add them to --class_names (or drop --class_names to take the labels from the data)",
                )
        else:
            names = default_order(seen)
        if len(names) < 2:
            raise UserError(
                f"{source} holds only one class ({names or 'none'}); a classifier needs at least two",
                fix="check --label_column, or add rows of the other classes",
            )
        return cls(tuple(names), multi_label, delimiter or "|")

    @property
    def label2id(self) -> dict[str, int]:
        return {name: i for i, name in enumerate(self.names)}

    @property
    def id2label(self) -> dict[int, str]:
        return dict(enumerate(self.names))

    def __len__(self) -> int:
        return len(self.names)

    def join(self, flags) -> str:
        """A multi-label row (one 0/1 or bool per label) as its label names joined by the delimiter."""
        return self.delimiter.join(name for name, on in zip(self.names, flags) if on)

    def positive(self, wanted: str | None = None) -> str | None:
        """The label whose precision/recall/F1 a binary task reports: `wanted` (--positive_label), else the one a
        person means by positive (1, true, yes, pos, positive, 正面, 积极, 好评, 正向, 正例, ...), else id 1. None for
        tasks that are not single-label binary."""
        if wanted is not None:
            name = canonical_label(wanted)
            if self.regression:
                raise UserError(f"--positive_label {wanted}: a regression model has no classes", fix="drop it")
            if len(self.names) != 2 or self.multi_label:
                raise UserError(
                    f"--positive_label {wanted}: only single-label tasks with two classes have a positive label "
                    f"(this one has {len(self.names)}{', multi-label' if self.multi_label else ''})",
                    fix="drop --positive_label",
                )
            if name not in self.names:
                raise UserError(
                    f"--positive_label {wanted} is not a label of this task; its labels are {list(self.names)}",
                    fix="pass one of them",
                )
            return name
        if len(self.names) != 2 or self.multi_label:
            return None
        chosen = next((n for n in self.names if n.lower() in POSITIVE_NAMES), self.names[1])
        logger.info(
            "binary precision/recall/F1 are those of the positive label %r (pass --positive_label to choose another)",
            chosen,
        )
        return chosen


def multi_hot(names, label2id: dict[str, int]) -> list[float]:
    """1.0 at each known label's id, 0.0 elsewhere (unknown labels are reported by the caller)."""
    vector = [0.0] * len(label2id)
    for name in names:
        if name in label2id:
            vector[label2id[name]] = 1.0
    return vector
