"""What a run writes and when: nothing destroyed before everything is checked, legible Chinese figures that cannot
take a run down, files a teammate can read, and a model card whose code runs."""

import os
import re
import stat
import warnings

import numpy as np
import pandas as pd
import pytest

import run_classification
from bertcls.evaluation import plots
from bertcls.evaluation.outputs import RUN_FILES, clear_run
from bertcls.files import write_json

from .conftest import REPO, cli

DEMO = REPO / "bertcls" / "demo"


def demo_run(model, out, **flags) -> list[str]:
    settings = {"max_steps": 8, "max_seq_length": 32, "save_strategy": "no", "learning_rate": 5e-3, **flags}
    files = {"train_file": DEMO / "train.tsv", "validation_file": DEMO / "validation.tsv"}
    return cli(model_name_or_path=model, output_dir=out, test_file=DEMO / "test.tsv", **files, **settings)


def fails(argv, capsys) -> str:
    with pytest.raises(SystemExit) as exit_info:
        run_classification.main(argv)
    assert exit_info.value.code == 2
    return capsys.readouterr().err


@pytest.fixture(scope="module")
def finished(tiny_model, tmp_path_factory):
    out = tmp_path_factory.mktemp("finished") / "run"
    run_classification.main(demo_run(tiny_model, out))
    return out


def snapshot(folder) -> dict:
    return {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()}


@pytest.mark.slow
def test_overwrite_checks_everything_before_it_removes_anything(finished, tiny_model, capsys):
    before = snapshot(finished)
    err = fails(demo_run(tiny_model, finished, overwrite_output_dir=True, text_column="review"), capsys)
    assert "no column 'review'" in err
    assert snapshot(finished) == before  # the earlier model, results and predictions are all still there
    err = fails(demo_run(tiny_model, finished, overwrite_output_dir=True, positive_label="neutral"), capsys)
    assert "--positive_label neutral is not a label" in err and snapshot(finished) == before


@pytest.mark.slow
def test_the_folder_a_model_is_read_from_is_never_the_output(finished, capsys):
    before = snapshot(finished)
    for flags in ({"overwrite_output_dir": True}, {"do_eval": True}):
        err = fails(demo_run(str(finished), finished, **flags), capsys)
        assert "is the folder the model or tokenizer is read from" in err
    assert snapshot(finished) == before


def test_clearing_a_run_removes_its_trainer_state(tmp_path):
    for name in ("trainer_state.json", "all_results.json", "notes.txt"):
        (tmp_path / name).write_text("{}")
    clear_run(str(tmp_path))
    assert sorted(os.listdir(tmp_path)) == ["notes.txt"] and "trainer_state.json" in RUN_FILES


def test_results_are_readable_by_the_group_under_the_umask(tmp_path):
    previous = os.umask(0o022)
    try:
        write_json(str(tmp_path / "r.json"), {"a": 1})
    finally:
        os.umask(previous)
    assert stat.S_IMODE(os.stat(tmp_path / "r.json").st_mode) == 0o644


TNEWS_NAMES = [
    "故事",
    "文化",
    "娱乐",
    "体育",
    "财经",
    "房产",
    "汽车",
    "教育",
    "科技",
    "军事",
    "旅游",
    "国际",
    "股票",
    "农业",
    "电竞",
]


def test_chinese_label_names_draw_with_real_glyphs(tmp_path):
    matrix = np.random.default_rng(0).integers(0, 20, (len(TNEWS_NAMES), len(TNEWS_NAMES)))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        plots.plot_confusion(str(tmp_path / "c.png"), matrix, TNEWS_NAMES, "验证集: 行 = 真实标签")
        plots.plot_learning_curve(str(tmp_path / "l.png"), [{"step": 1, "loss": 0.7}], "accuracy")
    missing = [str(w.message) for w in caught if "missing from font" in str(w.message)]
    assert not missing, missing[:2]
    assert (tmp_path / "c.png").read_bytes()[:4] == b"\x89PNG"


def test_a_thousand_class_confusion_matrix_shows_the_most_confused(tmp_path):
    n = 1000
    rng = np.random.default_rng(0)
    matrix = np.diag(rng.integers(5, 10, n))
    matrix[7, 3] = matrix[500, 999] = 40  # the classes with the most errors
    keep = plots.shown_classes(matrix)
    assert len(keep) == plots.MOST_CONFUSED and {3, 7, 500, 999} <= set(keep.tolist())
    plots.plot_confusion(str(tmp_path / "c.png"), matrix, [f"类{i}" for i in range(n)], "test")
    assert (tmp_path / "c.png").stat().st_size > 1000


