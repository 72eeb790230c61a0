"""`--kfold K`: K models on K folds of the train split, out-of-fold predictions, and an averaged ensemble.

Folds come from sklearn's StratifiedGroupKFold (shuffled, seeded by --kfold_seed or --seed), with rows of the same
text in one group, so identical texts never sit in different folds; multi-label rows have no single class to
stratify by, so they get a shuffled GroupKFold (logged). Model k trains on the other K-1 folds
and validates on fold k (evaluation during training and early stopping use it), then predicts fold k: these
out-of-fold predictions cover every train row once (oof_predictions.csv, scored as `oof_*`). Each model also
predicts the test split (and a --validation_file, when given); the K models' probabilities are averaged into
predictions.csv and scored as `test_*` (and `eval_*`).

output_dir/fold_k/ holds model k (loadable like any run's folder), its held-out metrics and its own test
predictions; output_dir holds the ensemble's files, kfold_results.json (every fold, mean and std, oof, ensemble)
and all_results.json.
"""

import copy
import logging
import os

import numpy as np
import pandas as pd
from sklearn.model_selection import GroupKFold, StratifiedGroupKFold
from transformers import set_seed

from bertcls.config.recipes import recipe_of
from bertcls.data.health import row_keys
from bertcls.errors import UserError
from bertcls.evaluation import analysis, outputs, thresholds
from bertcls.evaluation.decision import probabilities
from bertcls.model.classifier import store_preprocessing
from bertcls.model.heads import HEAD_KEY, load_model
from bertcls.training.trainer import build_trainer, predict_split

logger = logging.getLogger(__name__)


def fold_ids(
    labels, k: int, seed: int, multi_label: bool = False, groups=None, regression: bool = False
) -> np.ndarray:
    """The fold (0..k-1) of every row: stratified by label, or plain shuffled folds for multi-label rows and regression values. Rows of
    the same group (the same text) always share a fold (sklearn's StratifiedGroupKFold / GroupKFold): a copy in
    another fold would let its model see the text it is scored on, and out-of-fold scores and cleanlab's ranking
    would be optimistic."""
    n = len(labels)
    if n < k:
        raise UserError(f"--kfold {k} needs at least {k} training rows, there are {n}", fix="lower --kfold")
    groups = np.arange(n) if groups is None else np.asarray(groups)
    if len(np.unique(groups)) < k:
        raise UserError(
            f"--kfold {k} needs at least {k} distinct train texts, there are {len(np.unique(groups))}",
            fix="lower --kfold",
        )
    if multi_label or regression:
        logger.info(
            "%s: no single class to stratify by, k-fold uses plain shuffled folds",
            "regression" if regression else "multi-label rows",
        )
        splitter, y = GroupKFold(n_splits=k, shuffle=True, random_state=seed), None
    else:
        y = np.asarray(labels)
        present = np.bincount(y)
        smallest = present[present > 0].min()
        if smallest < k:
            logger.warning("a class has only %d train rows, fewer than --kfold %d: some folds lack it", smallest, k)
        splitter = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed)
    folds = np.empty(n, dtype=np.int64)
    for fold, (_, held_out) in enumerate(splitter.split(np.zeros(n), y, groups)):
        folds[held_out] = fold
    return folds


def summarize(fold_metrics: list[dict]) -> tuple[dict, dict]:
    """Mean and (population) standard deviation over folds of every numeric metric all folds report."""
    keys = [k for k in fold_metrics[0] if all(isinstance(m.get(k), (int, float)) for m in fold_metrics)]
    mean = {k: float(np.mean([m[k] for m in fold_metrics])) for k in keys}
    std = {k: float(np.std([m[k] for m in fold_metrics])) for k in keys}
    return mean, std


