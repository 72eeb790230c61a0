"""Load the raw splits and turn them into `text`, `text_pair` and `label` columns, plus a validation split.

Files are read through `datasets.load_dataset`; csv/tsv/txt columns are read as strings so that a text of
digits stays a text and every chunk of a large file has the same schema. Every row that cannot be used is
reported by its line number; under --drop_invalid_rows it is dropped and counted instead.
"""

import codecs
import csv
import dataclasses
import logging
import os
from collections import defaultdict
from dataclasses import dataclass, field

import datasets
import numpy as np
from datasets import ClassLabel, Dataset, DatasetDict, Features, List, Value

from bertcls.data import health
from bertcls.data.labels import LabelSpace, as_number, canonical_label, label_list, multi_hot, regression_reason
from bertcls.errors import UserError

logger = logging.getLogger(__name__)

SOURCE_ROW = "source_row"  # a standardized row's index among its file's data rows
SPLIT_FILE_ARGS = {"train": "train_file", "validation": "validation_file", "test": "test_file"}
DELIMITERS = {".csv": ",", ".tsv": "\t", ".txt": "\t"}
SUPPORTED = ".csv, .tsv, .txt, .json, .jsonl or .parquet"
SNIFF_BYTES = 1 << 16
ROWS_SHOWN = 5
UNLABELLED = "-1"  # the label of a test row with no gold label in GLUE-style files (datasets' ClassLabel: -1)


@dataclass
class Source:
    """Where a split's rows come from, so messages can point at them."""

    name: str
    first_line: int | None = None  # file line number of data row 0; None where rows are not lines

    def rows(self, indices: list[int]) -> str:
        """`train.tsv lines 5, 9` (or `rows` where rows are not lines), the first few of `indices`."""
        offset, unit = (self.first_line, "line") if self.first_line else (1, "row")
        shown = ", ".join(str(i + offset) for i in indices[:ROWS_SHOWN])
        more = f" and {len(indices) - ROWS_SHOWN} more" if len(indices) > ROWS_SHOWN else ""
        return f"{self.name} {unit}{'s' if len(indices) > 1 else ''} {shown}{more}"


@dataclass
class TaskData:
    """The standardized splits and what the model needs to know about them."""

    splits: DatasetDict  # columns: text, [text_pair], [label: ClassLabel, or multi-hot floats for multi-label]
    labels: LabelSpace
    is_pair: bool
    raw_test: Dataset | None = None  # test rows with the user's own columns, for predictions.csv
    dropped: dict[str, int] = field(default_factory=dict)
    sources: dict[str, Source] = field(default_factory=dict)  # where each split's rows come from, for messages
    # Each split's file with the user's own columns; a split's `source_row` column indexes it (a validation split
    # held out from train indexes train's file).
    raw: dict[str, Dataset] = field(default_factory=dict)
    health: "health.HealthReport | None" = None  # duplicates, leakage, conflicting labels (bertcls.data.health)


# ---------------------------------------------------------------------------------------------------------------
# Reading files


def read_file(path: str, data_args, cache_dir: str | None = None) -> tuple[Dataset, Source]:
    """Read one data file into a Dataset with the file's own columns."""
    require_file(path)
    ext = os.path.splitext(path)[1].lower()
    if ext not in (*DELIMITERS, ".json", ".jsonl", ".parquet"):
        raise UserError(f"{path}: unsupported file type {ext or '(none)'!r}", fix=f"use {SUPPORTED}")
    if ext == ".parquet":
        return _load(path, "parquet", {}, cache_dir), Source(path)
    encoding, sample = sniff_encoding(path, data_args.encoding)
    if not sample.strip():
        raise UserError(f"data file is empty: {path}", fix="point to the file that holds the data")
    if ext in (".json", ".jsonl"):
        ds = _load(path, "json", {"encoding": encoding}, cache_dir)
        first_line = 1 if (ext == ".jsonl" or sample.lstrip()[:1] == "{") else None
        return _non_empty(ds, path), Source(path, first_line)
    return read_delimited(path, ext, encoding, sample, data_args, cache_dir)


