"""Data health on small files with planted duplicates, cross-split leaks, conflicting labels and near-duplicates,
counted by hand; the --drop_* options; grouped k-fold; and `bertcls inspect` as a user runs it."""

import subprocess
import sys

import numpy as np
import pytest

from bertcls.config.recipes import parse_args
from bertcls.data.loading import load_task_data
from bertcls.training.kfold import fold_ids

from .conftest import REPO

A = "这家酒店的服务非常好，下次还来"
B = "房间太小了，隔音也很差劲"
C = "早餐种类丰富，味道不错，值得推荐"
D = "前台态度冷漠，办理入住等了很久很久"
E = "交通便利，离地铁站只有五分钟路程"
F = "价格实惠，性价比很高，推荐大家入住"
G = "床单不干净，卫生间有异味"
H = "服务员很热情，帮我们叫了出租车"
TRAIN = [("pos", A), ("pos", A), ("neg", B), ("pos", B), ("pos", C), ("neg", D), ("neg", D + "！"),
         ("pos", E), ("neg", "好"), ("pos", F)]  # fmt: skip
VALIDATION = [("pos", C), ("neg", G), ("pos", E + "。")]
TEST = [("neg", F), ("pos", A), ("neg", G), ("pos", H)]


@pytest.fixture
def files(tmp_path):
    paths = {}
    for name, rows in (("train", TRAIN), ("dev", VALIDATION), ("test", TEST)):
        paths[name] = tmp_path / f"{name}.tsv"
        paths[name].write_text("label\ttext\n" + "".join(f"{y}\t{x}\n" for y, x in rows), encoding="utf-8")
    return paths


def task_of(files, *flags):
    _, data_args, _ = parse_args(
        ["--model_name_or_path", "x", "--output_dir", "x", "--train_file", str(files["train"]),
         "--validation_file", str(files["dev"]), "--test_file", str(files["test"]), *flags]
    )  # fmt: skip
    return load_task_data(data_args, seed=1)


def test_the_report_finds_exactly_the_planted_problems(files):
    report = task_of(files).health
    train, validation, test = (report.splits[s] for s in ("train", "validation", "test"))
    # By hand: A and B each twice (2 extra rows); B with two labels; D and D+"！" near-duplicates (Jaccard 15/16
    # of their character 3-grams); "好" is 1 character; 6 pos, 4 neg.
    assert (train.rows, train.duplicate_rows, train.duplicated_texts) == (10, 2, 2)
    assert (train.conflicting_texts, train.conflicting_rows) == (1, 2)
    assert (train.near_duplicate_rows, train.short, train.long) == (2, 1, 0)
    assert train.classes == {"neg": 4, "pos": 6}
    assert (validation.duplicate_rows, validation.conflicting_texts, validation.near_duplicate_rows) == (0, 0, 0)
    assert (test.duplicate_rows, test.near_duplicate_rows) == (0, 0)
    leaks = {(x.split, x.source): (x.rows, x.texts, x.other_label, x.near_rows) for x in report.leaks}
    assert leaks == {
        ("validation", "train"): (1, 1, 0, 1),  # C exactly; E + "。" near E
        ("test", "train"): (2, 2, 1, 0),  # F (labelled neg in test, pos in train) and A
        ("test", "validation"): (1, 1, 0, 0),  # G
    }
    text = report.markdown()
    assert "| train | 10 | 2 | 1 (2) | 2 | 1 | 0 |" in text
    assert "| test | train | 2 | 2 | 1 | 0 |" in text


def test_drop_options_remove_train_rows_only_and_count_them(files, caplog):
    with caplog.at_level("WARNING", logger="bertcls.data.loading"):
        task = task_of(files, "--drop_duplicate_rows", "--drop_leaked_rows")
    # The second A goes as a duplicate (B's two rows differ in label and stay); then A, C and F leak.
    assert sorted(task.splits["train"]["text"]) == sorted([B, B, D, D + "！", E, "好"])
    assert len(task.splits["validation"]) == 3 and len(task.splits["test"]) == 4
    assert "dropped 1 rows that repeat an earlier row's text and label" in caplog.text
    assert "dropped 3 rows whose text occurs in a held-out split (1 in validation, 2 in test" in caplog.text
    assert task.health.splits["train"].duplicate_rows == 1  # B's conflicting copy, reported, not dropped
    assert all(x.rows == 0 for x in task.health.leaks if x.source == "train")
    assert "Dropped before training: 1 duplicate train rows" in task.health.markdown()


def test_grouped_kfold_keeps_identical_texts_in_one_fold():
    rng = np.random.default_rng(0)
    groups = rng.integers(0, 40, 200)  # 40 texts, most of them several times
    labels = groups % 2
    folds = fold_ids(labels, 5, seed=3, groups=groups)
    for group in np.unique(groups):
        assert len(np.unique(folds[groups == group])) == 1
    assert len(np.unique(folds)) == 5
    multi = fold_ids(np.zeros((200, 3)), 5, seed=3, multi_label=True, groups=groups)
    assert all(len(np.unique(multi[groups == g])) == 1 for g in np.unique(groups))


def test_bertcls_inspect_prints_the_report_for_flags(files, tmp_path):
    out = tmp_path / "health.md"
    done = subprocess.run(
        [sys.executable, "-m", "bertcls", "inspect", "--train_file", str(files["train"]), "--validation_file",
         str(files["dev"]), "--test_file", str(files["test"]), "--output_file", str(out)],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert "| train | 10 | 2 | 1 (2) | 2 | 1 | 0 |" in done.stdout
    assert "| pos | 6 (60.0%) | 2 (66.7%) | 2 (50.0%) |" in done.stdout
    written = out.read_text(encoding="utf-8")
    assert written.startswith("# Data health") and written.strip() in done.stdout
