"""Raw text for masked-LM pretraining: read the texts, tokenize them (with word boundaries for whole-word masking),
and pack them into blocks of exactly max_seq_length tokens.

Files are read by bertcls.data.loading (the same readers, encodings and errors as run_classification.py), except .txt,
which is plain text here: one text per line, read by the datasets `text` builder. Every step is a `datasets` map
over memory-mapped Arrow files, so a million lines never sit in Python lists; the packing step works on the
Arrow columns with numpy.

A block is `[CLS] t1 [SEP] t2 [SEP] ... [SEP]`: texts follow each other with a [SEP] after each, and a text that
does not fit the rest of a block continues in the next one (RoBERTa's FULL-SENTENCES packing). Each map batch
leaves less than one block of tokens over, which is not used; the count is logged.
"""

import dataclasses
import logging
from dataclasses import dataclass
from types import SimpleNamespace

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from datasets import Dataset, Features, List, Value, concatenate_datasets

from bertcls.config.recipes import parse_args
from bertcls.data.loading import (
    SPLIT_FILE_ARGS,
    Source,
    _load,
    check_columns,
    read_file,
    read_hub_dataset,
    require_file,
    sniff_encoding,
)
from bertcls.data.tokenization import TokenStats, report
from bertcls.errors import UserError

logger = logging.getLogger(__name__)

TEXT = "text"
PACK_BATCH_TEXTS = 10_000  # texts per packing batch: the tokens left over at each batch's end are < 1 block
STRING_TYPES = ("string", "large_string")


# ---------------------------------------------------------------------------------------------------------------
# Reading


def read_text_file(path: str, data_args, cache_dir=None) -> tuple[Dataset, str]:
    """One file's texts as a one-column (`text`) Dataset, with a description for the log. Empty texts are removed
    and counted."""
    if path.lower().endswith(".txt"):
        ds, source = _read_lines(path, data_args.encoding, cache_dir), Source(path, first_line=1)
        columns = [TEXT]
    else:
        reader_args = SimpleNamespace(
            encoding=data_args.encoding,
            column_names=data_args.column_names,
            text_column=data_args.text_column[0],
            text_pair_column=None,
            label_column="label",
        )
        ds, source = read_file(path, reader_args, cache_dir)
        columns = [c for c in data_args.text_column if c in ds.column_names]
        if len(data_args.text_column) == 1:
            check_columns(ds, source, reader_args, need_label=False)  # run_classification's message
        elif not columns:
            raise UserError(
                f"{source.name}: none of the text columns {data_args.text_column} (--text_column); its columns are "
                f"{ds.column_names}",
                fix="pass --text_column with the column(s) of this file that hold text",
            )
    return texts_of(ds, columns, source)


def _read_lines(path: str, encoding: str, cache_dir) -> Dataset:
    # read_file's checks first (missing file, encoding, empty file), then the `text` builder: one row per line.
    require_file(path)
    encoding, sample = sniff_encoding(path, encoding)
    if not sample.strip():
        raise UserError(f"data file is empty: {path}", fix="point to the file that holds the text")
    return _load(path, "text", {"encoding": encoding}, cache_dir)


def texts_of(ds: Dataset, columns: list[str], source: Source) -> tuple[Dataset, str]:
    """The named columns of `ds`, one after the other, as a single `text` column without empty texts."""
    parts = []
    for column in columns:
        feature = ds.features[column]
        if getattr(feature, "dtype", None) not in STRING_TYPES:
            raise UserError(
                f"{source.name}: column {column!r} holds {getattr(feature, 'dtype', type(feature).__name__)} "
                "values, not text",
                fix="pass --text_column with the columns that hold text",
            )
        part = ds.select_columns([column])
        parts.append(part.rename_column(column, TEXT) if column != TEXT else part)
    texts = concatenate_datasets(parts) if len(parts) > 1 else parts[0]
    rows = len(texts)
    texts = texts.filter(
        lambda t: [v is not None and not v.isspace() and v != "" for v in t],
        batched=True,
        input_columns=TEXT,
        desc=f"Skipping empty texts of {source.name}",
    )
    empty = rows - len(texts)
    what = f"{len(texts):,} texts from {source.name} [{', '.join(columns)}]"
    return texts, what + (f" ({empty:,} empty {'lines' if source.first_line else 'texts'} skipped)" if empty else "")


TASK_SPLITS = ("train", "validation")  # --from_task's default: the task's unlabelled training text, never its test