def require_file(path: str) -> None:
    if not os.path.isfile(path):
        raise UserError(
            f"data file not found: {path}",
            fix="check the path: relative paths on the command line start in the current folder, in a recipe at "
            "the recipe's folder",
        )


def sniff_encoding(path: str, encoding: str) -> tuple[str, str]:
    """Decode the start of the file; a failure names the encoding that would work (GBK files are common)."""
    with open(path, "rb") as f:
        head = f.read(SNIFF_BYTES)
    try:
        sample = codecs.getincrementaldecoder(encoding)().decode(head, final=False)
    except LookupError:
        raise UserError(
            f"unknown --encoding {encoding!r}", fix="use a Python codec name such as utf-8, gbk, gb18030"
        ) from None
    except UnicodeDecodeError as e:
        raise _encoding_error(path, encoding, head, e) from None
    if encoding.replace("_", "-").lower() in ("utf-8", "utf8") and head.startswith(codecs.BOM_UTF8):
        # Excel writes a byte-order mark that would otherwise end up in the first column's name.
        return "utf-8-sig", sample.lstrip("\ufeff")
    return encoding, sample


def _encoding_error(path: str, encoding: str, head: bytes, error: UnicodeDecodeError) -> UserError:
    for candidate in ("gbk", "gb18030", "big5"):
        try:
            codecs.getincrementaldecoder(candidate)().decode(head, final=False)
        except UnicodeDecodeError:
            continue
        return UserError(
            f"{path} is not valid {encoding} (byte {head[error.start]:#x} at offset {error.start}); it decodes as {candidate}",
            fix=f"add --encoding {candidate}",
        )
    return UserError(
        f"{path} is not valid {encoding}: {error.reason} at byte offset {error.start}",
        fix="convert it to UTF-8 or pass --encoding",
    )


def read_delimited(path, ext, encoding, sample, data_args, cache_dir) -> tuple[Dataset, Source]:
    """csv / tsv / txt. tsv and txt are read with quoting off: Chinese review texts contain `"`."""
    delimiter = DELIMITERS[ext]
    first_line = sample.splitlines()[0]
    header = next(
        csv.reader(
            [first_line], delimiter=delimiter, quoting=csv.QUOTE_NONE if delimiter == "\t" else csv.QUOTE_MINIMAL
        )
    )
    names = data_args.column_names
    if names:
        has_header = header == names
        named = [field for field in header if field.strip() in names]
        if not has_header and named:
            raise UserError(
                f"{path}: line 1 ({', '.join(header)[:80]}) looks like a header line (it holds the column name "
                f"{named[0]!r}), but --column_names says the file has none, so it would be read as a data row",
                fix="drop --column_names and name the columns as the header does (e.g. --text_column), or delete "
                "the header line",
            )
    elif ext == ".txt":
        has_header = data_args.text_column in header and data_args.label_column in header
        if not has_header:
            if len(header) != 2:
                raise UserError(
                    f"{path}: a header-less .txt file is read as `label<TAB>text`, but line 1 has {len(header)} fields",
                    fix="name the columns with --column_names (e.g. --column_names text label)",
                )
            names = ["label", "text"]
    else:
        has_header = True
    columns = header if has_header else names
    other = {",": "\t", "\t": ","}[delimiter]
    if len(columns) == 1 and other in first_line:
        found = "commas" if other == "," else "tabs"
        raise UserError(
            f"{path}: found one column {columns[0]!r}: the file looks separated by {found}, not {delimiter!r}",
            fix=f"rename it to {'.csv' if other == ',' else '.tsv'} (the extension chooses the delimiter)",
        )
    if len(set(columns)) != len(columns):
        raise UserError(f"{path}: duplicate column names in {columns}", fix="give every column its own name")
    options = {
        "sep": delimiter,
        "encoding": encoding,
        "features": Features({c: Value("string") for c in columns}),
        # Only truly empty fields are missing: a text like "NA" or "null" stays a text.
        "keep_default_na": False,
        "na_values": [""],
        # pandas drops blank lines by default: rows would vanish silently and line numbers would drift.
        "skip_blank_lines": False,
    }
    if delimiter == "\t":
        options["quoting"] = csv.QUOTE_NONE
    if not has_header:
        options.update(header=None, column_names=names)
    ds = _load(path, "csv", options, cache_dir)
    return _non_empty(ds, path, header_only=has_header), Source(path, first_line=2 if has_header else 1)


