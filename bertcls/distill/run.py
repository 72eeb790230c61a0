"""Distil a fine-tuned teacher into a small student: the student folder is a normal fine-tuned folder.

    bertcls distill --teacher outputs/tnews-bert --student_layers 3 --train_file train.json --text_column sentence \\
        --validation_file dev.json --test_file test.json --output_dir outputs/tnews-3layers
    bertcls distill --teacher outputs/tnews-bert --student hfl/rbt3 --train_file ... --unlabelled_file more.json ...
    accelerate launch -m bertcls.distill RECIPE.json --resume_from_checkpoint auto
    bertcls distill --help              # every flag; a recipe's keys are the same names

parse -> teacher (TrainedClassifier) -> student (teacher layers or a checkpoint) -> read the data as the teacher
was trained -> transfer set (train + unlabelled + augmented texts) -> the teacher's logits, once, cached -> train
with the distillation loss -> evaluate -> predict -> save. Eval-only runs of run_classification.py, `bertcls
predict`, `bertcls export` and `bertcls serve` take the output folder as they take any fine-tuned folder.
"""

import logging
import os
import sys

import numpy as np
import torch
from datasets import Dataset, DatasetDict, Features, List, Value
from transformers import set_seed

from bertcls.config.arguments import DataArguments
from bertcls.config.recipes import given_fields, parse_args, recipe_of
from bertcls.config.training_arguments import ClassificationTrainingArguments
from bertcls.data.loading import check_columns, load_task_data, read_file, standardize
from bertcls.data.tokenization import check_settings, encode_windows, tokenize_splits
from bertcls.distill.args import DistillArguments, check_arguments
from bertcls.distill.augment import Augmenter, load_masked_lm, new_texts
from bertcls.distill.losses import DistillationLoss
from bertcls.distill.student import same_vocabulary, student_from_checkpoint, student_from_teacher
from bertcls.distill.teacher import teacher_logits
from bertcls.distill.trainer import DistillationTrainer
from bertcls.errors import UserError, exit_on_user_error
from bertcls.evaluation import outputs
from bertcls.evaluation.decision import Decision
from bertcls.evaluation.metrics import ComputeMetrics
from bertcls.logs import setup_logging
from bertcls.model.classifier import TrainedClassifier, remember_preprocessing
from bertcls.model.heads import HEAD_KEY
from bertcls.model.losses import build_loss
from bertcls.training.evaluate import evaluate_splits
from bertcls.training.interrupt import GracefulInterrupt
from bertcls.training.trainer import build_trainer, check_evaluation, train_and_save

logger = logging.getLogger("bertcls.distill.run")

DATACLASSES = (DistillArguments, DataArguments, ClassificationTrainingArguments)


@exit_on_user_error
def main(argv=None) -> dict:
    args, data_args, training_args = parse_args(argv, dataclass_types=DATACLASSES)
    setup_logging(training_args)
    check_arguments(args)
    check_training(training_args)
    teacher = TrainedClassifier.load(args.teacher)
    # The student reads its inputs as the teacher was trained (flags given here win, logged), and stores them so.
    data_args = teacher.data_args(data_args, given_fields(data_args))
    student, tokenizer, layer_ids = build_student(args, teacher)
    check_settings(data_args, student.config, tokenizer, args.student or "the student")
    resume_from = outputs.check_output_dir(training_args, reads_from=(args.teacher, args.student))
    set_seed(training_args.seed)

    # Rank 0 reads, labels (the teacher) and tokenizes first, filling the caches; the other ranks then read them.
    with training_args.main_process_first(desc="load data, teacher logits, tokenize"):
        splits = ["train"] + [
            s for s, on in (("validation", training_args.do_eval), ("test", training_args.do_predict)) if on
        ]
        task = load_task_data(
            data_args, training_args.seed, labels=teacher.labels, hold_out=training_args.do_eval, splits=tuple(splits)
        )
        transfer = transfer_set(task, args, data_args, teacher, training_args.seed)
        soft = teacher_logits(
            teacher, transfer, data_args, batch_size=args.teacher_batch_size, overwrite=data_args.overwrite_cache
        )
        parts = DatasetDict(
            {"train": transfer, **{s: task.splits[s] for s in ("validation", "test") if s in task.splits}}
        )
        tokenized, _ = tokenize_splits(
            parts, tokenizer, data_args, data_args.preprocessing_num_workers, not data_args.overwrite_cache
        )
        windows = {}
        if data_args.sliding_window and "test" in task.splits:
            windows["test"] = encode_windows(task.splits["test"], tokenizer, data_args)
    labels = task.labels
    config = student.config
    remember_preprocessing(config, data_args, labels)
    tokenizer.model_max_length = data_args.max_seq_length
    decision = Decision.of(labels, data_args)
    compute_metrics = ComputeMetrics(len(labels), [], decision)
    train, validation = tokenized["train"], tokenized.get("validation")
    check_evaluation(training_args, validation, task.splits)
    labelled = np.asarray(train["labelled"][:], dtype=bool)
    hard = build_loss(
        training_args, labels, np.asarray(train["label"][:])[labelled] if not labels.multi_label else None
    )
    loss = DistillationLoss(hard, config.problem_type, args.temperature, args.alpha)
    layer_options = layer_losses(args, teacher, student, tokenizer)
    outputs.clear_output_dir(training_args)  # everything is checked: only now may an earlier run's files go

    interrupt = GracefulInterrupt()  # Ctrl-C / SIGTERM: save a checkpoint and stop cleanly
    trainer = build_trainer(
        student,
        training_args,
        tokenizer,
        train,
        validation,
        compute_metrics,
        [interrupt],
        trainer_class=DistillationTrainer,
        loss=hard,
        teacher_logits=soft,
        distillation=loss,
        **layer_options,
    )
    main_process, out = trainer.is_world_process_zero(), training_args.output_dir
    results = train_and_save(trainer, train, resume_from, interrupt)
    results["transfer_texts"] = len(transfer)
    results["transfer_unlabelled"] = int((~labelled).sum())
    evaluated, findings = evaluate_splits(
        trainer, tokenized, windows, task, data_args, training_args, compute_metrics, config
    )
    results.update(evaluated)

    if main_process:
        recipe = recipe_of(args, data_args, training_args)
        card = distillation_card(args, layer_ids, teacher, student, results)
        custom_head = getattr(config, HEAD_KEY, None) is not None
        history = trainer.state.log_history
        outputs.finish_run(out, recipe, args.student or args.teacher, task, results, findings, history, True,
                           custom_head, card_extra=card)  # fmt: skip
        outputs.print_summary(results, out)
    return results