def task_texts(recipe: str, cache_dir=None, test_text: bool = False) -> list[tuple[Dataset, str]]:
    """The text columns (text_column, text_pair_column) of a classification recipe's train and validation splits,
    and of its test split with `test_text` (--from_task_test_text, transductive). Labels are not read. The log
    names the splits read and those left out."""
    # The recipe is parsed as run_classification.py parses it (unknown keys fail); the model it names is not loaded.
    _, task_args, _ = parse_args([recipe, "--model_name_or_path", "unused", "--output_dir", "unused"])
    columns = [task_args.text_column] + ([task_args.text_pair_column] if task_args.text_pair_column else [])
    wanted = (*TASK_SPLITS, "test") if test_text else TASK_SPLITS
    found, read, skipped = [], [], []
    if task_args.dataset_name:
        for split, ds in read_hub_dataset(task_args, cache_dir).items():
            if split not in wanted:
                skipped.append(split)
                continue
            source = Source(f"{task_args.dataset_name}[{split}]")
            check_columns(ds, source, task_args, need_label=False)
            found.append(texts_of(ds, columns, source))
            read.append(split)
    for split, arg in SPLIT_FILE_ARGS.items():
        path = getattr(task_args, arg)
        if not path:
            continue
        if split not in wanted:
            skipped.append(split)
            continue
        ds, source = read_file(path, task_args, cache_dir)
        check_columns(ds, source, task_args, need_label=False)
        found.append(texts_of(ds, columns, source))
        read.append(split)
    logger.info(
        "--from_task %s: texts of its %s split(s)%s",
        recipe,
        ", ".join(read) or "no",
        f"; not read: {', '.join(skipped)}" + ("" if test_text else " (test text only with --from_task_test_text)")
        if skipped
        else "",
    )
    if not found:
        if skipped:
            raise UserError(
                f"--from_task {recipe}: the recipe names only {', '.join(skipped)} data, which is not pretraining "
                "text by default",
                fix="pass --from_task_test_text to pretrain on its test texts (transductive), or give --train_file",
            )
        raise UserError(
            f"--from_task {recipe}: the recipe names no data (train_file, validation_file, test_file or dataset_name)",
            fix="point --from_task at a recipe with data files, or pass the files with --train_file",
        )
    return found


def read_texts(data_args, seed: int, cache_dir=None) -> dict[str, Dataset]:
    """`train` and (when there is held-out text) `validation` texts, each a one-column `text` Dataset. Held-out
    texts that also occur among the training texts (or twice among themselves) are removed, and counted: a
    perplexity on texts the model trained on measures memory, not language."""
    train = [read_text_file(path, data_args, cache_dir) for path in data_args.train_file or ()]
    for recipe in data_args.from_task or ():
        train += task_texts(recipe, cache_dir, data_args.from_task_test_text)
    splits = {"train": _join(train, "train")} if train else {}
    if data_args.validation_file:
        splits["validation"] = _join(
            [read_text_file(path, data_args, cache_dir) for path in data_args.validation_file], "validation"
        )
    elif data_args.validation_split_percentage > 0 and train:
        texts = splits["train"]
        held_out = max(1, round(len(texts) * data_args.validation_split_percentage / 100))
        if len(texts) - held_out < 1:
            raise UserError(
                f"{len(texts)} text(s) cannot be split into training text and "
                f"{data_args.validation_split_percentage:g}% held-out text",
                fix="give more text, a --validation_file, or --validation_split_percentage 0 (no perplexity)",
            )
        parts = texts.train_test_split(test_size=held_out, seed=seed)
        splits = {"train": parts["train"], "validation": parts["test"]}
        logger.info(
            "held out %d of %d texts (%.1f%%, seed %d) for perplexity",
            held_out,
            len(texts),
            data_args.validation_split_percentage,
            seed,
        )
    if "validation" in splits and "train" in splits:
        splits["validation"] = unseen_texts(splits["validation"], splits["train"])
    return splits


def unseen_texts(held_out: Dataset, train: Dataset) -> Dataset:
    """`held_out` without the texts that occur in `train`, and with each text once; the removed count is logged."""
    seen = set(train[TEXT][:])
    kept = []
    for i, text in enumerate(held_out[TEXT][:]):
        if text not in seen:
            seen.add(text)  # a second copy within the held-out text goes too
            kept.append(i)
    removed = len(held_out) - len(kept)
    if removed:
        logger.info(
            "held-out text: removed %d of %d texts that also occur in the training text (or twice in the held-out "
            "text), so perplexity is measured on unseen text",
            removed,
            len(held_out),
        )
    if not kept:
        raise UserError(
            f"every held-out text ({len(held_out)}) also occurs in the training text: perplexity would be measured "
            "on text the model trained on",
            fix="pass a --validation_file with other texts, or --validation_split_percentage 0 (no perplexity)",
        )
    return held_out.select(kept) if removed else held_out