def run_kfold(
    model_args, data_args, training_args, task, tokenized, windows, tokenizer, config, compute_metrics, metric=None
) -> dict:
    """Train, validate and predict K folds; write the out-of-fold and ensemble outputs. Returns the flat results.
    `metric`: tune the decision threshold(s) for it on the out-of-fold predictions (--tune_threshold)."""
    k, out = training_args.kfold, training_args.output_dir
    if "train" not in tokenized or not training_args.do_train:
        raise UserError(
            "--kfold trains K models, but there is no training to do", fix="pass --train_file and keep --do_train"
        )
    if training_args.resume_from_checkpoint:
        raise UserError("--kfold runs cannot resume a checkpoint", fix="start over with --overwrite_output_dir")
    labels = task.labels
    train = tokenized["train"]
    seed = training_args.kfold_seed if training_args.kfold_seed is not None else training_args.seed
    train_labels = train["label"][:]  # [:] reads the column at once, not row by row
    groups, _ = pd.factorize(pd.Series(row_keys(task.splits["train"])))  # identical texts share a fold
    folds = fold_ids(train_labels, k, seed, labels.multi_label, groups, labels.regression)
    wanted = {"validation": training_args.do_eval, "test": training_args.do_predict}
    others = [(s, p) for s, p in (("validation", "eval"), ("test", "test")) if s in tokenized and wanted[s]]

    oof = np.zeros((len(train), len(labels)))
    ensemble = {s: np.zeros((len(tokenized[s]), len(labels))) for s, _ in others}
    fold_metrics, fold_tests, main_process = [], [], True
    for fold in range(k):
        held_rows, train_rows = np.flatnonzero(folds == fold), np.flatnonzero(folds != fold)
        logger.info("fold %d/%d: training on %d rows, validating on %d", fold + 1, k, len(train_rows), len(held_rows))
        fold_args = copy.deepcopy(training_args)
        fold_args.output_dir = fold_dir(out, fold)
        set_seed(training_args.seed)  # every fold's model starts from the same initialization
        held = train.select(held_rows)
        pad_to = data_args.max_seq_length if data_args.pad_to_max_length else None
        trainer = build_trainer(
            load_model(model_args, config),
            fold_args,
            tokenizer,
            train.select(train_rows),
            held,
            compute_metrics,
            pad_to_length=pad_to,
        )
        main_process = trainer.is_world_process_zero()
        trainer.train()
        trainer.save_model()
        logits, metrics = predict_split(trainer, held, "eval", compute_metrics)
        oof[held_rows] = probabilities(logits, labels.multi_label)
        fold_metrics.append(metrics)
        for split, prefix in others:
            logits, _ = predict_split(
                trainer, tokenized[split], prefix, compute_metrics, windows.get(split), data_args.window_aggregation
            )
            probs = probabilities(logits, labels.multi_label)
            ensemble[split] += probs / k
            if split == "test":
                fold_tests.append(probs)
        if main_process:
            trainer.state.save_to_json(os.path.join(fold_args.output_dir, "trainer_state.json"))
            outputs.write_json(os.path.join(fold_args.output_dir, "eval_results.json"), metrics)
        del trainer

    mean, std = summarize(fold_metrics)
    reference = np.asarray(train_labels)
    results = {f"kfold_{key}_mean": v for key, v in mean.items() if not key.endswith(("runtime", "per_second"))}
    results.update({f"kfold_{key}_std": v for key, v in std.items() if not key.endswith(("runtime", "per_second"))})
    findings = outputs.Findings()
    if metric:  # --tune_threshold on the out-of-fold predictions: every train row, each held out from its model
        decision, tuned = thresholds.tune(oof, reference, compute_metrics.decision, metric)
        compute_metrics.decision = decision
        thresholds.store(data_args, decision)
        results.update(thresholds.results(tuned, "oof"))
        findings.notes["Decision threshold"] = thresholds.describe(tuned, "out-of-fold")
    decision = compute_metrics.decision
    summary = {"folds": fold_metrics, "mean": mean, "std": std, "oof": compute_metrics.score(oof, reference)}
    results.update({f"oof_{key}": v for key, v in summary["oof"].items()})
    for split, prefix in others:
        if "label" in tokenized[split].column_names:
            summary[split] = compute_metrics.score(ensemble[split], np.asarray(tokenized[split]["label"][:]))
            results.update({f"{prefix}_{key}": v for key, v in summary[split].items()})
    if data_args.positive_label is not None:
        results["positive_label"] = data_args.positive_label
    if not main_process:
        return results

    findings.add(outputs.split_report("oof", reference, oof, labels, decision, "oof"), task, out, oof, "train")
    for split, prefix in others:
        if "label" in tokenized[split].column_names:
            report = outputs.split_report(
                split, tokenized[split]["label"][:], ensemble[split], labels, decision, prefix
            )
            findings.add(report, task, out, ensemble[split])
    if training_args.find_label_issues:
        issues, findings.notes["Label issues"] = analysis.find_label_issues(task, oof, folds, decision)
        analysis.write_label_issues(out, issues)
    # Every train row with the file's own columns, its fold, its out-of-fold prediction, and its file line.
    rows = analysis.raw_rows(task, "train", np.arange(len(train)))
    rows["fold"] = folds
    frame = outputs.predictions_frame(rows, oof, labels, decision)
    frame = frame.join(analysis.source_columns(task.sources["train"], task.splits["train"]["source_row"][:]))
    outputs.write_predictions(os.path.join(out, "oof_predictions.csv"), frame)
    for fold, probs in enumerate(fold_tests):
        outputs.write_test_predictions(fold_dir(out, fold), task, probs, decision)
    if metric:  # each fold's model remembers the thresholds chosen for the ensemble
        for fold in range(k):
            store_preprocessing(fold_dir(out, fold), data_args, labels)
    if "test" in ensemble:
        outputs.write_test_predictions(out, task, ensemble["test"], decision)
    outputs.write_json(os.path.join(out, "kfold_results.json"), summary)
    recipe = recipe_of(model_args, data_args, training_args)
    custom_head = getattr(config, HEAD_KEY, None) is not None
    outputs.finish_run(out, recipe, model_args.model_name_or_path, task, results, findings, [], True, custom_head)
    return results


def fold_dir(out: str, fold: int) -> str:
    return os.path.join(out, f"fold_{fold}")
