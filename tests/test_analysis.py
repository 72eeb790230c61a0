"""Know your data: the errors files, analysis.md, label issues, tuned thresholds and the hyperparameter search,
each checked against an independent reading of what the run wrote."""

import json

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import f1_score, roc_auc_score, top_k_accuracy_score

import run_classification
from bertcls.evaluation import thresholds
from bertcls.shipping import predict

from .conftest import REPO, cli, shared

pytestmark = pytest.mark.slow

DEMO = REPO / "bertcls" / "demo"


@pytest.fixture(scope="module")
def demo_run(tiny_model, tmp_path_factory):
    out = tmp_path_factory.mktemp("analysis") / "run"
    files = {
        "train_file": DEMO / "train.tsv",
        "validation_file": DEMO / "validation.tsv",
        "test_file": DEMO / "test.tsv",
    }
    results = run_classification.main(
        cli(model_name_or_path=tiny_model, output_dir=out, num_train_epochs=2, learning_rate=5e-3, **files)
        + cli(max_seq_length=32, save_strategy="no", seed=1)
    )
    return out, results


def test_the_errors_file_holds_exactly_the_misclassified_rows(demo_run):
    out, _ = demo_run
    predictions = pd.read_csv(out / "predictions.csv")
    errors = pd.read_csv(out / "errors_test.csv")
    wrong = predictions[predictions["prediction"] != predictions["label"]]
    assert len(errors) == len(wrong) > 0
    assert sorted(errors["source_line"]) == sorted(wrong.index + 2)  # line 1 of test.tsv is its header
    assert list(errors.columns[:2]) == ["label", "text"]  # the file's own columns first
    by_line = predictions.set_index(predictions.index + 2)
    for _, row in errors.iterrows():
        assert row["text"] == by_line.loc[row["source_line"], "text"] and row["gold"] == row["label"]
        assert row["predicted"] == by_line.loc[row["source_line"], "prediction"]
        assert row["confidence"] == pytest.approx(by_line.loc[row["source_line"], "score"], abs=1e-5)
    assert errors["confidence"].is_monotonic_decreasing  # most confident mistakes first
    analysis = (out / "analysis.md").read_text()
    assert f"{len(wrong)} of 200 rows wrong, all in errors_test.csv" in analysis
    assert "| negative | 400 | 100 | 100 |" in analysis  # rows per class in train, validation and test


def test_missing_classes_top_k_and_confused_pairs_on_tnews(tiny_model, tmp_path):
    d = shared("tnews_fewclue")
    dev = pd.read_json(f"{d}/dev_few_all.json", lines=True)
    missing = dev["label"].value_counts().index[-1]  # validation without its rarest class
    dev[dev["label"] != missing].to_json(tmp_path / "dev.json", orient="records", lines=True, force_ascii=False)
    out = tmp_path / "run"
    results = run_classification.main(
        cli(model_name_or_path=tiny_model, train_file=f"{d}/train_few_all.json", validation_file=tmp_path / "dev.json")
        + cli(test_file=f"{d}/test_public.json", text_column="sentence", output_dir=out, max_steps=20)
        + cli(max_seq_length=32, save_strategy="no", learning_rate=5e-3)
    )
    frame = pd.read_csv(out / "predictions.csv", dtype={"label": str})
    names = [c.removeprefix("prob_") for c in frame.columns if c.startswith("prob_")]
    gold = [names.index(str(g)) for g in frame["label"]]
    probs = frame[[f"prob_{n}" for n in names]].to_numpy()
    for k in (3, 5):
        expected = top_k_accuracy_score(gold, probs, k=k, labels=range(len(names)))
        assert results[f"test_top{k}_accuracy"] == pytest.approx(expected, abs=1e-3)
    analysis = (out / "analysis.md").read_text()
    assert f"have no validation rows** ({missing})" in analysis
    assert "## Most confused on test" in analysis


