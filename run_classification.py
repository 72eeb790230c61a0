#!/usr/bin/env python
"""Fine-tune a BERT-family encoder into a text classifier, or evaluate a fine-tuned one.

    python run_classification.py recipes/demo.json
    accelerate launch run_classification.py recipes/chnsenticorp/chinese-bert-wwm-ext.json --learning_rate 3e-5
    python run_classification.py --model_name_or_path outputs/demo --do_eval --validation_file dev.tsv --output_dir e
    python run_classification.py --help          # every flag; a recipe's keys are the same names

parse -> load the model (pretrained, or fine-tuned for eval only) -> check everything -> load and tokenize ->
train -> evaluate -> predict -> save.
"""

import logging
import sys

from transformers import set_seed

from bertcls.config.recipes import given_fields, parse_args, recipe_of
from bertcls.data.loading import load_task_data
from bertcls.data.tokenization import check_settings, encode_windows, tokenize_splits
from bertcls.errors import exit_on_user_error
from bertcls.evaluation import outputs, thresholds
from bertcls.evaluation.decision import Decision
from bertcls.evaluation.metrics import ComputeMetrics, load_extra_metrics, metric_names
from bertcls.logs import setup_logging
from bertcls.model.checkpoints import check_vocabulary, load_config, load_tokenizer
from bertcls.model.classifier import TrainedClassifier, remember_preprocessing
from bertcls.model.heads import HEAD_KEY, configure_head, load_model, set_labels
from bertcls.training import hpsearch
from bertcls.training.evaluate import evaluate_splits
from bertcls.training.interrupt import GracefulInterrupt
from bertcls.training.kfold import run_kfold
from bertcls.training.trainer import build_trainer, check_evaluation, check_task_options, train_and_save

logger = logging.getLogger("run_classification")


@exit_on_user_error
def main(argv=None) -> dict:
    model_args, data_args, training_args = parse_args(argv)
    setup_logging(training_args)
    extra_metrics = load_extra_metrics(metric_names(training_args.extra_metrics, data_args.metric_name))
    name = model_args.model_name_or_path

    # Training starts from a pretrained checkpoint; without --do_train the model is a fine-tuned folder, and its
    # inputs are built as it was trained (flags given on the command line or in the recipe win, logged).
    trained = None if training_args.do_train else TrainedClassifier.load(name)
    if trained is None:
        config = load_config(model_args)
        configure_head(config, model_args)
        tokenizer = load_tokenizer(model_args.tokenizer_name or name, model_args, config)
        check_vocabulary(tokenizer, config, name)
        check_settings(data_args, config, tokenizer, name)  # before any row is read or tokenized
    else:
        config, tokenizer = trained.config, trained.tokenizer
        data_args = trained.data_args(data_args, given_fields(data_args))  # checked the same way
    resume_from = outputs.check_output_dir(training_args, reads_from=(name, model_args.tokenizer_name))
    set_seed(training_args.seed)

    # Rank 0 reads and tokenizes first and fills the datasets cache; the other ranks then read the cache.
    with training_args.main_process_first(desc="load and tokenize data"):
        task = load_task_data(
            data_args,
            training_args.seed,
            labels=trained.labels if trained else None,
            cache_dir=model_args.cache_dir,
            hold_out=training_args.do_eval and not training_args.kfold,  # k-fold holds out each fold instead
            splits=wanted_splits(training_args),
            token=model_args.token,
        )
        tokenized, _ = tokenize_splits(
            task.splits,
            tokenizer,
            data_args,
            data_args.preprocessing_num_workers,
            load_from_cache=not data_args.overwrite_cache,
            sources=task.sources,
        )
        # Long test texts: every window of the text is classified (--sliding_window), not only its start.
        windows = {}
        if data_args.sliding_window and "test" in task.splits:
            windows["test"] = encode_windows(task.splits["test"], tokenizer, data_args)
    labels = task.labels
    data_args.positive_label = labels.positive(data_args.positive_label)  # logged, stored, named in the results
    if trained is None:
        set_labels(config, labels)
        remember_preprocessing(config, data_args, labels)
        tokenizer.model_max_length = data_args.max_seq_length  # pipeline(truncation=True) then cuts where training did
    decision = Decision.of(labels, data_args)
    compute_metrics = ComputeMetrics(len(labels), extra_metrics, decision)
    train = tokenized.get("train") if training_args.do_train else None
    validation = tokenized.get("validation")
    check_evaluation(training_args, validation, task.splits)
    metric = thresholds.check(data_args, training_args, labels, "validation" in task.splits)
    check_task_options(training_args, labels)
    space = hpsearch.check(training_args, "validation" in task.splits)
    model = trained.model if trained else load_model(model_args, config)  # checked before anything is removed
    outputs.clear_output_dir(training_args)  # everything is checked: only now may an earlier run's files go
    if space is not None:
        results = hpsearch.run(
            model_args, data_args, training_args, task, tokenized, tokenizer, config, compute_metrics, space
        )
        outputs.print_summary(results, training_args.output_dir)
        return results
    if training_args.kfold:
        results = run_kfold(
            model_args, data_args, training_args, task, tokenized, windows, tokenizer, config, compute_metrics, metric
        )
        outputs.print_summary(results, training_args.output_dir)
        return results

    interrupt = GracefulInterrupt()  # Ctrl-C / SIGTERM: save a checkpoint and stop cleanly
    pad_to = data_args.max_seq_length if data_args.pad_to_max_length else None
    trainer = build_trainer(
        model, training_args, tokenizer, train, validation, compute_metrics, [interrupt], None, pad_to
    )
    results = train_and_save(trainer, train, resume_from, interrupt) if train is not None else {}
    evaluated, findings = evaluate_splits(
        trainer, tokenized, windows, task, data_args, training_args, compute_metrics, config, metric
    )
    results.update(evaluated)

    if data_args.positive_label is not None:
        results["positive_label"] = data_args.positive_label
    out = training_args.output_dir
    if trainer.is_world_process_zero():
        recipe = recipe_of(model_args, data_args, training_args)
        custom_head = getattr(config, HEAD_KEY, None) is not None
        history = trainer.state.log_history
        outputs.finish_run(out, recipe, name, task, results, findings, history, train is not None, custom_head)
        outputs.print_summary(results, out)
    return results


def wanted_splits(training_args) -> tuple[str, ...]:
    """The splits the phases that run need: train (also the source of a held-out validation split), validation,
    test."""
    wanted = {"train": training_args.do_train, "validation": training_args.do_eval, "test": training_args.do_predict}
    return tuple(split for split, on in wanted.items() if on)


if __name__ == "__main__":
    main(sys.argv[1:])