# Local files go through the builders' readers (Dataset.from_csv ...), not load_dataset: load_dataset also tells
# the Hub's download counter about every load (datasets.load.increase_load_count), a network call for a local file.
READERS = {
    "csv": Dataset.from_csv,
    "json": Dataset.from_json,
    "parquet": Dataset.from_parquet,
    "text": Dataset.from_text,  # bertcls.pretrain.run's plain .txt: one text per line
}


def _load(path: str, builder: str, options: dict, cache_dir) -> Dataset:
    try:
        return READERS[builder](path, cache_dir=cache_dir, **options)
    except Exception as e:  # datasets wraps the reader's error; unwrap it to say what is wrong with the file
        cause = e
        while cause.__cause__ is not None or cause.__context__ is not None:
            cause = cause.__cause__ or cause.__context__
        if "corresponds to no data" in str(cause):
            header = (
                " has a header line but no data rows"
                if builder == "csv" and not options.get("column_names")
                else " has no data rows"
            )
            raise UserError(f"{path}{header}", fix="point to the file that holds the data") from None
        if isinstance(cause, UnicodeDecodeError):
            raise UserError(
                f"{path} is not valid {options.get('encoding', 'utf-8')} further into the file: {cause}",
                fix="pass the file's real encoding with --encoding (e.g. gbk) or convert it to UTF-8",
            ) from None
        raise UserError(
            f"could not read {path}: {type(cause).__name__}: {cause}", fix="check the file's format"
        ) from None


def _non_empty(ds: Dataset, path: str, header_only: bool = False) -> Dataset:
    if len(ds) == 0:
        what = "has a header line but no data rows" if header_only else "has no data rows"
        raise UserError(f"{path} {what}", fix="point to the file that holds the data")
    return ds


def read_hub_dataset(data_args, cache_dir, need_train: bool = False, token: str | None = None) -> dict[str, Dataset]:
    """A Hub dataset id, or a local folder written by `save_to_disk` or loadable by `load_dataset`."""
    name = data_args.dataset_name
    try:
        if os.path.isfile(os.path.join(name, "dataset_dict.json")):
            loaded = datasets.load_from_disk(name)
        else:
            loaded = datasets.load_dataset(name, data_args.dataset_config_name, cache_dir=cache_dir, token=token)
    except Exception as e:
        raise UserError(
            f"could not load dataset {name!r}: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}",
            fix="check the name; without network access use local files (--train_file ...)",
        ) from None
    return named_splits(dict(loaded.items()), data_args, name, need_train)


def named_splits(loaded: dict, data_args, name: str, need_train: bool = False) -> dict[str, Dataset]:
    """A dataset's splits under our names (train, validation, test), found by --train_split_name /
    --validation_split_name / --test_split_name (validation also as dev or valid), after --remove_splits."""
    removed = [s.strip() for s in (data_args.remove_splits or "").split(",") if s.strip()]
    for split in removed:
        if split not in loaded:
            raise UserError(f"--remove_splits {split}: {name} has no such split; its splits are {sorted(loaded)}")
        del loaded[split]
    wanted = {
        "train": [data_args.train_split_name],
        "validation": [data_args.validation_split_name, "dev", "valid"],
        "test": [data_args.test_split_name],
    }
    found = {}
    for ours, candidates in wanted.items():
        hit = next((c for c in candidates if c in loaded), None)
        if hit is not None:
            found[ours] = loaded[hit]
    if need_train and "train" not in found:
        raise UserError(
            f"{name} has no split {data_args.train_split_name!r} (--train_split_name); its splits are {sorted(loaded)}",
            fix="pass --train_split_name (and --validation_split_name / --test_split_name) with those names",
        )
    return found


