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
from bertcls.logs import setup_logging
from bertcls.metrics import ComputeMetrics, load_extra_metrics
from bertcls.modeling import load_config, load_model, remember_preprocessing, set_labels
from bertcls.recipes import parse_args, recipe_of
from bertcls.tokenization import check_settings, load_tokenizer, tokenize_splits
from bertcls.trainer import ClassificationTrainer, longest_first, make_data_collator, predict_in_order

logger = logging.getLogger("run_classification")


@exit_on_user_error
def main(argv=None) -> dict:
    model_args, data_args, training_args = parse_args(argv)
    setup_logging(training_args)
    resume_from = outputs.prepare_output_dir(training_args)
    set_seed(training_args.seed)
    extra_metrics = load_extra_metrics(training_args.extra_metrics)

    # The length limit is checked against the model before any row is read or tokenized.
    tokenizer = load_tokenizer(model_args.tokenizer_name or model_args.model_name_or_path, model_args)
    config = load_config(model_args)
    check_settings(data_args, config, tokenizer, model_args.model_name_or_path)

    # Rank 0 reads and tokenizes first and fills the datasets cache; the other ranks then read the cache.
    with training_args.main_process_first(desc="load and tokenize data"):
        task = load_task_data(
            data_args, training_args.seed, known_labels=list(config.id2label.values()), cache_dir=model_args.cache_dir
        )
        tokenized, _ = tokenize_splits(
            task.splits,
            tokenizer,
            data_args,
            data_args.preprocessing_num_workers,
            load_from_cache=not data_args.overwrite_cache,
        )
    set_labels(config, task.labels)
    remember_preprocessing(config, data_args)
    tokenizer.model_max_length = data_args.max_seq_length  # pipeline(truncation=True) then cuts where training did

    train = tokenized.get("train") if training_args.do_train else None
    validation = tokenized.get("validation")
    if validation is None and training_args.eval_strategy != "no":
        logger.info("no validation split: evaluation during training is off")
        training_args.eval_strategy = "no"
    trainer = ClassificationTrainer(
        model=load_model(model_args, config),
        args=training_args,
        train_dataset=train,
        # Sorted longest first: evaluation batches then hold rows of similar length (little padding).
        eval_dataset=validation.select(longest_first(validation)) if validation is not None else None,
        processing_class=tokenizer,
        data_collator=make_data_collator(tokenizer, training_args),
        compute_metrics=ComputeMetrics(len(task.labels), extra_metrics),
    )
    main_process = trainer.is_world_process_zero()
    out = training_args.output_dir
    results, reports = {}, []

    if train is not None:
        train_result = trainer.train(resume_from_checkpoint=resume_from)
        trainer.save_model()  # the unwrapped model and its tokenizer, written by the main process only
        results.update(train_result.metrics, train_samples=len(train))
        if main_process:
            trainer.state.save_to_json(os.path.join(out, "trainer_state.json"))
            outputs.write_json(os.path.join(out, "train_results.json"), train_result.metrics)

    names = list(task.labels.names)
    for split, prefix, wanted in (
        ("validation", "eval", training_args.do_eval),
        ("test", "test", training_args.do_predict),
    ):
        if not wanted or split not in tokenized:
            continue
        logits, metrics = predict_in_order(trainer, tokenized[split], metric_key_prefix=prefix)
        labelled = "label" in tokenized[split].column_names
        if labelled:
            results.update(metrics)
        if not main_process:
            continue
        if labelled:
            outputs.write_json(os.path.join(out, f"{prefix}_results.json"), metrics)
            reports.append(outputs.split_report(out, split, tokenized[split]["label"], logits, names))
        if split == "test":
            frame = outputs.predictions_frame(task.raw_test.to_pandas(), logits, names)
            outputs.write_predictions(os.path.join(out, "predictions.csv"), frame)

    if main_process:
        recipe = recipe_of(model_args, data_args, training_args)
        outputs.write_json(os.path.join(out, "recipe.json"), recipe)
        if reports:
            outputs.write_text(os.path.join(out, "classification_report.txt"), "\n".join(reports))
        outputs.plot_learning_curve(os.path.join(out, "learning_curve.png"), trainer.state.log_history, "accuracy")
        task_name = "sentence-pair" if task.is_pair else "text"
        card = outputs.model_card(model_args.model_name_or_path, task_name, names, results, recipe)
        outputs.write_text(os.path.join(out, "README.md"), card)
        outputs.write_json(os.path.join(out, outputs.FINISHED_MARKER), results)  # last: marks the run finished
        print_summary(results, out)
    return results


def print_summary(results: dict, out: str) -> None:
    shown = {k: v for k, v in results.items() if k.split("_", 1)[-1] in ("accuracy", "f1_macro", "loss", "samples")}
    print(
        "\n".join(
            ["", "results:"]
            + [f"  {k:<22} {v:.4f}" if isinstance(v, float) else f"  {k:<22} {v}" for k, v in sorted(shown.items())]
        )
    )
    print(f"model, tokenizer and reports: {os.path.abspath(out)}")
    if os.path.exists(os.path.join(out, "predictions.csv")):
        print(f"test predictions:             {os.path.abspath(os.path.join(out, 'predictions.csv'))}")


if __name__ == "__main__":
    main(sys.argv[1:])
