"""--hp_search optuna: the Trainer's own hyperparameter_search, over a space the recipe gives in `hp_space`.

    "hp_space": {
      "learning_rate": {"low": 1e-5, "high": 1e-4, "log": true},
      "num_train_epochs": {"choices": [2, 3, 4]},
      "warmup_steps": {"low": 0.0, "high": 0.2},
      "per_device_train_batch_size": {"choices": [16, 32]}
    }

Each trial trains a fresh model (model_init) and is scored on the validation split by --metric_for_best_model
(default f1_macro; loss is minimised, every other metric maximised). Trials that are worse than the median of the
earlier ones at the same evaluation are pruned (optuna's MedianPruner, fed by the Trainer at every evaluation;
under DDP pruning is off: the Trainer prunes on rank 0 only, and the other ranks would wait for it forever). All
processes of an `accelerate launch` train every trial together: rank 0 runs the one study and sends each trial's
settings to the others (transformers' optuna integration). Trials save no checkpoints.

`seed` may be searched: the Trainer (transformers 5.24) builds a trial's model before it applies the trial's
settings, so model_init here seeds with the trial's own seed first, and again once the model is built (as
Trainer.__init__ does in a plain run), so each trial starts exactly where `python run_classification.py` with its
settings starts. A validation split held out from train is drawn once, before the search, for every trial
(best_recipe.json pins it with validation_split_seed).

Writes hp_trials.csv (every trial: its settings, state and objective) and best_recipe.json (the run's recipe with
the best settings: `python run_classification.py OUTPUT_DIR/best_recipe.json` trains the final model, and scores
what the best trial scored).
"""

import json
import logging
import os

from bertcls.errors import UserError

logger = logging.getLogger(__name__)

# What a search may vary: run_classification.py flags that change training, not data or outputs.
SEARCHABLE = {
    "learning_rate": float,
    "num_train_epochs": float,
    "warmup_steps": float,
    "weight_decay": float,
    "layerwise_lr_decay": float,
    "per_device_train_batch_size": int,
    "gradient_accumulation_steps": int,
    "max_grad_norm": float,
    "label_smoothing_factor": float,
    "adv_epsilon": float,
    "rdrop_alpha": float,
    "focal_gamma": float,
    "seed": int,
}
EXAMPLE = '{"learning_rate": {"low": 1e-5, "high": 1e-4, "log": true}, "num_train_epochs": {"choices": [2, 3]}}'


def parse_space(text: str | None) -> dict:
    """--hp_space (a JSON object; a recipe may give it as an object) checked key by key."""
    if not text:
        raise UserError("--hp_search needs a search space", fix=f"give hp_space in the recipe, e.g. {EXAMPLE}")
    try:
        space = json.loads(text) if isinstance(text, str) else text
    except json.JSONDecodeError as e:
        raise UserError(f"--hp_space is not valid JSON: {e}", fix=f"e.g. {EXAMPLE}") from None
    if not isinstance(space, dict) or not space:
        raise UserError("--hp_space must be a non-empty JSON object of flag: range", fix=f"e.g. {EXAMPLE}")
    for name, spec in space.items():
        where = f"hp_space[{name!r}]"
        if name not in SEARCHABLE:
            raise UserError(f"{where}: not a setting the search can vary", fix=f"use some of {', '.join(SEARCHABLE)}")
        if not isinstance(spec, dict) or not ({"choices"} <= set(spec) or {"low", "high"} <= set(spec)):
            raise UserError(
                f'{where} must be {{"low": ..., "high": ...[, "log": true]}} or {{"choices": [...]}}',
                fix=f"e.g. {EXAMPLE}",
            )
        unknown = set(spec) - {"low", "high", "log", "step", "choices"}
        if unknown:
            raise UserError(f"{where}: unknown key(s) {sorted(unknown)}", fix="use low, high, log, step or choices")
        if "choices" in spec:
            if not isinstance(spec["choices"], list) or not spec["choices"]:
                raise UserError(f"{where}: choices must be a non-empty list")
            continue
        low, high = spec["low"], spec["high"]
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (low, high)) or not low < high:
            raise UserError(f"{where}: low and high must be numbers with low < high, got {low!r} and {high!r}")
        if spec.get("log") and low <= 0:
            raise UserError(f"{where}: a log scale needs low above 0, got {low}")
    return space


def optuna_space(space: dict):
    """The hp_space function the Trainer calls with each optuna trial."""

    def suggest(trial) -> dict:
        params = {}
        for name, spec in space.items():
            if "choices" in spec:
                params[name] = trial.suggest_categorical(name, spec["choices"])
            elif SEARCHABLE[name] is int:
                params[name] = trial.suggest_int(name, int(spec["low"]), int(spec["high"]), log=bool(spec.get("log")))
            else:
                step = spec.get("step")
                params[name] = trial.suggest_float(
                    name, spec["low"], spec["high"], log=bool(spec.get("log")), step=step
                )
        return params

    return suggest


def trial_seed(trial, space: dict, default: int) -> int:
    """The seed a trial trains with: its own when the space searches `seed` (optuna returns the same value for a
    name asked twice in one trial), else the run's."""
    if trial is None or "seed" not in space or not hasattr(trial, "suggest_int"):
        return default  # DDP ranks other than 0 get no trial: their arguments already hold its settings
    return int(optuna_space({"seed": space["seed"]})(trial)["seed"])


