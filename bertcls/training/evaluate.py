"""After training: evaluate the validation split, predict the test split, and write what each gives.

Shared by run_classification.py and bertcls distill, so a fine-tuned and a distilled folder hold the same reports.
"""

import os

from bertcls.evaluation import outputs, thresholds
from bertcls.evaluation.decision import probabilities
from bertcls.model.classifier import remember_preprocessing
from bertcls.training.trainer import predict_split, split_report_rows


def evaluate_splits(trainer, tokenized, windows, task, data_args, training_args, compute_metrics, config, metric=None):
    """Score validation (with --do_eval) and predict test (with --do_predict) with `compute_metrics.decision`;
    `metric` (--tune_threshold) tunes the decision on the validation rows first, and the test rows use it.

    Returns the results (every process) and the Findings for analysis.md (filled on the main process)."""
    labels, out = task.labels, training_args.output_dir
    main_process = trainer.is_world_process_zero()
    results, findings = {}, outputs.Findings()
    for split, prefix, wanted in (
        ("validation", "eval", training_args.do_eval),
        ("test", "test", training_args.do_predict),
    ):
        if not wanted or split not in tokenized:
            continue
        logits, metrics = predict_split(
            trainer, tokenized[split], prefix, compute_metrics, windows.get(split), data_args.window_aggregation
        )
        probs = probabilities(logits, labels.multi_label)
        references = tokenized[split]["label"][:] if "label" in tokenized[split].column_names else None
        if references is not None:
            results.update(metrics)  # with test_unlabelled: the rows labelled -1 or not at all, predicted only
            if not len(split_report_rows(references, labels)):
                references = None
        if split == "validation" and metric and references is not None:  # --tune_threshold, never on test rows
            decision, tuned = thresholds.tune(probs, references, compute_metrics.decision, metric)
            compute_metrics.decision = decision  # the test split is scored and predicted with it
            results.update(thresholds.results(tuned, prefix))
            findings.notes["Decision threshold"] = thresholds.describe(tuned, split)
            thresholds.store(data_args, decision)
            if main_process:  # remembered with the model, for predict, eval-only runs, export and serve
                remember_preprocessing(config, data_args, labels)
                config.save_pretrained(out)
        if not main_process:
            continue
        decision = compute_metrics.decision
        if references is not None:
            outputs.write_json(os.path.join(out, f"{prefix}_results.json"), metrics)
            findings.add(outputs.split_report(split, references, probs, labels, decision, prefix), task, out, probs)
        if split == "test":
            outputs.write_test_predictions(out, task, probs, decision)
    return results, findings