# ---------------------------------------------------------------------------------------------------------------
# From the user's columns to text / text_pair / label


def check_columns(ds: Dataset, source: Source, data_args, need_label: bool) -> None:
    """Every named column must exist; the message lists the columns that do."""
    wanted = [("text_column", c) for c in text_columns(data_args)]
    if data_args.text_pair_column:
        wanted.append(("text_pair_column", data_args.text_pair_column))
    if need_label:
        wanted.append(("label_column", data_args.label_column))
    for flag, column in wanted:
        if column not in ds.column_names:
            raise UserError(
                f"{source.name}: no column {column!r} (--{flag}); its columns are {ds.column_names}",
                fix=f"pass --{flag} with one of those names"
                + ("" if source.first_line != 1 else ", or name header-less columns with --column_names"),
            )


def text_columns(data_args) -> list[str]:
    """The text column, or the columns of a comma-separated --text_column (the reference's --text_column_names)."""
    return [c.strip() for c in data_args.text_column.split(",") if c.strip()] or [data_args.text_column]


def resolve_text_column(raw: dict, data_args) -> None:
    """With no text column given, a file that has no `text` column but a `sentence` one (the reference script's
    default name) uses `sentence`, logged."""
    from bertcls.config.recipes import given_fields

    if data_args.text_column != "text" or "text_column" in given_fields(data_args):
        return
    if raw and all("text" not in ds.column_names and "sentence" in ds.column_names for ds in raw.values()):
        logger.info("no `text` column, and none given: reading the texts from `sentence` (the reference's default)")
        data_args.text_column = "sentence"


