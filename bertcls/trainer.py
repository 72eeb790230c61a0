"""The Trainer, with the changes that keep it fast, its outputs in order, and its loss ours.

1. The optimizer's parameter groups come from optim.parameter_groups (layer-wise lr decay), built with the
   Trainer's own decay-name rule and optimizer class (`--optim`), so fused AdamW and friends still apply.
2. Length-grouped training batches read the precomputed `length` column. The stock Trainer removes unused
   columns, `length` among them, before it builds the sampler, and then re-reads every row's input_ids.
3. Evaluation and prediction run in dataset order. Under `group_by_length` the stock Trainer also shuffles
   evaluation batches by length; `predict_in_order` sorts by length itself and puts the rows back.
4. The loss is computed here, from the logits, by losses.ClassificationLoss (class weights, focal, multi-label BCE,
   R-Drop), for the stock head and the custom head alike. It is a per-batch mean, so the Trainer divides it by the
   gradient-accumulation steps. (transformers 5.24 counts BertForSequenceClassification as normalizing its own
   loss over the accumulated batch, which it does not: with the stock loss, gradient_accumulation_steps 2 doubled
   the loss and the gradients; and under DDP it multiplied the eval loss by the number of processes.)
5. `--adversarial fgm` adds an adversarial forward/backward per step (training_step), `--rdrop_alpha` runs each
   batch twice with different dropout in one forward pass (compute_loss).
"""

import logging

import numpy as np
import torch
from torch.utils.data import SequentialSampler
from transformers import DataCollatorWithPadding, EarlyStoppingCallback, Trainer

from .adversarial import FGM
from .errors import UserError
from .labels import LabelSpace
from .losses import MULTI_LABEL, ClassificationLoss, build_loss
from .metrics import probabilities
from .optim import parameter_groups
from .tokenization import aggregate_windows

logger = logging.getLogger(__name__)


