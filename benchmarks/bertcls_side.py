#!/usr/bin/env python
"""The bertcls side of the benchmark: the product path, with its defaults, instrumented but not changed.

Arguments go through bertcls.config.recipes.parse_args like run_classification.py's, so every default is the product's
(length-grouped batches, dynamic padding, fused AdamW, ...). Extra flags after `--` are passed on as they are
(`-- --optim adamw_torch`, `-- --bf16 true --torch_compile true`): that is how run.py turns one knob at a time.
What differs from a real run: no evaluation or checkpoints during training (the baseline has none either), no
validation hold-out (both sides train on the same rows), and nothing is written to disk. The Trainer subclass
below only counts the tokens of each batch; the timing callback only reads the clock.

Predict is timed three ways on the first --predict_rows training rows: `predict_in_order` (what
run_classification.py does for the test split: rows sorted longest first), the same Trainer without sorting, and
bertcls.shipping.predict.predict_logits (the `python -m bertcls predict` path).
"""

import argparse
import shutil
import sys
import tempfile
import time

from measure import (
    StepWindow,
    TokenCounter,
    add_common_arguments,
    device_name,
    encoder_parameters,
    peak_rss_mb,
    set_threads,
    use_repo_package,
    write_result,
)

PREDICT_WAYS = ("sorted", "unsorted", "cli")