def check(training_args, has_validation: bool) -> dict | None:
    """Before anything trains: the parsed space when --hp_search is on (else None), or one clear error."""
    if not training_args.hp_search:
        return None
    if not has_validation:
        raise UserError(
            "--hp_search scores each trial on the validation split, and there is none",
            fix="pass --validation_file or a --validation_split_percentage above 0",
        )
    if training_args.kfold or training_args.early_stopping_patience is not None:
        raise UserError(
            "--hp_search trains one model per trial; it does not combine with --kfold or early stopping",
            fix="search first, then run best_recipe.json with --kfold or early stopping",
        )
    if training_args.hp_trials < 1:
        raise UserError(f"--hp_trials must be at least 1, got {training_args.hp_trials}")
    return parse_space(training_args.hp_space)


def search(trainer, space: dict, training_args) -> tuple[list[dict], dict]:
    """Run the study; every trial's row for hp_trials.csv and the best trial's settings and objective."""
    import optuna

    metric = (training_args.metric_for_best_model or "f1_macro").removeprefix("eval_")
    direction = "minimize" if metric == "loss" else "maximize"
    storage = optuna.storages.InMemoryStorage()
    distributed = training_args.world_size > 1
    pruner = optuna.pruners.NopPruner() if distributed else optuna.pruners.MedianPruner(n_startup_trials=2)
    logger.info(
        "hyperparameter search: %d trials, %s eval_%s, pruning %s",
        training_args.hp_trials,
        direction,
        metric,
        "off (DDP)" if distributed else "on",
    )
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    best = trainer.hyperparameter_search(
        hp_space=optuna_space(space),
        compute_objective=lambda metrics: metrics[f"eval_{metric}"],
        n_trials=training_args.hp_trials,
        direction=direction,
        backend="optuna",
        storage=storage,
        study_name="bertcls",
        pruner=pruner,
        sampler=optuna.samplers.TPESampler(seed=training_args.seed),  # the same trials on a rerun
    )
    if not trainer.is_world_process_zero():
        return [], {}
    study = optuna.load_study(study_name="bertcls", storage=storage)
    trials = []
    for trial in study.trials:
        duration = (
            (trial.datetime_complete - trial.datetime_start).total_seconds() if trial.datetime_complete else None
        )
        trials.append(
            {
                "trial": trial.number,
                "state": trial.state.name.lower(),
                f"eval_{metric}": trial.value,
                "evaluations": len(trial.intermediate_values),
                "seconds": round(duration, 1) if duration is not None else None,
                **trial.params,
            }
        )
    summary = {
        "metric": f"eval_{metric}",
        "objective": best.objective,
        "trial": int(best.run_id),
        **best.hyperparameters,
    }
    return trials, summary


def run(model_args, data_args, training_args, task, tokenized, tokenizer, config, compute_metrics, space) -> dict:
    """The search, its table and best recipe, and the run's closing files. Returns the flat results."""
    import pandas as pd
    from transformers import set_seed

    from bertcls.config.recipes import recipe_of
    from bertcls.evaluation import outputs
    from bertcls.files import atomic_path, write_json
    from bertcls.model.heads import load_model
    from bertcls.training.trainer import build_trainer

    out = training_args.output_dir
    recipe = recipe_of(model_args, data_args, training_args)
    # Trials keep no checkpoints (one folder per trial would pile up); the best settings are retrained at the end.
    training_args.save_strategy, training_args.load_best_model_at_end = "no", False

    def model_init(trial=None):
        seed = trial_seed(trial, space, training_args.seed)
        set_seed(seed)  # before the model: its new head is initialized from this seed
        model = load_model(model_args, config)
        set_seed(seed)  # and after, as Trainer.__init__ reseeds a plain run once its model is built
        return model

    trainer = build_trainer(
        None,
        training_args,
        tokenizer,
        tokenized["train"],
        tokenized["validation"],
        compute_metrics,
        model_init=model_init,
        pad_to_length=data_args.max_seq_length if data_args.pad_to_max_length else None,
    )
    trials, best = search(trainer, space, training_args)
    if not trainer.is_world_process_zero():
        return {}
    with atomic_path(os.path.join(out, "hp_trials.csv")) as tmp:
        pd.DataFrame(trials).to_csv(tmp, index=False)
    write_json(os.path.join(out, "best_recipe.json"), best_recipe(recipe, best, out))
    results = {"hp_trials": len(trials), "hp_pruned": sum(t["state"] == "pruned" for t in trials)}
    results.update({f"hp_best_{k}": v for k, v in best.items()})
    logger.info("best trial %s: %s %.4f with %s", best["trial"], best["metric"], best["objective"], best)
    print(f"best settings: {os.path.join(os.path.abspath(out), 'best_recipe.json')}")
    outputs.finish_run(out, recipe, model_args.model_name_or_path, task, results, outputs.Findings(), [], False)
    return results


def best_recipe(recipe: dict, best: dict, out: str) -> dict:
    """The run's recipe with the best trial's settings, the search switched off, training into out/best."""
    recipe = {k: v for k, v in recipe.items() if k not in ("hp_search", "hp_trials", "hp_space")}
    if "seed" in best and recipe.get("validation_split_seed") is None:
        # The validation split the trials were scored on was held out with the run's seed, not the trial's.
        recipe["validation_split_seed"] = recipe["seed"]
    for name in SEARCHABLE:
        if name in best:
            recipe[name] = int(best[name]) if SEARCHABLE[name] is int else best[name]
    recipe["output_dir"] = os.path.join(os.path.abspath(out), "best")
    return recipe