def standardize(ds: Dataset, source: Source, data_args, labels: LabelSpace | None, split: str) -> tuple[Dataset, int]:
    """Map the user's columns to text/[text_pair]/[label]; report or drop unusable rows.

    Returns the dataset and the number of rows dropped. Test rows are never dropped (predictions.csv holds one
    row per input row), so problems there are always errors.
    """
    text_cols, pair_col, label_col = text_columns(data_args), data_args.text_pair_column, data_args.label_column
    text_col, joiner = ",".join(text_cols), data_args.text_column_delimiter
    with_label = labels is not None and label_col in ds.column_names
    if with_label and split == "test" and all(_missing(v) for v in ds[label_col][:]):
        with_label = False  # an empty label column in a test file means "unlabelled"
    label2id = labels.label2id if labels else {}
    multi_label = labels is not None and labels.multi_label
    regression = labels is not None and labels.regression
    # A test row labelled -1 (GLUE's test files) or not at all is unlabelled: predicted, not scored (counted).
    unlabelled = UNLABELLED if split == "test" else None

    def convert(batch, indices):
        out = {"text": [], "_problem": [], "_row": indices}
        if pair_col:
            out["text_pair"] = []
        if with_label:
            out["label"] = []
        for i in range(len(indices)):
            problem = None
            parts = [_as_text(batch[c][i]) for c in text_cols]
            text = joiner.join(p for p in parts if p is not None) if any(p is not None for p in parts) else None
            if text is None:
                problem = f"empty text in column {text_col!r}"
            out["text"].append(text or "")
            if pair_col:
                pair = _as_text(batch[pair_col][i])
                if pair is None and problem is None:
                    problem = f"empty text in column {pair_col!r}"
                out["text_pair"].append(pair or "")
            if with_label and multi_label:
                names = label_list(batch[label_col][i], data_args.label_delimiter)
                unknown = [n for n in names or () if n not in label2id]
                if names is None:
                    problem = problem or f"missing label in column {label_col!r}"
                elif unknown:
                    problem = f"unknown label {unknown[0]!r}"
                out["label"].append(multi_hot(names or (), label2id))
            elif with_label and regression:
                try:
                    number = as_number(batch[label_col][i])
                except ValueError:
                    number, problem = None, f"label {batch[label_col][i]!r} is not a number"
                if number is None and problem is None and unlabelled is None:
                    problem = f"missing label in column {label_col!r}"
                out["label"].append(float("nan") if number is None else number)
            elif with_label:
                name = canonical_label(batch[label_col][i])
                if unlabelled is not None and (name is None or (name == unlabelled and name not in label2id)):
                    out["label"].append(-1)
                    out["_problem"].append(problem)
                    continue
                if name is None:
                    problem = problem or f"missing label in column {label_col!r}"
                elif name not in label2id:
                    problem = f"unknown label {name!r}"
                out["label"].append(label2id.get(name, 0))
            out["_problem"].append(problem)
        return out

    features = {"text": Value("string"), "_problem": Value("string"), "_row": Value("int64")}
    if pair_col:
        features["text_pair"] = Value("string")
    if with_label:
        if regression:
            features["label"] = Value("float32")
        elif multi_label:
            features["label"] = List(Value("float32"), length=len(labels))
        else:
            features["label"] = ClassLabel(names=list(labels.names))
    converted = ds.map(
        convert,
        batched=True,
        with_indices=True,
        remove_columns=ds.column_names,
        features=Features(features),
        desc=f"Checking {split} rows",
    )
    bad = converted.filter(lambda p: [x is not None for x in p], batched=True, input_columns="_problem")
    dropped = 0
    if len(bad):
        by_problem = defaultdict(list)
        for problem, row in zip(bad["_problem"], bad["_row"]):
            by_problem[problem].append(row)
        unknown = {p: rows for p, rows in by_problem.items() if p.startswith("unknown label")}
        droppable = not unknown and data_args.drop_invalid_rows and split != "test"
        if not droppable:
            raise UserError(_describe_problems(by_problem, source), fix=_problem_fix(unknown, split, data_args))
        converted = converted.filter(lambda p: [x is None for x in p], batched=True, input_columns="_problem")
        dropped = len(bad)
        logger.warning(
            "%s: dropped %d rows (--drop_invalid_rows): %s", split, dropped, _describe_problems(by_problem, source)
        )
    if with_label and unlabelled is not None:
        values = np.asarray(converted["label"][:], dtype=np.float64)
        missing = int(np.isnan(values).sum() if regression else (values == -1).sum())
        if missing:
            logger.info(
                "%s: %d of %d rows are unlabelled (label -1 or empty): predicted, not scored",
                split,
                missing,
                len(values),
            )
    # The file row of every row stays (as SOURCE_ROW) so later messages, e.g. about truncation, name its line.
    converted = converted.rename_column("_row", SOURCE_ROW)
    columns = [c for c in ("text", "text_pair", "label") if c in converted.column_names]
    return converted.select_columns([*columns, SOURCE_ROW]), dropped


def _missing(value) -> bool:
    return canonical_label(value) is None if not isinstance(value, (list, tuple)) else False


def _as_text(value) -> str | None:
    if value is None:
        return None
    text = value if isinstance(value, str) else str(value)
    return text if text.strip() else None


def _describe_problems(by_problem: dict, source: Source) -> str:
    return "; ".join(
        f"{problem} in {len(rows)} row{'s' * (len(rows) > 1)} ({source.rows(rows)})"
        for problem, rows in by_problem.items()
    )


def _problem_fix(unknown: dict, split: str, data_args) -> str:
    if unknown:
        return "fix those rows, or list every label with --class_names if the model should know labels train lacks"
    if split == "test":
        return (
            "fill or remove those test rows (test rows are never dropped: predictions.csv has one row per input row)"
        )
    return "fix those rows, or pass --drop_invalid_rows to drop them (the count is logged)"


# ---------------------------------------------------------------------------------------------------------------
# The whole task