def test_label_issues_rank_the_flipped_rows_first(tiny_model, tmp_path):
    """The keyword task (好 or 坏 decides), 12 of its 240 labels flipped on purpose."""
    rng = np.random.default_rng(0)
    rows = []
    for i in range(240):
        label = ["neg", "pos"][i % 2]
        text = "".join(rng.choice(FILLER, 6)) + ("好" if label == "pos" else "坏") + "".join(rng.choice(FILLER, 6))
        rows.append({"text": text, "label": label})
    flipped = set(rng.choice(240, 12, replace=False).tolist())
    for i in flipped:
        rows[i]["label"] = "neg" if rows[i]["label"] == "pos" else "pos"
    pd.DataFrame(rows).to_csv(tmp_path / "train.csv", index=False)
    out = tmp_path / "run"
    results = run_classification.main(
        cli(model_name_or_path=tiny_model, train_file=tmp_path / "train.csv", output_dir=out, kfold=3)
        + cli(find_label_issues=True, num_train_epochs=10, learning_rate=1e-2, max_seq_length=24, save_strategy="no")
        + cli(eval_strategy="no", per_device_train_batch_size=16, validation_split_percentage=0)
    )
    assert results["oof_accuracy"] > 0.85  # the task was learned, flipped rows aside
    issues = pd.read_csv(out / "label_issues.csv")
    assert len(issues) == 240 and issues["label_quality"].is_monotonic_increasing
    is_flipped = (issues["source_line"] - 2).isin(flipped)  # line 2 of train.csv is row 0
    # the flipped rows rank above the clean ones: an AUROC of the ranking near 1 (chance: 0.5)
    assert roc_auc_score(is_flipped, -issues["label_quality"]) > 0.9
    assert is_flipped.head(24).sum() >= 9  # most of the 12 within the first 10% (chance: 1.2)
    flagged = issues[issues["label_issue"]]
    assert (flagged["source_line"] - 2).isin(flipped).mean() >= 0.7  # cleanlab's verdicts are mostly right
    first = issues.iloc[0]
    assert first["suggested_label"] != first["given_label"] and first["text"] == rows[first["source_line"] - 2]["text"]
    assert "cleanlab flags" in (out / "analysis.md").read_text()


FILLER = list("的一是在不了有和人这中大为上个国我以要他时来用们生到作地于出就分对成会可主发年动同工也能下过")


def keyword_rows(positives: int, negatives: int, seed: int) -> pd.DataFrame:
    """A task a tiny model learns in a few steps: 好 in the middle of a positive text, 坏 in a negative one."""
    rng = np.random.default_rng(seed)
    rows = []
    for label, count, key in (("positive", positives, "好"), ("negative", negatives, "坏")):
        for _ in range(count):
            rows.append(
                {"label": label, "text": "".join(rng.choice(FILLER, 8)) + key + "".join(rng.choice(FILLER, 8))}
            )
    return pd.DataFrame(rows).sample(frac=1, random_state=seed).reset_index(drop=True)


@pytest.fixture(scope="module")
def tuned_run(tiny_model, tmp_path_factory):
    """An imbalanced task (about 1 positive to 5 negatives) trained briefly: at 0.5 the model predicts no positive
    at all, at a tuned threshold it separates the classes. --tune_threshold picks it on the validation rows."""
    folder = tmp_path_factory.mktemp("tuned")
    for name, positives, negatives, seed in (("train", 60, 340, 1), ("dev", 20, 80, 2), ("test", 50, 150, 3)):
        keyword_rows(positives, negatives, seed).to_csv(folder / f"{name}.tsv", sep="\t", index=False)
    seen = []
    original = thresholds.tune

    def recording(probs, references, decision, metric):
        seen.append(len(references))
        return original(probs, references, decision, metric)

    thresholds.tune = recording
    try:
        out = folder / "run"
        results = run_classification.main(
            cli(model_name_or_path=tiny_model, train_file=folder / "train.tsv", validation_file=folder / "dev.tsv")
            + cli(test_file=folder / "test.tsv", output_dir=out, tune_threshold=True, num_train_epochs=2)
            + cli(learning_rate=1e-2, max_seq_length=32, save_strategy="no", eval_strategy="no", seed=2)
        )
    finally:
        thresholds.tune = original
    return folder, out, results, seen


