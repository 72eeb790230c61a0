"""--hp_search: a search on loss minimises it, and best_recipe.json reproduces the best trial's score exactly,
with `seed` searched and the validation split held out from train."""

import json

import pandas as pd
import pytest

import run_classification

from .test_analysis import DEMO

pytestmark = pytest.mark.slow


def test_a_loss_search_minimises_and_its_best_recipe_reproduces_the_trial_with_seed_searched(tiny_model, tmp_path):
    recipe = {
        "model_name_or_path": tiny_model,
        "train_file": str(DEMO / "train.tsv"),  # no validation file: 20% of train is held out
        "validation_split_percentage": 20,
        "max_seq_length": 24,
        "max_train_samples": 200,
        "learning_rate": 5e-3,
        "num_train_epochs": 1,
        "output_dir": str(tmp_path / "search"),
        "metric_for_best_model": "loss",
        "hp_search": "optuna",
        "hp_trials": 4,
        "hp_space": {"seed": {"choices": [1, 2, 3, 4]}, "warmup_steps": {"choices": [0.0, 0.3]}},
        "seed": 7,
    }
    (tmp_path / "search.json").write_text(json.dumps(recipe))
    results = run_classification.main([str(tmp_path / "search.json")])
    trials = pd.read_csv(tmp_path / "search" / "hp_trials.csv")
    complete = trials[trials["state"] == "complete"]
    assert complete["eval_loss"].nunique() > 1  # the trials differ, so min and max are different answers
    assert results["hp_best_objective"] == pytest.approx(complete["eval_loss"].min())
    best_trial = complete.loc[complete["eval_loss"].idxmin()]
    final = run_classification.main([str(tmp_path / "search" / "best_recipe.json")])
    # The same model, trained on the same rows in the same order, scored on the same held-out rows.
    assert final["eval_loss"] == pytest.approx(best_trial["eval_loss"], rel=1e-6)
    best = json.loads((tmp_path / "search" / "best_recipe.json").read_text())
    assert best["seed"] == best_trial["seed"] and best["validation_split_seed"] == 7
