"""What the classic walkthrough teaches, checked against the real bert-base-chinese vocabulary."""

import logging

import pytest
from datasets import Dataset, DatasetDict
from transformers import AutoConfig, DataCollatorWithPadding

from bertcls.config.arguments import DataArguments
from bertcls.data.tokenization import Encoder, check_settings, tokenize_splits
from bertcls.errors import UserError
from bertcls.model.checkpoints import load_tokenizer

from .conftest import make_tiny


def encode(tokenizer, texts, pairs=None, **data_args):
    args = DataArguments(text_pair_column="text_b" if pairs else None, **data_args)
    batch = {"text": texts} | ({"text_pair": pairs} if pairs else {})
    return Encoder(tokenizer, args)(batch)


def test_single_sentence_gets_cls_and_sep(tokenizer):
    ids = encode(tokenizer, ["我喜欢自然语言处理"])["input_ids"][0]
    assert ids == [101, 2769, 1599, 3614, 5632, 4197, 6427, 6241, 1905, 4415, 102]


def test_batch_is_padded_per_batch_by_the_collator(tokenizer):
    enc = encode(tokenizer, ["我喜欢自然语言处理", "我是翠花"])
    assert [len(ids) for ids in enc["input_ids"]] == [11, 6]  # no padding at map time
    rows = [{k: enc[k][i] for k in ("input_ids", "token_type_ids", "attention_mask")} for i in range(2)]
    batch = DataCollatorWithPadding(tokenizer)(rows)
    assert batch["input_ids"][1].tolist() == [101, 2769, 3221, 5428, 5709, 102, 0, 0, 0, 0, 0]
    assert batch["attention_mask"][1].tolist() == [1] * 6 + [0] * 5
    assert batch["attention_mask"][0].tolist() == [1] * 11


def test_pair_token_type_ids(tokenizer):
    enc = encode(tokenizer, ["今天天气很好"], ["适合出去玩"])
    assert enc["token_type_ids"][0] == [0] * 8 + [1] * 6
    assert enc["input_ids"][0][0] == 101 and enc["input_ids"][0].count(102) == 2


def test_length_truncated_and_unk_columns(tokenizer):
    # Symbols outside the vocabulary become [UNK]; BERT splits words on spaces, so "☃ ☃" is two of them.
    enc = encode(tokenizer, ["我喜欢自然语言处理", "我" * 40, "☃ ☃我"], max_seq_length=16)
    assert enc["length"] == [11, 16, 5]
    assert enc["truncated"] == [False, True, False]
    assert enc["unk_tokens"] == [0, 0, 2]


# 30 and 10 distinct characters, one token each: a text that reads differently from each end, so a cut from the
# wrong side shows.
FIRST, SECOND = "天地玄黄宇宙洪荒日月盈辰宿列张寒来暑往秋收冬藏闰余成岁律吕调", "甲乙丙丁戊己庚辛壬癸"
assert len(FIRST) == len(set(FIRST)) == 30


def pair_parts(tokenizer, ids):
    """Split pair input_ids into the first and second texts' tokens."""
    sep = [i for i, t in enumerate(ids) if t == 102]
    return tokenizer.convert_ids_to_tokens(ids[1 : sep[0]]), tokenizer.convert_ids_to_tokens(ids[sep[0] + 1 : sep[1]])


@pytest.mark.parametrize("max_len", [16, 25, 33])
def test_longest_first_trims_the_longer_text(tokenizer, max_len):
    enc = encode(tokenizer, [FIRST], [SECOND], max_seq_length=max_len, truncation="longest_first")
    first, second = pair_parts(tokenizer, enc["input_ids"][0])
    assert len(enc["input_ids"][0]) == max_len
    assert len(first) >= len(second)  # the longer text lost tokens first
    assert first == list(FIRST[: len(first)])  # cut from the right end


def test_only_first_and_only_second_cut_the_side_they_name(tokenizer):
    enc = encode(tokenizer, [FIRST], [SECOND], max_seq_length=25, truncation="only_first")
    first, second = pair_parts(tokenizer, enc["input_ids"][0])
    assert second == list(SECOND) and len(first) == 25 - 3 - 10
    enc = encode(tokenizer, [SECOND], [FIRST], max_seq_length=25, truncation="only_second")
    first, second = pair_parts(tokenizer, enc["input_ids"][0])
    assert first == list(SECOND) and len(second) == 25 - 3 - 10


def test_only_second_that_cannot_fit_names_the_row(tokenizer):
    with pytest.raises(UserError, match=r"only_second cannot fit row\(s\) \[1\].*longest_first"):
        encode(tokenizer, [FIRST], [SECOND], max_seq_length=16, truncation="only_second")