def check_training(training_args) -> None:
    """What distillation does not do: it trains (evaluate a folder with run_classification.py), one model at a time."""
    if not training_args.do_train:
        raise UserError(
            "bertcls distill trains a student; --do_train false leaves it nothing to do",
            fix="evaluate a fine-tuned folder with: python run_classification.py --model_name_or_path FOLDER --do_eval",
        )
    for flag, value in (("kfold", training_args.kfold), ("hp_search", training_args.hp_search)):
        if value:
            raise UserError(f"--{flag} is not available for distillation", fix=f"drop --{flag}")
    if training_args.rdrop_alpha:
        raise UserError("--rdrop_alpha is not available for distillation", fix="drop it (the teacher regularises)")


def build_student(args, teacher):
    """The student model, its tokenizer, and the teacher layers it was built from (None for a checkpoint)."""
    if args.student_layers is not None:
        model, layer_ids = student_from_teacher(teacher.model, args.student_layer_ids, args.student_layers)
        return model, teacher.tokenizer, layer_ids
    model, tokenizer = student_from_checkpoint(args, teacher)
    return model, tokenizer, None


def transfer_set(task, args, data_args, teacher, seed: int) -> Dataset:
    """The texts the student learns the teacher's outputs on: train's rows (with their labels), --unlabelled_file's
    texts and the augmented texts (without), with `labelled` and `teacher_row` (the row in the teacher logits)."""
    train = task.splits["train"]
    columns = ["text", "text_pair"] if task.is_pair else ["text"]
    rows = {c: list(train[c][:]) for c in columns}
    label_values = list(train["label"][:])
    for path in args.unlabelled_file or ():
        raw, source = read_file(path, data_args)
        check_columns(raw, source, data_args, need_label=False)
        extra, _ = standardize(raw, source, data_args, None, "test")
        for c in columns:
            rows[c] += extra[c][:]
        logger.info("unlabelled texts: %d from %s", len(extra), path)
    count = len(rows["text"])
    if args.augment_copies:
        model, mlm_tokenizer = load_masked_lm(args.augment_model, args.teacher)
        made = {
            c: Augmenter(model, mlm_tokenizer, args.augment_share, seed + i, data_args.max_seq_length)(
                rows[c], args.augment_copies
            )
            for i, c in enumerate(columns)
        }
        keys = list(zip(*(made[c] for c in columns)))
        keep, dropped = new_texts(list(zip(*(rows[c] for c in columns))), keys)
        for c in columns:
            rows[c] += [made[c][i] for i in keep]
        logger.info(
            "augmentation: %d new texts from %d (%d copies each, %.0f%% of words replaced; %d repeats dropped)",
            len(keep), count, args.augment_copies, 100 * args.augment_share, dropped,
        )  # fmt: skip
    total = len(rows["text"])
    # Rows without a label get a placeholder the loss never reads (their `labelled` is false).
    if task.labels.multi_label:
        filler, label_feature = [0.0] * len(task.labels), List(Value("float32"))
    elif isinstance(train.features["label"], Value) and train.features["label"].dtype.startswith("float"):
        filler, label_feature = 0.0, Value("float32")  # a regression target
    else:
        filler, label_feature = -1, Value("int64")
    features = Features(
        {
            **{c: Value("string") for c in columns},
            "label": label_feature,
            "labelled": Value("bool"),
            "teacher_row": Value("int64"),
        }
    )
    return Dataset.from_dict(
        {
            **rows,
            "label": label_values + [filler] * (total - len(label_values)),
            "labelled": [True] * len(label_values) + [False] * (total - len(label_values)),
            "teacher_row": list(range(total)),
        },
        features=features,
    )