def test_the_threshold_is_tuned_on_validation_only_and_is_the_best_there(tuned_run):
    folder, out, results, seen = tuned_run
    assert seen == [100]  # the 20 + 80 validation rows; never the 200 test rows
    threshold = json.loads((out / "config.json").read_text())["bertcls_preprocessing"]["decision_threshold"]
    assert threshold == results["tuned_threshold"] and threshold != 0.5
    # independently: on the validation rows, no candidate threshold beats the chosen one (sklearn's macro-F1)
    dev = pd.read_csv(folder / "dev.tsv", sep="\t", quoting=3)
    predict.main(cli(model_name_or_path=out, input_file=folder / "dev.tsv", output_file=folder / "dev_pred.csv"))
    p_pos = pd.read_csv(folder / "dev_pred.csv")["prob_positive"].to_numpy()
    gold = (dev["label"] == "positive").to_numpy()
    f1 = {t: f1_score(gold, p_pos >= t, average="macro") for t in np.append(np.unique(p_pos), 1.1)}  # every cut
    assert f1_score(gold, p_pos >= threshold, average="macro") == pytest.approx(max(f1.values()), abs=1e-6)
    assert results["eval_f1_macro_at_tuned_threshold"] == pytest.approx(max(f1.values()), abs=1e-6)
    assert "--tune_threshold chose" in (out / "analysis.md").read_text()


def test_predict_and_eval_only_runs_use_the_stored_threshold(tuned_run, tmp_path):
    folder, out, results, _ = tuned_run
    threshold = results["tuned_threshold"]
    predict.main(cli(model_name_or_path=out, input_file=folder / "test.tsv", output_file=tmp_path / "p.csv"))
    again = pd.read_csv(tmp_path / "p.csv")
    reference = pd.read_csv(out / "predictions.csv")
    assert (again["prediction"] == reference["prediction"]).all()
    assert (again["prediction"] == np.where(again["prob_positive"] >= threshold, "positive", "negative")).all()
    between = ((again["prob_positive"] - threshold) * (again["prob_positive"] - 0.5) < 0).sum()
    assert between > 0  # rows the tuned threshold decides differently from argmax
    predict.main(
        cli(model_name_or_path=out, input_file=folder / "test.tsv", output_file=tmp_path / "argmax.csv")
        + cli(decision_threshold=0.5)
    )
    assert (pd.read_csv(tmp_path / "argmax.csv")["prediction"] != reference["prediction"]).sum() == between
    evaluated = run_classification.main(
        cli(model_name_or_path=out, do_predict=True, test_file=folder / "test.tsv", output_dir=tmp_path / "e")
    )
    assert evaluated["test_f1_macro"] == pytest.approx(results["test_f1_macro"])


def test_a_three_trial_search_writes_its_table_and_a_best_recipe_that_runs(tiny_model, tmp_path):
    recipe = {
        "model_name_or_path": tiny_model,
        "train_file": str(DEMO / "train.tsv"),
        "validation_file": str(DEMO / "validation.tsv"),
        "max_seq_length": 24,
        "max_train_samples": 200,
        "output_dir": str(tmp_path / "search"),
        "hp_search": "optuna",
        "hp_trials": 3,
        "hp_space": {"learning_rate": {"low": 1e-3, "high": 1e-2, "log": True}, "weight_decay": {"choices": [0, 0.1]}},
    }
    (tmp_path / "search.json").write_text(json.dumps(recipe))
    results = run_classification.main([str(tmp_path / "search.json")])
    trials = pd.read_csv(tmp_path / "search" / "hp_trials.csv")
    assert len(trials) == 3 and results["hp_trials"] == 3
    assert {"trial", "state", "eval_f1_macro", "learning_rate", "weight_decay"} <= set(trials.columns)
    assert trials["learning_rate"].between(1e-3, 1e-2).all() and set(trials["weight_decay"]) <= {0, 0.1}
    complete = trials[trials["state"] == "complete"]
    assert results["hp_best_objective"] == pytest.approx(complete["eval_f1_macro"].max())
    best = json.loads((tmp_path / "search" / "best_recipe.json").read_text())
    assert "hp_search" not in best and best["learning_rate"] == pytest.approx(results["hp_best_learning_rate"])
    final = run_classification.main([str(tmp_path / "search" / "best_recipe.json")])
    assert (tmp_path / "search" / "best" / "model.safetensors").exists() and "eval_f1_macro" in final
