"""The label space: which label values exist, in which order, and how they map to ids.

Label values may come as ints (json), strings of digits (csv/tsv read as text), or free strings. Each value is
turned into one canonical string, so `1`, `"1"` and `1.0` are the same label wherever they come from.

Multi-label rows hold a list of labels: a JSON list (json/jsonl/parquet, or a `["a", "b"]` cell in csv/tsv), or a
string cut by --label_delimiter (`a|b`). `[]` is a row with no labels; an empty field is a missing label.
"""

import json
import math
import re
from dataclasses import dataclass

from .errors import UserError

_INT = re.compile(r"[+-]?\d+")


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
    if _INT.fullmatch(text):
        return str(int(text))  # "007" and "7" are one label
    return text or None


def default_order(names) -> list[str]:
    """Numeric order when every label is an integer (100 < 99 is wrong), else sorted strings."""
    names = set(names)
    if names and all(_INT.fullmatch(n) for n in names):
        return sorted(names, key=int)
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
    if name.startswith("["):
        try:
            parsed = json.loads(name)
        except json.JSONDecodeError:
            parsed = None
        if isinstance(parsed, list):
            return label_list(parsed)
    if delimiter is None:
        raise ValueError(name)
    return [n for n in (canonical_label(part) for part in name.split(delimiter)) if n is not None]


@dataclass(frozen=True)
class LabelSpace:
    names: tuple[str, ...]
    multi_label: bool = False
    # Joins a multi-label row's predicted labels in predictions.csv: --label_delimiter, or "|" for JSON lists.
    delimiter: str = "|"

    @classmethod
    def from_train(
        cls, train_values, label_names=None, source="train data", multi_label=False, delimiter=None
    ) -> "LabelSpace":
        """Build the label space from the training labels, or check them against an explicit `label_names`.

        For multi-label data `train_values` are lists (see `label_list`) and the space is the union of their labels.
        """
        if multi_label:
            seen = {n for v in train_values for n in (v or ())}
        else:
            seen = {n for n in (canonical_label(v) for v in train_values) if n is not None}
        if label_names:
            names = [canonical_label(n) for n in label_names]
            duplicates = sorted({n for n in names if names.count(n) > 1})
            if duplicates:
                raise UserError(f"--label_names lists {duplicates} more than once", fix="list each label once")
            extra = sorted(seen - set(names))
            if extra:
                raise UserError(
                    f"{source} has labels missing from --label_names: {extra[:10]}",
                    fix="add them to --label_names (or drop --label_names to take the labels from the data)",
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
