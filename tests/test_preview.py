"""python -m bertcls preview: rows as the model sees them, and whole-split statistics."""

import json

from bertcls.model import preview

from .conftest import shared


def test_preview_prints_the_walkthrough_ids(tiny_model, write, capsys):
    data = write("rows.tsv", "label\ttext\n1\t我喜欢自然语言处理\n0\t我是翠花\n")
    text = preview.main(
        [
            "--model_name_or_path",
            tiny_model,
            "--train_file",
            data,
            "--num_rows",
            "2",
            "--validation_split_percentage",
            "0",
        ]
    )
    assert text == capsys.readouterr().out.strip()
    assert "input_ids:      [101, 2769, 1599, 3614, 5632, 4197, 6427, 6241, 1905, 4415, 102]" in text
    assert "input_ids:      [101, 2769, 3221, 5428, 5709, 102, 0, 0, 0, 0, 0]" in text
    assert "attention_mask: [1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0]" in text
    assert "tokens:         [CLS] 我 是 翠 花 [SEP] [PAD] [PAD] [PAD] [PAD] [PAD]" in text
    assert "train: 2 rows" in text and "truncated:      0 rows (0.0%)" in text


def test_preview_of_a_pair_recipe(tiny_model, write):
    # the recipe names it relative to its own folder
    write("pairs.tsv", "a\tb\tlabel\n今天天气很好\t适合出去玩\t1\n你好\t再见\t0\n")
    recipe = write(
        "pair.json",
        json.dumps(
            {
                "model_name_or_path": tiny_model,
                "train_file": "pairs.tsv",
                "text_column": "a",
                "text_pair_column": "b",
                "validation_split_percentage": 0,
            }
        ),
    )
    text = preview.main([recipe, "--num_rows", "1"])
    assert "token_type_ids: [0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1]" in text
    assert "text_pair:      适合出去玩" in text


def test_preview_of_chnsenticorp_prints_its_stats(tiny_model, write):
    d = shared("chnsenticorp")
    recipe = write(
        "c.json",
        json.dumps(
            {
                "model_name_or_path": tiny_model,
                "train_file": f"{d}/train.tsv",
                "validation_file": f"{d}/dev.tsv",
                "text_column": "text_a",
                "max_seq_length": 256,
            }
        ),
    )
    text = preview.main([recipe, "--split", "validation", "--num_rows", "1"])
    assert "validation: 1200 rows" in text
    assert "tokens per row: p50 75, p90 191, p99 256, max 256 (max_seq_length 256)" in text
    assert "truncated:      50 rows (4.2%)" in text and "[UNK]:          0.28% of tokens" in text
