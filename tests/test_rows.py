"""Every per-row output names the row's input file and line (errors_<split>.csv, predictions.csv,
oof_predictions.csv, label_issues.csv) and keeps the file's own column names: checked against the file's own
lines, after dropped rows and for a validation split held out from train."""

import numpy as np
import pandas as pd
import pytest

import run_classification
from bertcls.model.classifier import TrainedClassifier

from .conftest import cli
from .test_analysis import keyword_rows


def lines_of(path) -> list[str]:
    """The file's lines as an editor numbers them: lines_of(p)[n] is line n (line 1 is the header)."""
    with open(path, encoding="utf-8") as f:
        return [None, *f.read().split("\n")]


def write_task(folder, train_rows=160, test_rows=60):
    """review<TAB>sentiment files (not the default column names), train with two empty-text rows that
    --drop_invalid_rows drops, so positions in the split and lines of the file part ways."""
    train = keyword_rows(train_rows // 2, train_rows // 2, 1).rename(columns={"text": "review", "label": "sentiment"})
    train = train[["review", "sentiment"]]
    train.loc[3, "review"] = ""
    train.loc[10, "review"] = ""
    test = keyword_rows(test_rows // 2, test_rows // 2, 2).rename(columns={"text": "review", "label": "sentiment"})
    paths = folder / "train.tsv", folder / "test.tsv"
    train.to_csv(paths[0], sep="\t", index=False)
    test[["review", "sentiment"]].to_csv(paths[1], sep="\t", index=False)
    return paths


def flags(model, train, test, out, **extra):
    return cli(model_name_or_path=model, train_file=train, test_file=test, output_dir=out, text_column="review") + cli(
        label_column="sentiment", drop_invalid_rows=True, max_seq_length=24, save_strategy="no", **extra
    )


def check_against_file(frame: pd.DataFrame, path) -> None:
    """Each row's own columns are exactly the file line it names."""
    lines = lines_of(path)
    assert (frame["source_file"] == str(path)).all()
    for _, row in frame.iterrows():
        assert lines[int(row["source_line"])] == f"{row['review']}\t{row['sentiment']}"


def test_errors_and_predictions_name_the_file_line_after_dropped_rows_and_for_a_held_out_validation(
    tiny_model, tmp_path
):
    train, test = write_task(tmp_path)
    out = tmp_path / "run"
    run_classification.main(
        flags(tiny_model, train, test, out, validation_split_percentage=25, max_steps=3, learning_rate=1e-3)
    )
    validation_errors = pd.read_csv(out / "errors_validation.csv", keep_default_na=False)
    assert len(validation_errors) > 5
    assert list(validation_errors.columns[:2]) == ["review", "sentiment"]  # the file's own names
    check_against_file(validation_errors, train)  # held out from train: rows of the train file
    # Some held-out rows come after a dropped line: their line is not their position + 2.
    assert (validation_errors["source_line"] > 13).any()
    test_errors = pd.read_csv(out / "errors_test.csv", keep_default_na=False)
    check_against_file(test_errors, test)
    predictions = pd.read_csv(out / "predictions.csv", keep_default_na=False)
    check_against_file(predictions, test)
    assert list(predictions["source_line"]) == list(range(2, len(predictions) + 2))
    analysis = (out / "analysis.md").read_text()
    assert "| where in train.tsv |" in analysis and "| where in test.tsv |" in analysis


@pytest.mark.slow
def test_kfold_outputs_name_the_train_line_and_each_fold_model_predicted_its_own_rows(tiny_model, tmp_path):
    train, test = write_task(tmp_path)
    out = tmp_path / "run"
    run_classification.main(
        flags(tiny_model, train, test, out, kfold=3, find_label_issues=True, validation_split_percentage=0)
        + cli(max_steps=4, learning_rate=1e-3, eval_strategy="no")
    )
    oof = pd.read_csv(out / "oof_predictions.csv", keep_default_na=False)
    assert list(oof.columns[:3]) == ["review", "sentiment", "fold"]  # the file's own names, as everywhere
    assert len(oof) == 158  # 160 rows, 2 dropped
    check_against_file(oof, train)
    issues = pd.read_csv(out / "label_issues.csv", keep_default_na=False)
    check_against_file(issues, train)
    assert sorted(issues["source_line"]) == sorted(oof["source_line"])
    # The out-of-fold probabilities of fold k's rows are those of fold k's own model (saved in fold_k/), and of
    # no other fold's model.
    names = [c.removeprefix("prob_") for c in oof.columns if c.startswith("prob_")]
    models = [TrainedClassifier.load(str(out / f"fold_{k}")) for k in range(3)]
    for k in range(3):
        held = oof[oof["fold"] == k]
        for j, model in enumerate(models):
            probs = model.predict_texts(list(held["review"]))
            columns = [f"prob_{model.labels.names[i]}" for i in range(len(names))]
            close = np.allclose(probs, held[columns].to_numpy(), atol=2e-6)
            assert close == (j == k), (k, j)