def layer_losses(args, teacher, student, tokenizer) -> dict:
    """The DistillationTrainer options of --hidden_weight / --attention_weight: the teacher model, the layer map and
    a projection from the student's width to the teacher's (None when they match)."""
    if not (args.hidden_weight or args.attention_weight):
        return {}
    if not same_vocabulary(tokenizer, teacher.tokenizer):
        raise UserError(
            "--hidden_weight / --attention_weight compare student and teacher token by token, but their vocabularies "
            "differ",
            fix="start from a student with the teacher's vocabulary (e.g. --student_layers), or set them to 0",
        )
    t, s = teacher.model.config, student.config
    layer_map = args.layer_map or [
        m * t.num_hidden_layers // s.num_hidden_layers for m in range(s.num_hidden_layers + 1)
    ]
    if len(layer_map) != s.num_hidden_layers + 1 or any(not 0 <= n <= t.num_hidden_layers for n in layer_map):
        raise UserError(
            f"--layer_map {' '.join(map(str, layer_map))}: give {s.num_hidden_layers + 1} teacher layers (0 = embeddings, "
            f"then one per student layer), each from 0 to {t.num_hidden_layers}"
        )
    if args.attention_weight:
        if s.num_attention_heads != t.num_attention_heads:
            raise UserError(
                f"--attention_weight compares attention heads one by one: the student has {s.num_attention_heads} "
                f"and the teacher {t.num_attention_heads}",
                fix="pick a student with as many heads, or use --hidden_weight alone",
            )
        for model in (student, teacher.model):
            model.set_attn_implementation("eager")  # SDPA returns no attention probabilities
    projection = None
    if args.hidden_weight and s.hidden_size != t.hidden_size:
        projection = torch.nn.Linear(s.hidden_size, t.hidden_size)
        logger.info(
            "hidden states: a learned projection %d -> %d (not part of the saved student)",
            s.hidden_size,
            t.hidden_size,
        )
    return {
        "teacher_model": teacher.model,
        "hidden_weight": args.hidden_weight,
        "attention_weight": args.attention_weight,
        "layer_map": layer_map,
        "projection": projection,
    }


def distillation_card(args, layer_ids, teacher, student, results) -> str:
    """The model card's distillation section: the teacher, how the student was made, and the settings."""
    t, s = teacher.config, student.config
    made = (
        f"{len(layer_ids)} of the teacher's {t.num_hidden_layers} encoder layers ({', '.join(map(str, layer_ids))}, "
        "counted from 0), its embeddings and head"
        if layer_ids is not None
        else f"the pretrained checkpoint `{args.student}` ({s.num_hidden_layers} layers, width {s.hidden_size})"
    )
    settings = [
        f"temperature {args.temperature:g} (soft loss x T^2)",
        f"alpha {args.alpha:g} (soft) / {1 - args.alpha:g} (hard labels)",
    ]
    if args.hidden_weight:
        settings.append(f"hidden-state MSE x {args.hidden_weight:g}")
    if args.attention_weight:
        settings.append(f"attention MSE x {args.attention_weight:g}")
    if args.unlabelled_file:
        settings.append(f"unlabelled texts from {', '.join(os.path.basename(f) for f in args.unlabelled_file)}")
    if args.augment_copies:
        settings.append(f"{args.augment_copies} augmented copies per text ({args.augment_share:.0%} of words)")
    return f"""## Distillation

Distilled by `bertcls distill` from the teacher `{os.path.abspath(args.teacher)}`
({t.num_hidden_layers} layers, width {t.hidden_size}). The student started from {made}.
Transfer set: {results.get("transfer_texts", 0):,} texts ({results.get("transfer_unlabelled", 0):,} without a label).
Settings: {"; ".join(settings)}. The teacher's logits were computed once per text and cached.
"""


if __name__ == "__main__":
    main(sys.argv[1:])