class ClassificationTrainer(Trainer):
    # compute_loss returns a per-batch mean: the Trainer divides it by the gradient-accumulation steps.
    loss_is_scaled_for_ga = False

    def __init__(self, *args, loss: ClassificationLoss | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        # Our loss never uses the Trainer's count of label items, so it need not be counted (or gathered under DDP).
        self.model_accepts_loss_kwargs = False
        self.loss = loss if loss is not None else loss_for(self.args, self.model.config, self.train_dataset)
        self.fgm = None
        if getattr(self.args, "adversarial", "none") == "fgm":
            if self.is_deepspeed_enabled or self.is_fsdp_enabled:
                raise UserError(
                    "--adversarial fgm runs two backward passes per step, which DeepSpeed and FSDP do not allow",
                    fix="use plain DDP (accelerate launch --multi_gpu) or drop --adversarial",
                )
            self.fgm = FGM(self.accelerator.unwrap_model(self.model).get_input_embeddings(), self.args.adv_epsilon)

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
        model.train()
        if hasattr(self.optimizer, "train") and callable(self.optimizer.train):
            self.optimizer.train()
        inputs = self._prepare_inputs(inputs)
        # Both losses are scaled like the Trainer scales its own: divided by this step's accumulation count.
        steps = self.current_gradient_accumulation_steps
        # The clean backward only accumulates locally. Under DDP the adversarial backward then averages the clean
        # and adversarial gradients together (when this micro-batch syncs at all): one all-reduce per step, as
        # without FGM. The perturbation follows this process's own gradient of this micro-batch.
        with self.accelerator.no_sync(model), self.fgm.capture_gradient():
            with self.compute_loss_context_manager():
                loss = self.compute_loss(model, inputs)
            self.accelerator.backward(loss / steps)
        with self.fgm.perturbed():
            with self.compute_loss_context_manager():
                adversarial_loss = self.compute_loss(model, inputs)
            self.accelerator.backward(adversarial_loss / steps)
        return (loss / steps).detach()  # the logged training loss is the clean one

    def _get_train_sampler(self, train_dataset=None):
        # Same rows in the same order as the column-stripped copy the Trainer passes in, but with `length` kept.
        return super()._get_train_sampler(self.train_dataset)

    def _get_eval_sampler(self, eval_dataset):
        if self.args.world_size <= 1:
            return SequentialSampler(eval_dataset)
        return None  # accelerate shards the dataset in order and gather_for_metrics restores it


def loss_for(args, config, train_dataset=None) -> ClassificationLoss:
    """The loss the training options ask for, over the model's labels; class_weights auto counts train's labels."""
    names = tuple(config.id2label[i] for i in range(config.num_labels))
    labels = LabelSpace(names, multi_label=getattr(config, "problem_type", None) == MULTI_LABEL)
    label_ids = None
    if "label" in (getattr(train_dataset, "column_names", None) or ()) and not labels.multi_label:
        label_ids = train_dataset["label"]
    return build_loss(args, labels, label_ids)


def build_trainer(model, args, tokenizer, train, validation, compute_metrics, callbacks=()) -> ClassificationTrainer:
    """The run's Trainer: length-sorted evaluation rows, per-batch padding, our loss, and early stopping when asked."""
    check_metric_for_best_model(args, compute_metrics)
    callbacks = list(callbacks)
    if args.early_stopping_patience is not None:
        callbacks.append(EarlyStoppingCallback(args.early_stopping_patience, args.early_stopping_threshold))
    return ClassificationTrainer(
        model=model,
        args=args,
        train_dataset=train,
        # Sorted longest first: evaluation batches then hold rows of similar length (little padding).
        eval_dataset=validation.select(longest_first(validation)) if validation is not None else None,
        processing_class=tokenizer,
        data_collator=DataCollatorWithPadding(tokenizer, pad_to_multiple_of=8 if args.fp16 or args.bf16 else None),
        compute_metrics=compute_metrics,
        callbacks=callbacks,
    )


def check_evaluation(args, validation) -> None:
    """Without validation rows evaluation is off; early stopping cannot work then, so say so before training."""
    if validation is not None or args.eval_strategy == "no":
        return
    if args.early_stopping_patience is not None or args.load_best_model_at_end:
        raise UserError(
            "--early_stopping_patience / --load_best_model_at_end need validation rows, and there are none",
            fix="pass --validation_file, or a --validation_split_percentage above 0",
        )
    logger.info("no validation split: evaluation during training is off")
    args.eval_strategy = "no"


def check_metric_for_best_model(args, compute_metrics) -> None:
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


def longest_first(dataset) -> np.ndarray:
    """Row order from longest to shortest: batches of similar length need little padding, and the largest
    batch comes first, so running out of memory shows at once."""
    return np.argsort(-np.asarray(dataset["length"]), kind="stable")


def predict_in_order(trainer: Trainer, dataset, metric_key_prefix: str = "test"):
    """trainer.predict over rows sorted longest first, with outputs back in dataset order."""
    order = longest_first(dataset)
    output = trainer.predict(dataset.select(order), metric_key_prefix=metric_key_prefix)
    logits = output.predictions[0] if isinstance(output.predictions, tuple) else output.predictions
    restored = np.empty_like(logits)
    restored[order] = logits
    return restored, output.metrics


def predict_split(trainer, dataset, prefix, compute_metrics, windows=None, aggregation="mean"):
    """Logits for every row of a tokenized split, in row order, and its metrics when it is labelled.

    With `windows` (tokenization.encode_windows of the same rows), every window is classified and each row's
    logits combine its windows' logits; the metrics are then scored on the combined logits."""
    if windows is None:
        return predict_in_order(trainer, dataset, prefix)
    unlabelled = windows.remove_columns([c for c in ("label",) if c in windows.column_names])
    window_logits, metrics = predict_in_order(trainer, unlabelled, prefix)
    logits = aggregate_windows(window_logits, windows["row"], len(dataset), aggregation)
    metrics[f"{prefix}_windows"] = len(windows)
    if "label" in dataset.column_names:
        scores = compute_metrics.score(
            probabilities(logits, compute_metrics.multi_label), np.asarray(dataset["label"])
        )
        metrics.update({f"{prefix}_{k}": v for k, v in scores.items()})
    return logits, metrics