def load_task_data(
    data_args,
    seed: int,
    labels: LabelSpace | None = None,
    cache_dir: str | None = None,
    hold_out: bool = True,
    splits: tuple[str, ...] = tuple(SPLIT_FILE_ARGS),
    token: str | None = None,
) -> TaskData:
    """Read the wanted `splits` that have data, build the label space from train (or use `labels`, a fine-tuned
    model's), standardize, and hold out a validation split when `hold_out` and none is given (k-fold makes its
    own folds instead)."""
    raw, sources = {}, {}
    if data_args.dataset_name:
        need_train = "train" in splits and not data_args.train_file and labels is None
        for split, ds in read_hub_dataset(data_args, cache_dir, need_train, token).items():
            if split in splits:
                raw[split], sources[split] = (
                    _names_from_class_label(ds, data_args.label_column),
                    Source(f"{data_args.dataset_name}[{split}]"),
                )
    for split, arg in SPLIT_FILE_ARGS.items():
        path = getattr(data_args, arg)
        if path and split in splits:
            raw[split], sources[split] = read_file(path, data_args, cache_dir)
    if not raw:
        flags = " / ".join(f"--{SPLIT_FILE_ARGS[s]}" for s in splits)
        raise UserError(f"no data given for {', '.join(splits)}", fix=f"pass {flags} or --dataset_name")
    raw = remove_columns(raw, data_args)
    resolve_text_column(raw, data_args)
    for split, ds in raw.items():
        check_columns(ds, sources[split], data_args, need_label=split != "test")
    regression = labels.regression if labels is not None else is_regression(raw, data_args)
    multi_label = (
        labels.multi_label if labels is not None else (not regression and is_multi_label(raw, data_args, sources))
    )
    if labels is not None:
        if not regression:
            is_multi_label(raw, dataclasses.replace(data_args, multi_label=multi_label), sources)  # checks the cells
    elif regression:
        labels = LabelSpace.for_regression(data_args.label_column)
    elif "train" in raw:
        train_labels = raw["train"][data_args.label_column][:]
        if multi_label:
            train_labels = [label_list(v, data_args.label_delimiter) for v in train_labels]
        labels = LabelSpace.from_train(
            train_labels,
            data_args.class_names,
            sources["train"].name,
            multi_label=multi_label,
            delimiter=data_args.label_delimiter,
            column=data_args.label_column,
            allow_many_classes=data_args.allow_many_classes,
        )
    elif data_args.class_names:
        labels = LabelSpace(tuple(data_args.class_names), multi_label, data_args.label_delimiter or "|")
    else:
        raise UserError(
            "no training data to learn the labels from", fix="pass --train_file, or --class_names for evaluation only"
        )

    standardized, dropped = {}, {}
    for split, ds in raw.items():
        standardized[split], dropped[split] = standardize(ds, sources[split], data_args, labels, split)
        logger.info(
            "%s: %d rows from %s%s",
            split,
            len(standardized[split]),
            sources[split].name,
            f" ({dropped[split]} dropped)" if dropped[split] else "",
        )

    limits = {
        "train": data_args.max_train_samples,
        "validation": data_args.max_eval_samples,
        "test": data_args.max_predict_samples,
    }
    single = not multi_label and not regression  # rows with one class each, which a sample can stratify by
    if "train" in standardized and data_args.shuffle_train_dataset:
        standardized["train"] = standardized["train"].shuffle(seed=data_args.shuffle_seed)
        logger.info("train: shuffled (--shuffle_train_dataset, --shuffle_seed %d)", data_args.shuffle_seed)
    # The train limit applies before the hold-out: a validation split made from train comes from those rows only.
    # One seed picks which rows a run sees (samples and the held-out split): --validation_split_seed where given,
    # so a search that varies `seed` keeps the rows fixed and its best_recipe.json sees the trial's rows.
    split_seed = getattr(data_args, "validation_split_seed", None)
    seed = seed if split_seed is None else split_seed
    if "train" in standardized:
        standardized["train"] = sample_rows(standardized["train"], limits["train"], seed, single, "train")
    removed = {}
    if getattr(data_args, "drop_duplicate_rows", False) and "train" in standardized:
        standardized["train"], n = health.drop_duplicates(standardized["train"])
        removed["--drop_duplicate_rows"] = f"{n} duplicate train rows (--drop_duplicate_rows)"
        logger.warning("train: dropped %d rows that repeat an earlier row's text and label (--drop_duplicate_rows)", n)
    percentage = data_args.validation_split_percentage
    if hold_out and percentage > 0 and "validation" not in standardized and "train" in standardized:
        standardized["train"], standardized["validation"] = hold_out_validation(
            standardized["train"], percentage, seed, stratify=single
        )
    standardized = {
        s: ds if s == "train" else sample_rows(ds, limits[s], seed, single, s) for s, ds in standardized.items()
    }
    held_out = {s: ds for s, ds in standardized.items() if s != "train"}
    if getattr(data_args, "drop_leaked_rows", False) and "train" in standardized and held_out:
        standardized["train"], n, per_split = health.drop_leaks(standardized["train"], held_out)
        where = ", ".join(f"{count} in {split}" for split, count in per_split.items()) or "none"
        removed["--drop_leaked_rows"] = (
            f"{n} train rows whose text is in a held-out split ({where}; --drop_leaked_rows)"
        )
        logger.warning(
            "train: dropped %d rows whose text occurs in a held-out split (%s; --drop_leaked_rows)", n, where
        )
    raw_test = None
    if "test" in raw:  # the test rows predicted, with the user's own columns, in file order
        raw_test = raw["test"].select(standardized["test"][SOURCE_ROW][:]) if limits["test"] else raw["test"]
    if "validation" not in raw and "validation" in standardized:  # held out from train: its rows are train's
        raw["validation"], sources["validation"] = raw["train"], sources["train"]
    is_pair = bool(data_args.text_pair_column)
    for split, count in dropped.items():
        if count:
            removed[f"invalid {split}"] = f"{count} {split} rows with an empty text or label (--drop_invalid_rows)"
    report = health.check(standardized, labels.names, getattr(data_args, "max_seq_length", None), removed)
    logger.info("data health: %s", report.summary())
    task = TaskData(DatasetDict(standardized), labels, is_pair, raw_test, dropped, sources, raw)
    task.health = report
    return task