def _join(parts: list[tuple[Dataset, str]], split: str) -> Dataset:
    for _, what in parts:
        logger.info("%s: %s", split, what)
    texts = concatenate_datasets([ds for ds, _ in parts]) if len(parts) > 1 else parts[0][0]
    if len(texts) == 0:
        raise UserError(f"no {split} text: every text given is empty", fix="check --train_file and --text_column")
    return texts


# ---------------------------------------------------------------------------------------------------------------
# Tokenizing, with word boundaries from jieba


class TextEncoder:
    """Tokenizes a batch of texts without special tokens; with `words`, also marks the first token of each word
    (jieba's segmentation) in `word_start`. Picklable, so `datasets.map(num_proc=...)` can use it."""

    def __init__(self, tokenizer, words: bool):
        self.tokenizer = tokenizer
        self.words = words

    def __call__(self, batch: dict) -> dict:
        texts = batch[TEXT]
        # verbose=False: texts longer than the model's limit are fine here, packing cuts them into blocks.
        encoded = self.tokenizer(
            texts,
            add_special_tokens=False,
            return_attention_mask=False,
            return_token_type_ids=False,
            return_offsets_mapping=self.words,
            verbose=False,
        )
        out = {"input_ids": encoded["input_ids"]}
        if self.words:
            out["word_start"] = [word_starts(t, o) for t, o in zip(texts, encoded["offset_mapping"])]
        return out


def segmenter():
    """jieba, quiet (it logs its dictionary loading at DEBUG to stderr)."""
    import jieba

    jieba.setLogLevel(logging.WARNING)
    return jieba


def word_starts(text: str, offsets) -> list[int]:
    """1 for each token that begins a jieba word, 0 for a token inside the same word as the token before it.

    Tokens are matched to words by the character where they start, so WordPiece pieces (`##ing`) and the
    characters of a Chinese word all belong to the word that holds them."""
    if not offsets:
        return []
    lengths = [len(word) for word in segmenter().lcut(text)]  # jieba's words cover the text, in order
    word_of_char = np.repeat(np.arange(len(lengths)), lengths)
    starts = np.fromiter((start for start, _ in offsets), dtype=np.int64, count=len(offsets))
    words = word_of_char[np.minimum(starts, len(word_of_char) - 1)]
    first = np.ones(len(words), dtype=np.int8)
    first[1:] = words[1:] != words[:-1]
    return first.tolist()


def token_features(words: bool) -> Features:
    """The schema of tokenized texts and of packed blocks: int32 token ids, and with `words` an int8 flag per
    token that starts a word (whole-word masking)."""
    features = {"input_ids": List(Value("int32"))}
    if words:
        features["word_start"] = List(Value("int8"))
    return Features(features)


def tokenize_texts(texts: Dataset, tokenizer, words: bool, split: str, num_proc=None, load_from_cache=True):
    """Tokenized texts (`input_ids`, and `word_start` with `words`) and their TokenStats (logged, with the [UNK]
    warning run_classification.py gives)."""
    tokenized = texts.map(
        TextEncoder(tokenizer, words),
        batched=True,
        num_proc=num_proc,
        remove_columns=texts.column_names,
        features=token_features(words),
        load_from_cache_file=load_from_cache,
        desc=f"Tokenizing {split}{' and finding words (jieba)' if words else ''}",
    )
    column = tokenized.data.column("input_ids")
    lengths = pc.list_value_length(column).to_numpy(zero_copy_only=False)
    unk = pc.sum(pc.equal(pc.list_flatten(column), tokenizer.unk_token_id)).as_py() or 0
    stats = TokenStats(
        rows=len(tokenized), truncated=0, unk_tokens=unk, content_tokens=int(lengths.sum()), lengths=lengths
    )
    report(split, stats)
    return tokenized, stats


# ---------------------------------------------------------------------------------------------------------------
# Packing