def main(argv=None) -> dict:
    argv = list(sys.argv[1:] if argv is None else argv)
    extra = argv[argv.index("--") + 1 :] if "--" in argv else []
    argv = argv[: argv.index("--")] if "--" in argv else argv
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_arguments(parser)
    parser.add_argument(
        "--predict_ways",
        nargs="*",
        default=["sorted", "cli"],
        choices=PREDICT_WAYS,
        help="sorted: predict_in_order; unsorted: Trainer.predict in row order; cli: bertcls.shipping.predict.predict_logits",
    )
    args = parser.parse_args(argv)
    set_threads(args.threads)
    use_repo_package()

    import torch
    from transformers import TrainerCallback, set_seed

    from bertcls.config.recipes import parse_args
    from bertcls.data.loading import load_task_data
    from bertcls.data.tokenization import check_settings, tokenize_splits
    from bertcls.evaluation.metrics import ComputeMetrics
    from bertcls.model.checkpoints import load_config, load_tokenizer
    from bertcls.model.classifier import TorchBackend, TrainedClassifier, remember_preprocessing
    from bertcls.model.heads import load_model, set_labels
    from bertcls.training.trainer import ClassificationTrainer, make_data_collator, predict_in_order

    class MeasuredTrainer(ClassificationTrainer):
        """ClassificationTrainer that also records each batch's attention_mask (for real tokens/s)."""

        def __init__(self, *a, **kw):
            super().__init__(*a, **kw)
            self.tokens = TokenCounter()

        def training_step(self, model, inputs, num_items_in_batch=None):
            self.tokens.add(inputs["attention_mask"])
            return super().training_step(model, inputs, num_items_in_batch)

    class TimeSteps(TrainerCallback):
        def __init__(self, window: StepWindow):
            self.window = window

        def on_step_end(self, args, state, control, **kwargs):
            self.window.step_done(state.global_step)

    output_dir = tempfile.mkdtemp(prefix="bertcls-bench-")
    flags = [
        "--model_name_or_path", args.model,
        "--train_file", args.train_file,
        "--text_column", args.text_column,
        "--label_column", args.label_column,
        "--validation_split_percentage", "0",
        "--output_dir", output_dir,
        "--max_steps", str(args.warmup + args.steps),
        "--per_device_train_batch_size", str(args.batch_size),
        "--per_device_eval_batch_size", str(args.predict_batch_size),
        "--eval_strategy", "no",
        "--save_strategy", "no",
        "--seed", str(args.seed),
    ]  # fmt: skip
    if args.device == "cpu":
        flags += ["--use_cpu", "true"]
    model_args, data_args, training_args = parse_args(flags + extra)
    set_seed(training_args.seed)
    result = {"side": "bertcls", "threads": args.threads, "flags": extra}

    # -- load + tokenize: the product's loader and tokenizer, no cache -------------------------------------
    start = time.perf_counter()
    config = load_config(model_args)
    tokenizer = load_tokenizer(model_args.tokenizer_name or model_args.model_name_or_path, model_args, config)
    check_settings(data_args, config, tokenizer, model_args.model_name_or_path)
    task = load_task_data(data_args, training_args.seed)
    tokenized, stats = tokenize_splits(
        task.splits, tokenizer, data_args, data_args.preprocessing_num_workers, load_from_cache=False
    )
    seconds = time.perf_counter() - start
    train = tokenized["train"]
    result.update(
        rows=len(train),
        tokenize_seconds=round(seconds, 3),
        tokenize_rows_per_s=len(train) / seconds,
        lengths=stats["train"].percentiles(),
        data_mean_length=float(stats["train"].lengths.mean()),
        truncated_rows=stats["train"].truncated,
        rss_after_tokenize=peak_rss_mb()["peak_rss_mb"],
    )

    set_labels(config, task.labels)
    remember_preprocessing(config, data_args)
    model = load_model(model_args, config)
    result.update(
        device=str(training_args.device),
        device_name=device_name(training_args.device),
        attn_implementation=getattr(model.config, "_attn_implementation", None),
        encoder_params=encoder_parameters(model),
        optim=str(training_args.optim.value),
        train_sampling_strategy=training_args.train_sampling_strategy,
        dataloader_num_workers=training_args.dataloader_num_workers,
        bf16=training_args.bf16,
        torch_compile=training_args.torch_compile,
    )

    # -- train: the real Trainer for warmup + steps optimizer steps ---------------------------------------
    window = StepWindow(args.warmup, args.steps, training_args.device)
    collator = make_data_collator(tokenizer, training_args)
    result["pad_to_multiple_of"] = collator.pad_to_multiple_of
    trainer = MeasuredTrainer(
        model=model,
        args=training_args,
        train_dataset=train,
        processing_class=tokenizer,
        data_collator=collator,
        compute_metrics=ComputeMetrics(len(task.labels)),
        callbacks=[TimeSteps(window)],
    )
    train_output = trainer.train()
    result.update(window.report(trainer.tokens, args.batch_size))
    result["train_loss"] = train_output.metrics["train_loss"]
    result["rss_after_train"] = peak_rss_mb()["peak_rss_mb"]

    # -- predict ---------------------------------------------------------------------------------------------
    rows = min(args.predict_rows, len(train))
    predict_set = train.select(range(rows))
    result["predict_rows"] = rows
    for way in args.predict_ways:
        start, cpu_start = time.perf_counter(), time.process_time()
        if way == "sorted":
            _, metrics = predict_in_order(trainer, predict_set)
            result["predict_accuracy"] = metrics["test_accuracy"]
        elif way == "unsorted":
            trainer.predict(predict_set)
        else:  # what `python -m bertcls predict` runs
            backend = TorchBackend(trainer.model, str(trainer.model.device))
            classifier = TrainedClassifier(output_dir, trainer.model.config, tokenizer, backend)
            classifier.logits(predict_set, rows, data_args, args.predict_batch_size)
        if training_args.device.type == "cuda":
            torch.cuda.synchronize()
        seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu_start
        key = "predict" if way == "sorted" else f"predict_{way}"
        result[f"{key}_seconds"] = round(seconds, 3)
        result[f"{key}_rows_per_s"] = rows / seconds
        result[f"{key}_rows_per_cpu_s"] = rows / cpu_seconds
    shutil.rmtree(output_dir, ignore_errors=True)  # nothing is saved there; the Trainer only needs the path
    write_result(args.result_file, result)
    return result


if __name__ == "__main__":
    main()