def remove_columns(raw: dict, data_args) -> dict:
    """--remove_columns a,b: dropped from every split that has them (a name no split has is an error)."""
    names = [c.strip() for c in (data_args.remove_columns or "").split(",") if c.strip()]
    for name in names:
        if not any(name in ds.column_names for ds in raw.values()):
            columns = sorted({c for ds in raw.values() for c in ds.column_names})
            raise UserError(f"--remove_columns {name}: no split has that column; the columns are {columns}")
    return {s: ds.remove_columns([c for c in names if c in ds.column_names]) for s, ds in raw.items()}


def is_regression(raw: dict, data_args) -> bool:
    """--do_regression, or (not given) a train label column of numbers that are not all integers, as the reference
    script decides from a float column; logged with the reason either way it is inferred."""
    if data_args.do_regression is not None or "train" not in raw:
        if data_args.do_regression and data_args.multi_label:
            raise UserError("--do_regression and --multi_label contradict each other", fix="pass one of them")
        return bool(data_args.do_regression)
    column = data_args.label_column
    feature = raw["train"].features.get(column)
    if isinstance(feature, (List, ClassLabel)) or data_args.multi_label:
        return False
    reason = regression_reason(raw["train"][column][:])
    if reason is None:
        return False
    logger.info(
        "regression (num_labels 1, MSE loss): train column %r holds numbers and %s; pass --do_regression false to "
        "treat its values as classes",
        column,
        reason,
    )
    return True


