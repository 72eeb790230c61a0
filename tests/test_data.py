"""Loading every supported format into text / text_pair / label, with the real datasets and bad inputs."""

import json
import logging

import pytest

from bertcls.config.arguments import DataArguments
from bertcls.data.loading import load_task_data
from bertcls.errors import UserError

from .conftest import shared


def load(**kwargs):
    return load_task_data(DataArguments(**kwargs), seed=42)


def test_chnsenticorp_loads_every_row():
    d = shared("chnsenticorp")
    task = load(
        train_file=f"{d}/train.tsv", validation_file=f"{d}/dev.tsv", test_file=f"{d}/test.tsv", text_column="text_a"
    )
    assert {k: len(v) for k, v in task.splits.items()} == {"train": 9600, "validation": 1200, "test": 1200}
    assert task.labels.names == ("0", "1") and not task.is_pair
    # quoting is off: texts keep their `"` characters (55 train rows hold one)
    assert sum('"' in t for t in task.splits["train"]["text"]) == 55
    assert task.raw_test.column_names == ["label", "text_a"] and len(task.raw_test) == 1200
    labels = task.splits["train"]["label"]
    assert (labels.count(0), labels.count(1)) == (4801, 4799)


def test_lcqmc_dev_loads_as_pairs():
    task = load(
        train_file=shared("lcqmc", "dev.tsv"),
        text_column="text_a",
        text_pair_column="text_b",
        validation_split_percentage=0,
    )
    train = task.splits["train"]
    assert len(train) == 8802 and task.is_pair
    assert train.column_names == ["text", "text_pair", "label", "source_row"]
    assert train[0] == {
        "text": "开初婚未育证明怎么弄？",
        "text_pair": "初婚未育情况证明怎么开？",
        "label": 1,
        "source_row": 0,
    }


def test_tnews_labels_with_gaps_map_to_contiguous_ids_and_keep_their_names():
    d = shared("tnews_fewclue")
    task = load(
        train_file=f"{d}/train_few_all.json",
        validation_file=f"{d}/dev_few_all.json",
        test_file=f"{d}/test_public.json",
        text_column="sentence",
    )
    names = [str(n) for n in range(100, 117) if n not in (105, 111)]
    assert list(task.labels.names) == names
    assert task.labels.label2id["106"] == 5 and task.labels.id2label[14] == "116"
    assert sorted(set(task.splits["train"]["label"])) == list(range(15))
    assert {k: len(v) for k, v in task.splits.items()} == {"train": 1185, "validation": 1098, "test": 2010}


def test_headerless_txt_and_a_stratified_seeded_validation_split():
    path = shared("thucnews_titles", "dev.txt")  # title<TAB>label_id, no header
    first = load(train_file=path, column_names=["text", "label"])
    again = load(train_file=path, column_names=["text", "label"])
    assert (len(first.splits["train"]), len(first.splits["validation"])) == (9000, 1000)
    assert sorted(first.splits["validation"]["label"]) == sorted(sum(([i] * 100 for i in range(10)), []))
    assert first.splits["validation"]["text"] == again.splits["validation"]["text"]


def test_smp2020_int_labels_keep_numeric_order():
    task = load(
        train_file=shared("smp2020_ewect_usual", "dev.tsv"), text_column="text_a", validation_split_percentage=0
    )
    assert task.labels.names == ("0", "1", "2", "3", "4", "5")


@pytest.mark.parametrize(
    "name,content",
    [
        ("d.csv", 'text,label\n很好,pos\n很差,neg\n"有,逗号",pos\n'),
        ("d.tsv", "label\ttext\npos\t很好\nneg\t很差\npos\t有,逗号\n"),
        (
            "d.jsonl",
            '{"text": "很好", "label": "pos"}\n{"text": "很差", "label": "neg"}\n{"text": "有,逗号", "label": "pos"}\n',
        ),
        (
            "d.json",
            json.dumps(
                [
                    {"text": "很好", "label": "pos"},
                    {"text": "很差", "label": "neg"},
                    {"text": "有,逗号", "label": "pos"},
                ]
            ),
        ),
        ("d.txt", "pos\t很好\nneg\t很差\npos\t有,逗号\n"),
        ("h.txt", "label\ttext\npos\t很好\nneg\t很差\npos\t有,逗号\n"),
    ],
)
def test_every_file_format(write, name, content):
    task = load(train_file=write(name, content), validation_split_percentage=0)
    assert task.splits["train"]["text"] == ["很好", "很差", "有,逗号"]
    assert task.labels.names == ("neg", "pos") and task.splits["train"]["label"] == [1, 0, 1]