@pytest.mark.slow
def test_a_failing_figure_is_skipped_and_the_run_finishes(tiny_model, tmp_path, monkeypatch, caplog):
    def broken(*args):
        raise MemoryError("out of memory")

    monkeypatch.setattr(plots, "plot_confusion", broken)
    out = tmp_path / "run"
    results = run_classification.main(demo_run(tiny_model, out))
    assert "test_accuracy" in results
    for name in ("all_results.json", "predictions.csv", "test_results.json", "README.md", "learning_curve.png"):
        assert (out / name).exists(), name
    assert "could not draw the test confusion matrix (MemoryError: out of memory); skipped" in caplog.text


def card_code(folder) -> str:
    card = (folder / "README.md").read_text()
    code = re.search(r"```python\n(.*?)```", card, re.S).group(1)
    return code.replace("path/to/this/folder", str(folder))


@pytest.mark.slow
@pytest.mark.parametrize("head", [{}, {"head": "mlp", "pooling": "mean"}], ids=["stock", "custom"])
def test_the_model_cards_code_loads_the_trained_model(head, tiny_model, tmp_path, capsys):
    out = tmp_path / "run"
    run_classification.main(demo_run(tiny_model, out, max_steps=30, **head))
    card = (out / "README.md").read_text()
    assert "base_model" not in card.split("---")[1]  # a local path is no Hub id
    assert str(tiny_model) not in card.split("## Recipe")[0]
    capsys.readouterr()
    exec(card_code(out), {})
    printed = capsys.readouterr().out
    # what the card's code prints for its example text is what the trained model says, as bertcls.shipping.predict says it
    from bertcls.model.classifier import TrainedClassifier

    classifier = TrainedClassifier.load(str(out))
    probs = dict(zip(classifier.labels.names, classifier.predict_texts(["这家酒店的服务很好"])[0]))
    best = max(probs, key=probs.get)
    if head:
        assert "pipeline(" not in card_code(out)
        shown = {k: float(v) for k, v in re.findall(r"'(\w+)': ([\d.]+)", printed)}
        assert shown == pytest.approx(probs, abs=1e-4), printed
    else:
        label, score = re.search(r"'label': '(\w+)', 'score': ([\d.]+)", printed).groups()
        assert label == best and float(score) == pytest.approx(probs[best], abs=1e-4), printed


@pytest.mark.slow
def test_predict_scores_with_the_label_column_of_training(tiny_model, tmp_path, capsys):
    rows = pd.read_csv(DEMO / "train.tsv", sep="\t", quoting=3).rename(columns={"label": "sentiment"})
    rows.to_csv(tmp_path / "train.tsv", sep="\t", index=False)
    out = tmp_path / "run"
    run_classification.main(
        cli(model_name_or_path=tiny_model, train_file=tmp_path / "train.tsv", label_column="sentiment")
        + cli(output_dir=out, max_steps=4, max_seq_length=32, save_strategy="no")
    )
    from bertcls.shipping import predict

    capsys.readouterr()
    predict.main(cli(model_name_or_path=out, input_file=tmp_path / "train.tsv", output_file=tmp_path / "p.csv"))
    assert "scored 800 of 800 rows with known gold labels" in capsys.readouterr().out


def test_truncation_errors_name_the_file_and_line(tiny_model, write, capsys):
    long = "很" * 80
    train = write("pairs.tsv", "a\tb\tlabel\n短\t短\t0\n长\t长\t1\n" + f"{long}\t短\t0\n短\t短\t1\n")
    flags = cli(model_name_or_path=tiny_model, train_file=train, text_column="a", text_pair_column="b")
    err = fails(
        flags + cli(output_dir=os.path.dirname(train) + "/o", truncation="only_second", max_seq_length=32), capsys
    )
    assert re.search(r"cannot fit .*pairs.tsv line 4 into 32 tokens", err), err
    # the held-out validation split is shuffled: the line is the file's line wherever the row lands
    err = fails(flags + cli(output_dir=os.path.dirname(train) + "/o", truncation="only_second", max_seq_length=32)
                + cli(validation_split_percentage=50, seed=3), capsys)  # fmt: skip
    assert "pairs.tsv line 4" in err


def test_many_class_titles_fail_before_anything_is_written(tiny_model, tmp_path, capsys):
    from .conftest import shared

    out = tmp_path / "o"
    err = fails(
        cli(model_name_or_path=tiny_model, train_file=shared("thucnews_titles", "dev.txt"), output_dir=out), capsys
    )
    assert "looks like text read as labels" in err and not out.exists()