def is_multi_label(raw: dict, data_args, sources: dict) -> bool:
    """--multi_label, or a train label column holding lists (switched on with a log line). Checks that every
    labelled split's labels can be read as lists, naming the first row that cannot."""
    column = data_args.label_column
    multi_label = data_args.multi_label
    if not multi_label and "train" in raw and isinstance(raw["train"].features.get(column), List):
        logger.info("train column %r holds lists: multi-label classification (--multi_label)", column)
        multi_label = True
    if not multi_label:
        if data_args.label_delimiter:
            raise UserError("--label_delimiter is set, but --multi_label is not", fix="add --multi_label")
        return False
    for split, ds in raw.items():
        if column not in ds.column_names:
            continue
        for i, value in enumerate(ds[column][:]):
            try:
                label_list(value, data_args.label_delimiter)
            except ValueError:
                raise UserError(
                    f"{sources[split].rows([i])}: multi-label column {column!r} holds {value!r}, which is neither a "
                    "JSON list nor cut by a delimiter",
                    fix="pass --label_delimiter (e.g. `|` or `,`) to say what separates a row's labels",
                ) from None
    return True


def _names_from_class_label(ds: Dataset, label_column: str) -> Dataset:
    """Hub datasets store labels as ClassLabel ids; use their names so messages and predictions show names."""
    feature = ds.features.get(label_column)
    if isinstance(feature, List) and isinstance(feature.feature, ClassLabel):  # multi-label ids
        names = feature.feature
        return ds.map(
            lambda v: {label_column: [[names.int2str(x) for x in row] if row is not None else None for row in v]},
            batched=True,
            input_columns=label_column,
            features=Features({**ds.features, label_column: List(Value("string"))}),
        )
    if isinstance(feature, ClassLabel):
        ds = ds.cast_column(label_column, Value("int64"))
        ds = ds.map(
            lambda v: {label_column: [feature.int2str(x) if x is not None and x >= 0 else None for x in v]},
            batched=True,
            input_columns=label_column,
            features=Features({**ds.features, label_column: Value("string")}),
        )
    return ds


def hold_out_validation(
    train: Dataset, percentage: float, seed: int, stratify: bool = True
) -> tuple[Dataset, Dataset]:
    """Stratified by label and seeded; falls back to a plain random split (with a warning) when a class is too rare.
    Multi-label rows (`stratify=False`) have no single label to stratify by: the split is random."""
    test_size = percentage / 100
    parts, how = None, "random"
    if stratify:
        try:
            parts = train.train_test_split(test_size=test_size, seed=seed, stratify_by_column="label")
            how = "stratified"
        except ValueError as e:
            logger.warning(
                "validation split is not stratified (%s); holding out a random %.1f%% instead", e, percentage
            )
    if parts is None:
        parts = train.train_test_split(test_size=test_size, seed=seed)
    logger.info(
        "no validation data given: held out %d of %d train rows (%.1f%%, %s, seed %d)",
        len(parts["test"]),
        len(train),
        percentage,
        how,
        seed,
    )
    return parts["train"], parts["test"]


def sample_rows(ds: Dataset, limit: int | None, seed: int, stratify: bool, split: str) -> Dataset:
    """--max_*_samples: `limit` rows drawn with `seed`, stratified by label where there is one class per row (a
    block of a file sorted by label would hold one class), kept in file order; logged."""
    if limit is None or limit >= len(ds):
        return ds
    from sklearn.model_selection import train_test_split

    rows, how = np.arange(len(ds)), "random"
    classes = np.asarray(ds["label"][:]) if stratify and "label" in ds.column_names else None
    try:
        if classes is None:
            raise ValueError("no labels")
        chosen, _ = train_test_split(rows, train_size=limit, stratify=classes, random_state=seed)
        how = "stratified by label"
    except ValueError:  # no labels, or a class too rare to stratify: a plain seeded sample
        chosen, _ = train_test_split(rows, train_size=limit, random_state=seed)
    logger.info("%s: using %d of %d rows (--max_*_samples: a %s sample, seed %d)", split, limit, len(ds), how, seed)
    return ds.select(np.sort(chosen))