def test_parquet(tmp_path):
    import pandas as pd

    path = tmp_path / "d.parquet"
    pd.DataFrame({"text": ["好", "差"], "label": [1, 0]}).to_parquet(path)
    task = load(train_file=str(path), validation_split_percentage=0)
    assert task.splits["train"]["label"] == [1, 0] and task.labels.names == ("0", "1")


def test_digit_texts_stay_texts_and_na_is_not_missing(write):
    task = load(train_file=write("d.csv", "text,label\n007,a\nNA,b\nnull,a\n"), validation_split_percentage=0)
    assert task.splits["train"]["text"] == ["007", "NA", "null"]


def test_explicit_label_names_set_the_order_and_admit_labels_train_lacks(write):
    train = write("train.csv", "text,label\n好,pos\n差,neg\n")
    test = write("test.csv", "text,label\n一般,neutral\n")
    task = load(train_file=train, test_file=test, class_names=["pos", "neutral", "neg"], validation_split_percentage=0)
    assert task.labels.names == ("pos", "neutral", "neg") and task.splits["test"]["label"] == [1]


def test_label_unseen_in_train_is_named(write):
    train = write("train.csv", "text,label\n好,pos\n差,neg\n")
    dev = write("dev.csv", "text,label\n好,pos\n一般,neutral\n一般般,neutral\n")
    with pytest.raises(UserError, match=r"unknown label 'neutral' in 2 rows \(.*dev.csv lines 3, 4\)") as error:
        load(train_file=train, validation_file=dev)
    assert "--class_names" in error.value.fix


def test_invalid_rows_are_listed_or_dropped_and_counted(write, caplog):
    train = write("train.tsv", "label\ttext\npos\t好\nneg\t  \n\t一般\npos\t很好\nneg\t差\n")
    with pytest.raises(
        UserError,
        match=r"empty text in column 'text' in 1 row \(.*train.tsv line 3\); "
        r"missing label in column 'label' in 1 row \(.*train.tsv line 4\)",
    ) as error:
        load(train_file=train, validation_split_percentage=0)
    assert "--drop_invalid_rows" in error.value.fix
    with caplog.at_level(logging.WARNING, logger="bertcls"):
        task = load(train_file=train, validation_split_percentage=0, drop_invalid_rows=True)
    assert task.splits["train"]["text"] == ["好", "很好", "差"] and task.dropped["train"] == 2
    assert "dropped 2 rows" in caplog.text


def test_test_rows_are_never_dropped(write):
    train = write("train.csv", "text,label\n好,pos\n差,neg\n")
    test = write("test.csv", "text\n好\n\n差\n")
    with pytest.raises(UserError, match="never dropped"):
        load(train_file=train, test_file=test, drop_invalid_rows=True, validation_split_percentage=0)


def test_unlabelled_test_file(write):
    train = write("train.csv", "text,label\n好,pos\n差,neg\n")
    test = write("test.csv", "text\n好\n差\n")
    task = load(train_file=train, test_file=test, validation_split_percentage=0)
    assert task.splits["test"].column_names == ["text", "source_row"] and len(task.raw_test) == 2


def test_max_samples_take_a_sample_of_that_size():
    d = shared("chnsenticorp")
    task = load(
        train_file=f"{d}/train.tsv",
        test_file=f"{d}/test.tsv",
        text_column="text_a",
        validation_split_percentage=0,
        max_train_samples=10,
        max_predict_samples=7,
    )
    assert len(task.splits["train"]) == 10 and len(task.splits["test"]) == 7 and len(task.raw_test) == 7
    # the predicted raw rows are the sampled ones, in file order
    assert task.raw_test["text_a"][:] == task.splits["test"]["text"][:]