@dataclass
class Packer:
    """Cuts a batch of tokenized texts into blocks `[CLS] ... [SEP]` of exactly `block_size` tokens (numpy over the
    Arrow columns). `word_start` travels along; separators and a block's first token start a word."""

    block_size: int
    cls_id: int
    sep_id: int

    def __call__(self, table: pa.Table) -> dict:
        content = self.block_size - 2
        ids, lengths = _flat(table.column("input_ids"))
        # Each text followed by a [SEP]: the separator sits at each text's end offset.
        ends = np.cumsum(lengths + 1)
        stream = np.empty(int(ends[-1]) if len(ends) else 0, dtype=np.int32)
        is_sep = np.zeros(len(stream), dtype=bool)
        is_sep[ends - 1] = True
        stream[is_sep] = self.sep_id
        stream[~is_sep] = ids
        blocks = len(stream) // content
        body = stream[: blocks * content].reshape(blocks, content)
        out = {
            "input_ids": np.concatenate(
                [np.full((blocks, 1), self.cls_id, np.int32), body, np.full((blocks, 1), self.sep_id, np.int32)], 1
            )
        }
        if "word_start" in table.column_names:
            starts, _ = _flat(table.column("word_start"))
            flags = np.ones(len(stream), dtype=np.int8)
            flags[~is_sep] = starts
            body = flags[: blocks * content].reshape(blocks, content)
            body[:, 0] = 1  # a word cut by the block boundary starts again here
            ones = np.ones((blocks, 1), np.int8)
            out["word_start"] = np.concatenate([ones, body, ones], 1)
        return out


def _flat(column) -> tuple[np.ndarray, np.ndarray]:
    array = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    return array.flatten().to_numpy(), pc.list_value_length(array).to_numpy(zero_copy_only=False)


@dataclass
class PackStats:
    texts: int
    tokens: int  # text tokens, before separators and block specials
    blocks: int
    block_size: int

    @property
    def unused_tokens(self) -> int:
        """Tokens of the joined stream (texts and their separators) left over at the ends of packing batches."""
        return self.tokens + self.texts - self.blocks * (self.block_size - 2)

    def summary(self) -> str:
        stream = self.tokens + self.texts
        return (
            f"{self.texts:,} texts, {self.tokens:,} tokens -> {self.blocks:,} blocks of {self.block_size} tokens, "
            f"no padding; {self.unused_tokens:,} tokens ({self.unused_tokens / max(stream, 1):.2%}) left over at "
            f"packing batch ends, not used"
        )


def pack_blocks(tokenized: Dataset, tokenizer, block_size: int, split: str, num_proc=None, load_from_cache=True):
    """Blocks of exactly `block_size` tokens from tokenized texts, and what packing did (logged)."""
    packer = Packer(block_size, tokenizer.cls_token_id, tokenizer.sep_token_id)
    blocks = tokenized.with_format("arrow").map(
        packer,
        batched=True,
        batch_size=PACK_BATCH_TEXTS,
        num_proc=num_proc,
        remove_columns=tokenized.column_names,
        features=token_features("word_start" in tokenized.column_names),
        load_from_cache_file=load_from_cache,
        desc=f"Packing {split} into blocks of {block_size}",
    )
    blocks = blocks.with_format(None)
    tokens = pc.sum(pc.list_value_length(tokenized.data.column("input_ids"))).as_py() or 0
    stats = PackStats(texts=len(tokenized), tokens=tokens, blocks=len(blocks), block_size=block_size)
    logger.info("packed %s: %s", split, stats.summary())
    return blocks, stats


def make_blocks(texts: Dataset, tokenizer, data_args, split: str, load_from_cache=True):
    """texts -> tokenized -> blocks, with the statistics of both steps."""
    tokenized, token_stats = tokenize_texts(
        texts, tokenizer, data_args.whole_word_mask, split, data_args.preprocessing_num_workers, load_from_cache
    )
    blocks, pack_stats = pack_blocks(
        tokenized, tokenizer, data_args.max_seq_length, split, data_args.preprocessing_num_workers, load_from_cache
    )
    if len(blocks) == 0:
        fix = (
            "give more text, or a smaller --max_seq_length"
            if split == "train"
            else "raise --validation_split_percentage, pass a longer --validation_file, or 0 to skip perplexity"
        )
        raise UserError(
            f"the {split} text ({pack_stats.tokens:,} tokens) does not fill one block of --max_seq_length "
            f"{data_args.max_seq_length}",
            fix=fix,
        )
    return blocks, dataclasses.asdict(pack_stats) | {"unk_rate": token_stats.unk_rate}
