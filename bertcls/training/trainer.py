"""The Trainer, with the changes that keep it fast, its outputs in order, and its losses right.

1. The optimizer's parameter groups come from optim.parameter_groups (layer-wise lr decay), built with the
   Trainer's own decay-name rule and optimizer class (`--optim`), so fused AdamW and friends still apply.
2. Length-grouped training batches read the precomputed `length` column in one go (the stock Trainer removes unused
   columns, `length` among them, before it builds the sampler, and then re-reads every row's input_ids), and
   their shuffle is seeded by seed + epoch. The stock sampler draws from the global RNG when an epoch starts,
   so a run resumed after the first epoch trained on a different order than the run it continues.
3. Evaluation and prediction run in dataset order. Under `group_by_length` the stock Trainer also shuffles
   evaluation batches by length; `predict_in_order` sorts by length itself and puts the rows back.
4. The loss is computed here, from the logits, by losses.ClassificationLoss (class weights, focal, multi-label BCE,
   R-Drop), for the stock head and the custom head alike. It is a per-batch mean, so the Trainer divides it by the
   gradient-accumulation steps. Because BERT-family `forward` takes `**kwargs`, the stock Trainer (transformers
   5.24) assumes the model sums its loss over `num_items_in_batch` and compensates: it multiplies the loss by the
   number of processes and stops dividing it by gradient_accumulation_steps. With a mean loss that made every
   loss and gradient come out times the process count under DDP (1.386 for 0.693 on 2 processes) and times the
   accumulation steps with accumulation.
5. The evaluation loss is the mean over the whole (gathered) set, like every other metric. The stock loop
   averages per-batch means; under DDP the last batches are padded with repeated rows so every process gets a
   full batch, and those repeats leak into the batch means (gather_for_metrics drops repeated rows from the
   predictions, not from a batch's already-averaged loss).
6. `--adversarial fgm` adds an adversarial forward/backward per step (training_step), `--rdrop_alpha` runs each
   batch twice with different dropout in one forward pass (compute_loss).
"""

import json
import logging
import os
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import SequentialSampler
from transformers import (
    DataCollatorWithPadding,
    EarlyStoppingCallback,
    PreTrainedTokenizerBase,
    Trainer,
    TrainingArguments,
)
from transformers.trainer_callback import TrainerState
from transformers.trainer_pt_utils import LengthGroupedSampler

from bertcls.data.tokenization import aggregate_windows
from bertcls.errors import UserError
from bertcls.evaluation.decision import probabilities
from bertcls.evaluation.metrics import LOWER_IS_BETTER
from bertcls.evaluation.outputs import labelled_rows
from bertcls.files import write_json
from bertcls.model.losses import ClassificationLoss, build_loss
from bertcls.model.runtime import trained_labels
from bertcls.training.adversarial import FGM
from bertcls.training.optim import parameter_groups

logger = logging.getLogger(__name__)