@pytest.mark.parametrize(
    "content,flags,message",
    [
        ("", {}, "data file is empty"),
        ("   \n\n", {}, "data file is empty"),
        ("text,label\n", {}, "has a header line but no data rows"),
        (
            "sent,label\n好,1\n差,0\n",
            {},
            r"no column 'text' \(--text_column\); its columns are \['sent', 'label'\]",
        ),
        ("text,y\n好,1\n差,0\n", {}, r"no column 'label' \(--label_column\); its columns are \['text', 'y'\]"),
        ("text,label\n好,1\n差,0\n", {"text_pair_column": "text_b"}, r"no column 'text_b' \(--text_pair_column\)"),
        ("text\tlabel\n好\t1\n差\t0\n", {}, r"found one column 'text\\tlabel': the file looks separated by tabs"),
        ("text,label\n好,1\n差,1\n", {}, r"holds only one class \(\['1'\]\)"),
    ],
)
def test_bad_files_get_one_clear_error(write, content, flags, message):
    with pytest.raises(UserError, match=message):
        load(train_file=write("train.csv", content), **flags)


def test_missing_file_and_unsupported_type(write):
    with pytest.raises(UserError, match="data file not found: nowhere.tsv"):
        load(train_file="nowhere.tsv")
    with pytest.raises(UserError, match="unsupported file type '.xlsx'"):
        load(train_file=write("d.xlsx", "x"))


def test_gbk_file_is_detected_and_readable_with_encoding(write):
    path = write("gbk.tsv", "label\ttext\n1\t这家酒店很好\n0\t服务太差了\n", encoding="gbk")
    with pytest.raises(UserError, match=r"gbk.tsv is not valid utf-8 .* it decodes as gbk") as error:
        load(train_file=path)
    assert error.value.fix == "add --encoding gbk"
    task = load(train_file=path, encoding="gbk", validation_split_percentage=0)
    assert task.splits["train"]["text"] == ["这家酒店很好", "服务太差了"]


def test_excel_byte_order_mark_stays_out_of_the_column_name(write):
    path = write("bom.csv", "\ufefftext,label\n好,1\n差,0\n")
    assert load(train_file=path, validation_split_percentage=0).splits["train"]["text"] == ["好", "差"]


def test_a_header_line_under_column_names_is_refused(write):
    train = write("train.tsv", "label\ttext_a\npos\t好\nneg\t差\n")
    with pytest.raises(UserError, match=r"line 1 \(label, text_a\) looks like a header line.*'label'"):
        load(train_file=train, column_names=["label", "text"])


def test_titles_read_as_labels_stop_the_run():
    """THUCNews' header-less text<TAB>label read as a .txt file, whose default is label<TAB>text."""
    with pytest.raises(UserError, match=r"holds 9,99\d different labels in 10,000 rows.*--column_names text label"):
        load(train_file=shared("thucnews_titles", "dev.txt"))
    task = load(train_file=shared("thucnews_titles", "dev.txt"), column_names=["text", "label"])
    assert len(task.labels) == 10
    assert len(load(train_file=shared("thucnews_titles", "dev.txt"), allow_many_classes=True).labels) > 9000


def test_distinct_label_strings_stay_distinct(write):
    train = write("train.tsv", "label\ttext\n007\t甲\n7\t乙\n007\t丙\n07\t丁\n")
    task = load(train_file=train, validation_split_percentage=0)
    assert task.labels.names == ("007", "07", "7")  # numeric order, ties in string order


def test_a_pandas_written_list_cell_is_a_multi_label_list(write):
    frame = "text,label\n体育新闻,\"['体育', '财经']\"\n财经新闻,['财经']\n娱乐新闻,\"['娱乐']\"\n"
    task = load(train_file=write("train.csv", frame), multi_label=True, validation_split_percentage=0)
    assert task.labels.names == ("体育", "娱乐", "财经")
    first = task.splits["train"][0]["label"]
    assert sum(first) == 2 and first[task.labels.label2id["体育"]] == 1.0


def test_a_missing_file_named_in_a_recipe_says_where_relative_paths_start(write, tmp_path):
    from bertcls.config.recipes import parse_args

    recipe = write("r.json", json.dumps({"model_name_or_path": "m", "train_file": "data/train.tsv"}))
    _, data_args, _ = parse_args([recipe, "--output_dir", str(tmp_path / "o")])
    with pytest.raises(UserError) as error:
        load_task_data(data_args, seed=1)
    message = str(error.value)
    assert f"data file not found: {tmp_path / 'data' / 'train.tsv'}" in message
    assert "in a recipe at the recipe's folder" in message