def test_truncation_side_left_keeps_the_end(tokenizer):
    enc = encode(tokenizer, [FIRST], max_seq_length=12, truncation_side="left")
    assert tokenizer.convert_ids_to_tokens(enc["input_ids"][0][1:-1]) == list(FIRST[-10:])
    enc = encode(tokenizer, [FIRST], max_seq_length=12, truncation_side="right")
    assert tokenizer.convert_ids_to_tokens(enc["input_ids"][0][1:-1]) == list(FIRST[:10])
    enc = encode(tokenizer, [FIRST], [SECOND], max_seq_length=25, truncation="only_first", truncation_side="left")
    first, _ = pair_parts(tokenizer, enc["input_ids"][0])
    assert first == list(FIRST[-12:])


def test_head_tail_keeps_the_first_and_last_tokens(tokenizer):
    vocab = sorted(t for t in tokenizer.get_vocab() if len(t) == 1 and "\u4e00" <= t <= "\u9fff")
    text = "".join(vocab[1000:1200])  # 200 distinct Chinese characters, each its own token
    enc = encode(tokenizer, [text, "短句"], max_seq_length=32, truncation="head_tail", head_tokens=10)
    ids = enc["input_ids"][0]
    assert len(ids) == 32 and ids[0] == 101 and ids[-1] == 102
    tokens = tokenizer.convert_ids_to_tokens(ids[1:-1])
    assert tokens == list(text[:10]) + list(text[-20:])
    assert enc["truncated"] == [True, False]
    assert len(enc["input_ids"][1]) == 4
    assert all(len(row) == 32 for row in enc["attention_mask"][:1]) and enc["token_type_ids"][0] == [0] * 32


@pytest.mark.parametrize("strategy", ["longest_first", "only_first", "only_second", "head_tail"])
def test_no_strategy_exceeds_max_seq_length(tokenizer, strategy):
    long_a, long_b = "天" * 300, "地" * 250
    pairs = None if strategy == "head_tail" else [long_b, "好"]
    if strategy == "only_first":
        pairs = ["好", "好"]
    texts = [long_a, "短"] if strategy != "only_second" else ["好", "短"]
    if strategy == "only_second":
        pairs = [long_b, long_a]
    enc = encode(tokenizer, texts, pairs, max_seq_length=64, truncation=strategy, head_tokens=16)
    assert max(enc["length"]) <= 64 and enc["length"] == [len(i) for i in enc["input_ids"]]


def test_max_seq_length_over_the_model_limit_fails_before_tokenizing(tokenizer, tiny_model):
    config = AutoConfig.from_pretrained(tiny_model)
    assert config.max_position_embeddings == 512
    with pytest.raises(UserError, match=r"--max_seq_length 513 is over the limit .* 512 tokens") as error:
        check_settings(DataArguments(max_seq_length=513), config, tokenizer, tiny_model)
    assert "head_tail" in error.value.fix
    check_settings(DataArguments(max_seq_length=512), config, tokenizer, tiny_model)


def test_impossible_truncation_settings_are_refused(tokenizer, tiny_model):
    config = AutoConfig.from_pretrained(tiny_model)
    with pytest.raises(UserError, match="head_tail works on single texts"):
        check_settings(DataArguments(truncation="head_tail", text_pair_column="b"), config, tokenizer, "m")
    with pytest.raises(UserError, match="--head_tokens 300 must be between 0 and 253"):
        check_settings(
            DataArguments(truncation="head_tail", max_seq_length=256, head_tokens=300), config, tokenizer, "m"
        )
    with pytest.raises(UserError, match="only_second cuts one text of a pair"):
        check_settings(DataArguments(truncation="only_second"), config, tokenizer, "m")


def test_vocab_only_folder_falls_back_to_bert_tokenizer(tmp_path):
    folder = make_tiny(tmp_path / "converted", vocab_only=True)
    tokenizer = load_tokenizer(folder)
    assert tokenizer("我喜欢")["input_ids"] == [101, 2769, 1599, 3614, 102]


def test_stats_and_loud_unk_warning(tokenizer, caplog):
    splits = DatasetDict({"train": Dataset.from_dict({"text": ["我喜欢自然语言处理", "☃ ☃ ☃ ☃ ☃", "我" * 100]})})
    with caplog.at_level(logging.INFO, logger="bertcls"):
        tokenized, stats = tokenize_splits(splits, tokenizer, DataArguments(max_seq_length=32))
    s = stats["train"]
    assert (s.rows, s.truncated) == (3, 1)
    assert s.unk_tokens == 5 and s.content_tokens == 9 + 5 + 30
    assert tokenized["train"].column_names == ["input_ids", "token_type_ids", "attention_mask", "length"]
    assert "[UNK]" in caplog.text and "11.4% of tokens are [UNK]" in caplog.text
