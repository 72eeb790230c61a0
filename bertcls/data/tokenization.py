"""The max_seq_length check, truncation strategies, and what tokenizing did to the data.

Each batch is tokenized once in full (no truncation, no padding: padding happens per batch in the collator).
Only rows longer than max_seq_length are cut: by the tokenizer's own truncation for longest_first / only_first /
only_second, or by head+tail slicing, which no tokenizer offers. Counting the rows that needed cutting this way
is exact, and costs one tokenizer call for the short rows.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from bertcls.errors import UserError

if TYPE_CHECKING:  # only for annotations: the encoders also run in the torch-free runtime (model/runtime.py)
    from datasets import DatasetDict
    from transformers import PreTrainedTokenizerBase

logger = logging.getLogger(__name__)

UNK_WARN_RATE = 0.05
TOKENIZER_OUTPUTS = ("input_ids", "token_type_ids", "attention_mask")

# RoBERTa-style models number positions from pad_token_id + 1, so fewer than max_position_embeddings are usable.
OFFSET_POSITION_MODELS = {"roberta", "xlm-roberta", "camembert", "longformer", "data2vec-text", "xmod"}


def position_limit(config) -> int | None:
    """The most tokens the model can take: its position embeddings (minus RoBERTa's offset). A length saved into
    a tokenizer is never the limit: a fine-tuned folder's tokenizer remembers the max_seq_length it was trained at."""
    max_positions = getattr(config, "max_position_embeddings", None)
    if not max_positions:
        return None
    if getattr(config, "model_type", None) in OFFSET_POSITION_MODELS:
        max_positions -= (config.pad_token_id or 0) + 1
    return max_positions


def check_settings(data_args, config, tokenizer, model_name: str) -> None:
    """Reject impossible length/truncation settings before a single row is tokenized."""
    n, is_pair = data_args.max_seq_length, bool(data_args.text_pair_column)
    limit = position_limit(config)
    if limit is not None and n > limit:
        raise UserError(
            f"--max_seq_length {n} is over the limit of {model_name}: {limit} tokens (its position embeddings)",
            fix=f"use --max_seq_length {limit} or less; for long texts --truncation head_tail keeps the start and the end",
        )
    specials = tokenizer.num_special_tokens_to_add(pair=is_pair)
    if n < specials + (2 if is_pair else 1):
        raise UserError(
            f"--max_seq_length {n} leaves no room for text after {specials} special tokens", fix="raise it"
        )
    if data_args.truncation == "head_tail":
        if is_pair:
            raise UserError(
                "--truncation head_tail works on single texts, but --text_pair_column is set",
                fix="use longest_first, only_first or only_second for sentence pairs",
            )
        if not 0 <= data_args.head_tokens < n - specials:
            raise UserError(
                f"--head_tokens {data_args.head_tokens} must be between 0 and {n - specials - 1} "
                f"(max_seq_length {n} minus {specials} special tokens, leaving room for the tail)",
                fix="lower --head_tokens or raise --max_seq_length",
            )
    if data_args.truncation in ("only_first", "only_second") and not is_pair:
        raise UserError(
            f"--truncation {data_args.truncation} cuts one text of a pair, but this is a single-text task",
            fix="use longest_first or head_tail, or set --text_pair_column",
        )
    if getattr(data_args, "sliding_window", False):
        if is_pair:
            raise UserError(
                "--sliding_window works on single texts, but --text_pair_column is set",
                fix="drop --sliding_window for sentence pairs (they are truncated by --truncation)",
            )
        room = n - specials
        stride = window_stride(data_args)
        if not 0 <= stride < room:
            raise UserError(
                f"--stride {stride} must be between 0 and {room - 1}: windows of max_seq_length {n} hold {room} "
                "text tokens, and consecutive windows must not share all of them",
                fix=f"pass --stride {room // 4} (a quarter of a window)",
            )


class Encoder:
    """Tokenizes a batch of `text` / `text_pair`; picklable, so `datasets.map(num_proc=...)` can use it. `source`
    (data.Source) names the file and lines of rows that cannot be cut as asked, by their `source_row` column."""

    def __init__(self, tokenizer: PreTrainedTokenizerBase, data_args, source=None):
        self.source = source
        self.tokenizer = tokenizer
        self.tokenizer.truncation_side = data_args.truncation_side
        self.max_length = data_args.max_seq_length
        self.truncation = data_args.truncation
        self.head_tokens = data_args.head_tokens

    def __call__(self, batch: dict, rows: list[int] | None = None) -> dict:
        texts, pairs = batch["text"], batch.get("text_pair")
        head_tail = self.truncation == "head_tail"
        enc = self.tokenizer(texts, pairs, truncation=False, return_special_tokens_mask=head_tail, verbose=False)
        enc = {k: enc[k] for k in TOKENIZER_OUTPUTS + ("special_tokens_mask",) if k in enc}
        long_rows = [i for i, ids in enumerate(enc["input_ids"]) if len(ids) > self.max_length]
        if long_rows:
            file_rows = batch.get("source_row") or rows or range(len(texts))
            where = [file_rows[i] for i in long_rows]
            cut = self._head_tail(enc, long_rows) if head_tail else self._truncate(texts, pairs, long_rows, where)
            for key in TOKENIZER_OUTPUTS:
                if key in enc:
                    for i, values in zip(long_rows, cut[key]):
                        enc[key][i] = values
        enc.pop("special_tokens_mask", None)
        unk = self.tokenizer.unk_token_id
        long_set = set(long_rows)
        enc["length"] = [len(ids) for ids in enc["input_ids"]]
        enc["truncated"] = [i in long_set for i in range(len(texts))]
        enc["unk_tokens"] = [ids.count(unk) if unk is not None else 0 for ids in enc["input_ids"]]
        return enc

    def _truncate(self, texts, pairs, long_rows, where) -> dict:
        """The tokenizer's truncation of the long rows; `where` holds their file rows, for the message."""
        sub_texts = [texts[i] for i in long_rows]
        sub_pairs = [pairs[i] for i in long_rows] if pairs is not None else None
        try:
            return self.tokenizer(sub_texts, sub_pairs, truncation=self.truncation, max_length=self.max_length)
        except Exception:  # the Rust tokenizer refuses when the side it may cut is too short to make room
            kept = "second" if self.truncation == "only_first" else "first"
            bad = []
            for j in range(len(long_rows)):
                try:
                    self.tokenizer(
                        sub_texts[j],
                        sub_pairs[j] if sub_pairs else None,
                        truncation=self.truncation,
                        max_length=self.max_length,
                    )
                except Exception:
                    bad.append(where[j])
            rows = self.source.rows(bad) if self.source is not None else f"row(s) {[i + 1 for i in bad[:5]]}"
            raise UserError(
                f"--truncation {self.truncation} cannot fit {rows} into {self.max_length} tokens: the {kept} text "
                "alone is too long",
                fix="use --truncation longest_first (cuts whichever text is longer), or raise --max_seq_length",
            ) from None

    def _head_tail(self, enc: dict, long_rows: list[int]) -> dict:
        """Keep the first head_tokens and the last (budget - head_tokens) content tokens, specials untouched."""
        out = {key: [] for key in TOKENIZER_OUTPUTS if key in enc}
        for i in long_rows:
            special = enc["special_tokens_mask"][i]
            lead = next(k for k, s in enumerate(special) if not s)
            trail = next(k for k, s in enumerate(reversed(special)) if not s)
            n = len(special)
            tail = self.max_length - lead - trail - self.head_tokens
            keep = list(range(lead + self.head_tokens)) + list(range(n - trail - tail, n))
            for key in out:
                values = enc[key][i]
                out[key].append([values[k] for k in keep])
        return out


def window_stride(data_args) -> int:
    """--stride, or a quarter of max_seq_length."""
    return data_args.stride if data_args.stride is not None else data_args.max_seq_length // 4


class WindowEncoder:
    """Cuts every single text of a batch into windows of max_seq_length tokens, consecutive windows sharing
    `stride` tokens (the tokenizer's own overflow), so that no token is lost. Each output row is one window with
    the model inputs, its `length` and `row`, the index of the text it came from (`indices[i]` for batch row i)."""

    def __init__(self, tokenizer: PreTrainedTokenizerBase, data_args):
        self.tokenizer = tokenizer
        self.max_length = data_args.max_seq_length
        self.stride = window_stride(data_args)

    def __call__(self, batch: dict, indices: list[int]) -> dict:
        side = self.tokenizer.truncation_side
        self.tokenizer.truncation_side = "right"  # windows run from the start of the text to its end
        try:
            enc = self.tokenizer(
                batch["text"],
                truncation=True,
                max_length=self.max_length,
                stride=self.stride,
                return_overflowing_tokens=True,
                verbose=False,
            )
        finally:
            self.tokenizer.truncation_side = side
        out = {k: enc[k] for k in TOKENIZER_OUTPUTS if k in enc}
        out["row"] = [indices[i] for i in enc["overflow_to_sample_mapping"]]
        out["length"] = [len(ids) for ids in enc["input_ids"]]
        return out


def encode_windows(rows, tokenizer: PreTrainedTokenizerBase, data_args, num_proc=None, load_from_cache=True):
    """WindowEncoder over every row of `rows`: one dataset row per window. Used by run_classification.py for the
    test split and by TrainedClassifier (predict, export, serve); combine the windows' logits with
    `aggregate_windows`."""
    return rows.map(
        WindowEncoder(tokenizer, data_args),
        batched=True,
        with_indices=True,
        num_proc=num_proc,
        remove_columns=rows.column_names,
        load_from_cache_file=load_from_cache,
        desc="Cutting windows",
    )


def aggregate_windows(window_logits: np.ndarray, rows, num_rows: int, how: str = "mean") -> np.ndarray:
    """Each row's logits from its windows' logits: their mean, or their per-class maximum."""
    rows = np.asarray(rows, dtype=np.int64)
    width = window_logits.shape[-1]
    if how == "max":
        combined = np.full((num_rows, width), -np.inf, dtype=np.float64)
        np.maximum.at(combined, rows, window_logits)
    elif how == "mean":
        combined = np.zeros((num_rows, width), dtype=np.float64)
        np.add.at(combined, rows, window_logits)
        combined /= np.bincount(rows, minlength=num_rows)[:, None]
    else:
        raise UserError(f"--window_aggregation must be mean or max, got {how!r}")
    return combined.astype(window_logits.dtype)


@dataclass
class TokenStats:
    """What tokenizing did to one split."""

    rows: int
    truncated: int
    unk_tokens: int
    content_tokens: int  # tokens excluding [CLS]/[SEP]-style specials
    lengths: np.ndarray

    @property
    def truncated_share(self) -> float:
        return self.truncated / self.rows if self.rows else 0.0

    @property
    def unk_rate(self) -> float:
        return self.unk_tokens / self.content_tokens if self.content_tokens else 0.0

    def percentiles(self) -> dict[str, int]:
        if not self.rows:
            return {}
        p50, p90, p99 = np.percentile(self.lengths, [50, 90, 99]).round().astype(int)
        return {"p50": int(p50), "p90": int(p90), "p99": int(p99), "max": int(self.lengths.max())}

    def summary(self) -> str:
        return (
            f"{self.rows} rows, {self.truncated} truncated ({self.truncated_share:.1%}), "
            f"[UNK] {self.unk_rate:.2%} of tokens, length {self.percentiles()}"
        )


def tokenize_splits(splits: DatasetDict, tokenizer, data_args, num_proc=None, load_from_cache=True, sources=None):
    """Tokenize every split; returns the tokenized splits (with a `length` column) and TokenStats per split.
    `sources` (split -> data.Source) lets messages name the file and line of a row."""
    from datasets import DatasetDict

    specials = tokenizer.num_special_tokens_to_add(pair=bool(data_args.text_pair_column))
    tokenized, stats = {}, {}
    for split, ds in splits.items():
        encoder = Encoder(tokenizer, data_args, (sources or {}).get(split))
        text_columns = [c for c in ("text", "text_pair", "source_row") if c in ds.column_names]
        ds = ds.map(
            encoder,
            batched=True,
            with_indices=True,
            num_proc=num_proc,
            remove_columns=text_columns,
            load_from_cache_file=load_from_cache,
            desc=f"Tokenizing {split}",
        )
        # `[:]` reads a whole column at once; numpy over the lazy column object reads it one row at a time
        # (about 10 s per column for 1M rows).
        lengths = np.asarray(ds["length"][:])
        stats[split] = TokenStats(
            rows=len(ds),
            truncated=int(np.sum(ds["truncated"][:])),
            unk_tokens=int(np.sum(ds["unk_tokens"][:])),
            content_tokens=int(lengths.sum()) - specials * len(ds),
            lengths=lengths,
        )
        tokenized[split] = ds.remove_columns(["truncated", "unk_tokens"])
        report(split, stats[split])
    return DatasetDict(tokenized), stats


def report(split: str, stats: TokenStats) -> None:
    logger.info("tokenized %s: %s", split, stats.summary())
    if stats.unk_rate > UNK_WARN_RATE:
        logger.warning(
            "\n%s\n!! %s: %.1f%% of tokens are [UNK] (over %.0f%%). The tokenizer's vocabulary does not fit this "
            "text:\n!! a wrong vocab.txt, a tokenizer built with BertTokenizerFast(vocab_file=...) (which ignores "
            "the file),\n!! or an English vocabulary on Chinese text. The model cannot learn from [UNK].\n%s",
            "!" * 100,
            split,
            100 * stats.unk_rate,
            100 * UNK_WARN_RATE,
            "!" * 100,
        )