class ClassificationTrainer(Trainer):
    # compute_loss returns a per-batch mean: the Trainer divides it by the gradient-accumulation steps.
    loss_is_scaled_for_ga = False

    def __init__(self, *args, loss: ClassificationLoss | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        # Our loss never uses the Trainer's count of label items, so it need not be counted (or gathered under DDP).
        self.model_accepts_loss_kwargs = False
        self.fixed_loss = loss is not None
        self.loss = loss if loss is not None else loss_for(self.args, self.model.config, self.train_dataset)
        self.fgm = None
        if getattr(self.args, "adversarial", "none") == "fgm":
            if self.is_deepspeed_enabled or self.is_fsdp_enabled:
                raise UserError(
                    "--adversarial fgm runs two backward passes per step, which DeepSpeed and FSDP do not allow",
                    fix="use plain DDP (accelerate launch --multi_gpu) or drop --adversarial",
                )
            self.current_fgm()

    def current_fgm(self) -> FGM:
        """FGM on the current model's word embeddings, with the current epsilon (a hyperparameter-search trial
        builds a new model and may change the arguments)."""
        embeddings = self.accelerator.unwrap_model(self.model).get_input_embeddings()
        if self.fgm is None or self.fgm.weight is not embeddings.weight or self.fgm.epsilon != self.args.adv_epsilon:
            self.fgm = FGM(embeddings, self.args.adv_epsilon)
        return self.fgm

    def _hp_search_setup(self, trial):
        super()._hp_search_setup(trial)
        if trial is not None and not self.fixed_loss:  # the trial's arguments may change the loss (rdrop, focal...)
            self.loss = loss_for(self.args, self.model.config, self.train_dataset)

    def create_optimizer(self, model=None):
        if self.optimizer is None:
            opt_model = model if model is not None else self.model
            optimizer_cls, optimizer_kwargs = self.get_optimizer_cls_and_kwargs(self.args, opt_model)
            groups = parameter_groups(
                opt_model,
                decay_parameter_names=set(self.get_decay_parameter_names(opt_model)),
                learning_rate=self.args.learning_rate,
                weight_decay=self.args.weight_decay,
                layerwise_lr_decay=getattr(self.args, "layerwise_lr_decay", 1.0),
                num_layers=getattr(opt_model.config, "num_hidden_layers", None),
            )
            self.optimizer = optimizer_cls(groups, **optimizer_kwargs)
        return self.optimizer

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        """The model's logits scored by self.loss; under R-Drop (training only) each row runs twice in one batch,
        so dropout differs between the copies and DDP sees one ordinary forward/backward."""
        labels = inputs.get("labels")
        features = {k: v for k, v in inputs.items() if k != "labels"}
        if labels is None:
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        if self.loss.rdrop_alpha > 0 and model.training:
            outputs = model(**{k: torch.cat([v, v]) for k, v in features.items()})
            logits_a, logits_b = outputs.logits.chunk(2)
            loss = self.loss.rdrop(logits_a, logits_b, labels)
            outputs.logits = logits_a
        else:
            outputs = model(**features)
            loss = self.loss(outputs.logits, labels)
        return (loss, outputs) if return_outputs else loss

    def training_step(self, model, inputs, num_items_in_batch=None):
        if self.fgm is None:
            return super().training_step(model, inputs, num_items_in_batch)
        fgm = self.current_fgm()
        model.train()
        if hasattr(self.optimizer, "train") and callable(self.optimizer.train):
            self.optimizer.train()
        inputs = self._prepare_inputs(inputs)
        # Both losses are scaled like the Trainer scales its own: divided by this step's accumulation count.
        steps = self.current_gradient_accumulation_steps
        # The clean backward only accumulates locally. Under DDP the adversarial backward then averages the clean
        # and adversarial gradients together (when this micro-batch syncs at all): one all-reduce per step, as
        # without FGM. The perturbation follows this process's own gradient of this micro-batch.
        with self.accelerator.no_sync(model), fgm.capture_gradient():
            with self.compute_loss_context_manager():
                loss = self.compute_loss(model, inputs)
            self.accelerator.backward(loss / steps)
        with fgm.perturbed(inputs["input_ids"]):
            with self.compute_loss_context_manager():
                adversarial_loss = self.compute_loss(model, inputs)
            self.accelerator.backward(adversarial_loss / steps)
        return (loss / steps).detach()  # the logged training loss is the clean one

    def _get_train_sampler(self, train_dataset=None):
        # self.train_dataset: the same rows in the same order as the column-stripped copy passed in, with `length`.
        dataset = self.train_dataset
        if self.args.train_sampling_strategy != "group_by_length" or "length" not in dataset.column_names:
            return super()._get_train_sampler(dataset)
        # [:] reads the column into a list at once; the lazy datasets column read each row's length one by one
        # (13.8 s per epoch at 100k rows).
        seed = self.args.data_seed if self.args.data_seed is not None else self.args.seed
        return EpochSeededLengthGroupedSampler(
            self.args.train_batch_size * self.args.gradient_accumulation_steps, lengths=dataset["length"][:], seed=seed
        )

    def evaluation_loop(
        self, dataloader, description, prediction_loss_only=None, ignore_keys=None, metric_key_prefix="eval"
    ):
        # The logits are kept even when only the loss is asked for (no compute_metrics): the loss is computed from them.
        output = super().evaluation_loop(dataloader, description, False, ignore_keys, metric_key_prefix)
        key = f"{metric_key_prefix}_loss"
        if key in output.metrics and output.predictions is not None and output.label_ids is not None:
            output.metrics[key] = self.whole_set_loss(output.predictions, output.label_ids)  # change 5
        return output

    def whole_set_loss(self, logits, labels) -> float:
        """The run's loss (class weights, focal, multi-label BCE as configured; no R-Drop term) averaged over
        every row once."""
        logits = logits[0] if isinstance(logits, tuple) else logits
        return self.loss(torch.from_numpy(np.asarray(logits)).float(), torch.from_numpy(np.asarray(labels))).item()

    def _get_eval_sampler(self, eval_dataset):
        if self.args.world_size <= 1:
            return SequentialSampler(eval_dataset)
        return None  # accelerate shards the dataset in order and gather_for_metrics restores it


@dataclass(frozen=True)
class LabelKind:
    """What labelled_rows needs to know of a label space."""

    regression: bool
    multi_label: bool = False


class EpochSeededLengthGroupedSampler(LengthGroupedSampler):
    """Length-grouped batches shuffled by a generator seeded with seed + epoch (the Trainer calls set_epoch), so
    epoch k's order is the same in an uninterrupted run, a resumed run, and on every DDP rank."""

    def __init__(self, batch_size: int, lengths: list[int], seed: int):
        super().__init__(batch_size, lengths=lengths, generator=torch.Generator())
        self.seed = seed
        self.set_epoch(0)

    def set_epoch(self, epoch: int) -> None:
        self.generator.manual_seed(self.seed + epoch)


def loss_for(args, config, train_dataset=None) -> ClassificationLoss:
    """The loss the training options ask for, over the model's labels; class_weights auto counts train's labels."""
    labels = trained_labels(config)
    label_ids = None
    if "label" in (getattr(train_dataset, "column_names", None) or ()) and not labels.multi_label:
        label_ids = train_dataset["label"][:]
    return build_loss(args, labels, label_ids)


def build_trainer(
    model,
    args,
    tokenizer,
    train,
    validation,
    compute_metrics,
    callbacks=(),
    model_init=None,
    pad_to_length=None,
    trainer_class=None,
    **trainer_options,
) -> ClassificationTrainer:
    """The run's Trainer: length-sorted evaluation rows, per-batch padding (every row to `pad_to_length` under
    --pad_to_max_length), our loss, and early stopping when asked. `model_init` (instead of `model`) builds a fresh
    model for every hyperparameter-search trial. `trainer_class`
    (a ClassificationTrainer subclass, e.g. distillation's) gets `trainer_options` as well."""
    check_metric_for_best_model(args, compute_metrics)
    callbacks = list(callbacks)
    if args.early_stopping_patience is not None:
        callbacks.append(EarlyStoppingCallback(args.early_stopping_patience, args.early_stopping_threshold))
    try:
        return (trainer_class or ClassificationTrainer)(
            model=model,
            model_init=model_init,
            args=args,
            train_dataset=train,
            # Sorted longest first: evaluation batches then hold rows of similar length (little padding).
            eval_dataset=validation.select(longest_first(validation)) if validation is not None else None,
            processing_class=tokenizer,
            data_collator=make_data_collator(tokenizer, args, pad_to_length),
            compute_metrics=compute_metrics,
            callbacks=callbacks,
            **trainer_options,
        )
    except (ValueError, ImportError) as e:  # the Trainer's own checks of the flags (fsdp, torch_compile_backend ...)
        text = " ".join(str(e).split())[:300]
        raise UserError(
            f"the Trainer refuses these arguments: {text}", fix="change the flag it names (see --help)"
        ) from None


def check_evaluation(args, validation, splits) -> None:
    """Without validation rows evaluation is off; early stopping cannot work then, and an evaluation-only run has
    nothing to do: say so before training."""
    if validation is not None:
        return
    if args.do_eval and not args.do_train and "test" not in splits:
        raise UserError("--do_eval: there is no validation data to evaluate", fix="pass --validation_file")
    if args.eval_strategy == "no":
        return
    if args.early_stopping_patience is not None or args.load_best_model_at_end:
        raise UserError(
            "--early_stopping_patience / --load_best_model_at_end need validation rows, and there are none",
            fix="pass --validation_file, or a --validation_split_percentage above 0",
        )
    logger.info("no validation split: evaluation during training is off")
    args.eval_strategy = "no"


def check_metric_for_best_model(args, compute_metrics) -> None:
    """The metric that picks the best checkpoint exists for this task. Regression: the default becomes mse (lower
    is better), and the Trainer's greater_is_better (which it sets by whether the name ends in `loss`) is set for
    mse, rmse, mae unless given."""
    from bertcls.config.recipes import given_fields

    given = given_fields(args)
    if (
        getattr(compute_metrics, "regression", False)
        and args.metric_for_best_model
        and "metric_for_best_model" not in given
    ):
        if args.metric_for_best_model != "mse":
            logger.info("regression: the best checkpoint is the one with the lowest eval_mse")
        args.metric_for_best_model = "mse"
    if args.metric_for_best_model and "greater_is_better" not in given:
        args.greater_is_better = not args.metric_for_best_model.removeprefix("eval_").endswith(LOWER_IS_BETTER)
    metric = args.metric_for_best_model
    known = compute_metrics.keys() if compute_metrics is not None else None
    if not metric or known is None:
        return
    name = metric.removeprefix("eval_")
    known = (known - {"samples"}) | {"loss"}
    if name not in known:
        raise UserError(
            f"--metric_for_best_model {metric}: evaluation reports no such metric",
            fix=f"use one of {', '.join(sorted(known))}",
        )


def make_data_collator(
    tokenizer: PreTrainedTokenizerBase, args: TrainingArguments, pad_to_length: int | None = None
) -> DataCollatorWithPadding:
    """Dynamic padding: each batch is padded to its own longest row, rounded up to `--pad_to_multiple_of`
    (default 8 under fp16/bf16, where tensor cores want multiples of 8; none in fp32). `pad_to_length`
    (--pad_to_max_length): every row to that many tokens, fixed shapes as in the reference script."""
    if pad_to_length:
        return DataCollatorWithPadding(tokenizer, padding="max_length", max_length=pad_to_length)
    multiple = getattr(args, "pad_to_multiple_of", None)
    if multiple is None:
        multiple = 8 if args.fp16 or args.bf16 else 1
    return DataCollatorWithPadding(tokenizer, pad_to_multiple_of=multiple if multiple > 1 else None)


def longest_first(dataset) -> np.ndarray:
    """Row order from longest to shortest: batches of similar length need little padding, and the largest
    batch comes first, so running out of memory shows at once."""
    return np.argsort(-np.asarray(dataset["length"][:]), kind="stable")


def predict_in_order(trainer: Trainer, dataset, metric_key_prefix: str = "test"):
    """trainer.predict over rows sorted longest first, with outputs back in dataset order."""
    order = longest_first(dataset)
    output = trainer.predict(dataset.select(order), metric_key_prefix=metric_key_prefix)
    logits = output.predictions[0] if isinstance(output.predictions, tuple) else output.predictions
    restored = np.empty_like(logits)
    restored[order] = logits
    return restored, output.metrics


def finished_checkpoint(resume_from: str | None) -> bool:
    """Whether the checkpoint to resume from is the end of training (its global_step reached max_steps)."""
    if not resume_from:
        return False
    state = TrainerState.load_from_json(os.path.join(resume_from, "trainer_state.json"))
    return state.max_steps > 0 and state.global_step >= state.max_steps


def train_and_save(trainer: Trainer, train, resume_from: str | None, interrupt) -> dict:
    """Train (or resume), then save the model, trainer_state.json and train_results.json; returns the training
    metrics. An interrupted run exits with status 130 once its checkpoint is saved, writing no model or results.

    Resuming from a checkpoint at the end of training trains nothing (transformers 5.24 would train one step past
    max_steps, and a finished run resumed would rewrite its train results): the checkpoint's model is saved and
    evaluated, and the earlier train_results.json is kept."""
    out = trainer.args.output_dir
    if finished_checkpoint(resume_from):
        logger.warning("%s is the end of training: nothing to resume, evaluating its model", resume_from)
        trainer._load_from_checkpoint(resume_from)  # what train(resume_from_checkpoint=...) itself loads
        final_state = os.path.join(out, "trainer_state.json")
        trainer.state = TrainerState.load_from_json(
            final_state if os.path.isfile(final_state) else os.path.join(resume_from, "trainer_state.json")
        )
        metrics = {}
        previous = os.path.join(out, "train_results.json")
        if os.path.isfile(previous):
            with open(previous, encoding="utf-8") as f:
                metrics = json.load(f)
    else:
        interrupt.install()
        try:
            metrics = trainer.train(resume_from_checkpoint=resume_from).metrics
        finally:
            interrupt.uninstall()
        interrupt.exit_if_stopped(out)
    trainer.save_model()  # unwrapped model + tokenizer (the best under early stopping), main process only
    if trainer.is_world_process_zero():
        trainer.state.save_to_json(os.path.join(out, "trainer_state.json"))
        write_json(os.path.join(out, "train_results.json"), metrics)
    return {**metrics, "train_samples": len(train)}


def check_task_options(args, labels) -> None:
    """Options that only mean something for classes, refused in one line for a regression task."""
    if labels.regression and args.find_label_issues:
        raise UserError(
            "--find_label_issues ranks rows whose class looks wrong, and this is a regression task", fix="drop it"
        )


def split_report_rows(references, labels) -> np.ndarray:
    """The rows of a split that carry a gold label (test rows labelled -1 or empty are unlabelled)."""
    rows = labelled_rows(np.asarray(references), labels)
    return np.arange(len(references)) if rows is None else rows


def predict_split(trainer, dataset, prefix, compute_metrics, windows=None, aggregation="mean"):
    """Logits for every row of a tokenized split, in row order, and its metrics when it is labelled.

    With `windows` (tokenization.encode_windows of the same rows), every window is classified and each row's
    logits combine its windows' logits; the metrics are then scored on the combined logits. A test split whose
    rows are only partly labelled (label -1 or empty: unlabelled) is predicted whole and scored on its labelled
    rows; `<prefix>_unlabelled` counts the others."""
    if "label" in dataset.column_names and not getattr(compute_metrics, "multi_label", False):
        references = np.asarray(dataset["label"][:])
        kind = LabelKind(getattr(compute_metrics, "regression", False))
        rows = labelled_rows(references, kind)
        if rows is not None:
            logits, metrics = predict_split(
                trainer, dataset.remove_columns("label"), prefix, compute_metrics, windows, aggregation
            )
            if len(rows):
                probs = probabilities(logits[rows], False)
                scores = compute_metrics.score(probs, references[rows])
                metrics.update({f"{prefix}_{k}": v for k, v in scores.items()})
            metrics[f"{prefix}_unlabelled"] = len(references) - len(rows)
            return logits, metrics
    if windows is None:
        return predict_in_order(trainer, dataset, prefix)
    unlabelled = windows.remove_columns([c for c in ("label",) if c in windows.column_names])
    window_logits, metrics = predict_in_order(trainer, unlabelled, prefix)
    logits = aggregate_windows(window_logits, windows["row"], len(dataset), aggregation)
    metrics[f"{prefix}_windows"] = len(windows)
    if "label" in dataset.column_names:
        scores = compute_metrics.score(
            probabilities(logits, compute_metrics.multi_label), np.asarray(dataset["label"][:])
        )
        metrics.update({f"{prefix}_{k}": v for k, v in scores.items()})
    return logits, metrics
