#!/usr/bin/env python
"""Fine-tune a BERT-family encoder into a text classifier.

    python run_classification.py recipes/demo.json
    accelerate launch run_classification.py recipes/chnsenticorp/chinese-bert-wwm-ext.json --learning_rate 3e-5
    python run_classification.py --help          # every flag; a recipe's keys are the same names

parse -> seed -> load and tokenize -> model -> Trainer -> train -> evaluate -> predict -> save.
"""

import logging
import os
import sys

from transformers import set_seed

from bertcls import outputs
from bertcls.data import load_task_data
from bertcls.errors import exit_on_user_error
from bertcls.interrupt import INTERRUPTED_EXIT_CODE, GracefulInterrupt
from bertcls.kfold import run_kfold
from bertcls.logs import setup_logging
from bertcls.metrics import ComputeMetrics, load_extra_metrics, probabilities
from bertcls.modeling import load_config, load_model, remember_preprocessing, set_labels
from bertcls.recipes import parse_args, recipe_of
from bertcls.tokenization import check_settings, encode_windows, load_tokenizer, tokenize_splits
from bertcls.trainer import build_trainer, check_evaluation, predict_split

logger = logging.getLogger("run_classification")


@exit_on_user_error
def main(argv=None) -> dict:
    model_args, data_args, training_args = parse_args(argv)
    setup_logging(training_args)
    resume_from = outputs.prepare_output_dir(training_args)
    set_seed(training_args.seed)
    extra_metrics = load_extra_metrics(training_args.extra_metrics)

    # The length limit is checked against the model before any row is read or tokenized.
    config = load_config(model_args)
    tokenizer = load_tokenizer(model_args.tokenizer_name or model_args.model_name_or_path, model_args)
    check_settings(data_args, config, tokenizer, model_args.model_name_or_path)

    # Rank 0 reads and tokenizes first and fills the datasets cache; the other ranks then read the cache.
    with training_args.main_process_first(desc="load and tokenize data"):
        task = load_task_data(
            data_args,
            training_args.seed,
            known_labels=list(config.id2label.values()),
            cache_dir=model_args.cache_dir,
            hold_out=not training_args.kfold,  # k-fold holds out each fold in turn instead
        )
        tokenized, _ = tokenize_splits(
            task.splits,
            tokenizer,
            data_args,
            data_args.preprocessing_num_workers,
            load_from_cache=not data_args.overwrite_cache,
        )
        # Long test texts: every window of the text is classified (--sliding_window), not only its start.
        windows = {}
        if data_args.sliding_window and "test" in task.splits:
            windows["test"] = encode_windows(task.splits["test"], tokenizer, data_args)
    labels, threshold = task.labels, data_args.multi_label_threshold
    set_labels(config, labels)
    remember_preprocessing(config, data_args, labels)
    tokenizer.model_max_length = data_args.max_seq_length  # pipeline(truncation=True) then cuts where training did
    compute_metrics = ComputeMetrics(len(labels), extra_metrics, labels.multi_label, threshold)
    train = tokenized.get("train") if training_args.do_train else None
    if training_args.kfold:
        results = run_kfold(
            model_args, data_args, training_args, task, tokenized, windows, tokenizer, config, compute_metrics
        )
        outputs.print_summary(results, training_args.output_dir)
        return results

    validation = tokenized.get("validation")
    check_evaluation(training_args, validation)
    model = load_model(model_args, config)
    interrupt = GracefulInterrupt()  # Ctrl-C / SIGTERM: save a checkpoint and stop cleanly
    trainer = build_trainer(model, training_args, tokenizer, train, validation, compute_metrics, [interrupt])
    main_process = trainer.is_world_process_zero()
    out = training_args.output_dir
    results, reports = {}, []

    if train is not None:
        interrupt.install()
        try:
            train_result = trainer.train(resume_from_checkpoint=resume_from)
        finally:
            interrupt.uninstall()
        if interrupt.stopped_at_step is not None:  # a checkpoint is saved; no model or results pretend to be final
            logger.warning(
                "interrupted at step %d; checkpoint saved in %s. Continue with the same command plus "
                "--resume_from_checkpoint auto",
                interrupt.stopped_at_step,
                out,
            )
            sys.exit(INTERRUPTED_EXIT_CODE)
        trainer.save_model()  # unwrapped model + tokenizer (the best under early stopping), main process only
        results.update(train_result.metrics, train_samples=len(train))
        if main_process:
            trainer.state.save_to_json(os.path.join(out, "trainer_state.json"))
            outputs.write_json(os.path.join(out, "train_results.json"), train_result.metrics)

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
        labelled = "label" in tokenized[split].column_names
        if labelled:
            results.update(metrics)
        if not main_process:
            continue
        if labelled:
            outputs.write_json(os.path.join(out, f"{prefix}_results.json"), metrics)
            reports.append(outputs.split_report(out, split, tokenized[split]["label"], probs, labels, threshold))
        if split == "test":
            outputs.write_test_predictions(out, task, probs, threshold)

    if main_process:
        recipe = recipe_of(model_args, data_args, training_args)
        outputs.finish_run(
            out, recipe, model_args.model_name_or_path, task, results, reports, trainer.state.log_history
        )
        outputs.print_summary(results, out)
    return results


if __name__ == "__main__":
    main(sys.argv[1:])
