"""The Trainer, with five changes that keep it fast, its outputs in order and its losses right.

1. The optimizer's parameter groups come from optim.parameter_groups (layer-wise lr decay), built with the
   Trainer's own decay-name rule and optimizer class (`--optim`), so fused AdamW and friends still apply.
2. Length-grouped training batches read the precomputed `length` column (the stock Trainer removes unused
   columns, `length` among them, before it builds the sampler, and then re-reads every row's input_ids), and
   their shuffle is seeded by seed + epoch. The stock sampler draws from the global RNG when an epoch starts,
   so a run resumed after the first epoch trained on a different order than the run it continues.
3. Evaluation and prediction run in dataset order. Under `group_by_length` the stock Trainer also shuffles
   evaluation batches by length; `predict_in_order` sorts by length itself and puts the rows back.
4. The loss is taken as the batch mean the model returns. Because BERT-family `forward` takes `**kwargs`, the
   stock Trainer (transformers 5.24) assumes the model sums its loss over `num_items_in_batch` and compensates:
   it multiplies the loss by the number of processes and stops dividing it by gradient_accumulation_steps. Our
   models return a mean, so under DDP every loss (train, eval, test) came out times the process count (1.386 for
   0.693 on 2 processes) and so did the gradients; with accumulation, loss and gradients came out times the
   accumulation steps.
5. The evaluation loss is the mean over the whole (gathered) set, like every other metric. The stock loop
   averages per-batch means; under DDP the last batches are padded with repeated rows so every process gets a
   full batch, and those repeats leak into the batch means (gather_for_metrics drops repeated rows from the
   predictions, not from a batch's already-averaged loss).
"""

import numpy as np
import torch
from torch.utils.data import SequentialSampler
from transformers import Trainer
from transformers.trainer_pt_utils import LengthGroupedSampler

from .modeling import classification_loss
from .optim import parameter_groups


class ClassificationTrainer(Trainer):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # Sequence-classification models (stock heads and bertcls.modeling.EncoderClassifier) average the loss over
        # the batch and ignore `num_items_in_batch`; telling the Trainer so keeps its loss scaling off (change 4).
        self.model_accepts_loss_kwargs = False

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

    def _get_train_sampler(self, train_dataset=None):
        # self.train_dataset: the same rows in the same order as the column-stripped copy passed in, with `length`.
        dataset = self.train_dataset
        if self.args.train_sampling_strategy != "group_by_length" or "length" not in dataset.column_names:
            return super()._get_train_sampler(dataset)
        seed = self.args.data_seed if self.args.data_seed is not None else self.args.seed
        return EpochSeededLengthGroupedSampler(
            self.args.train_batch_size * self.args.gradient_accumulation_steps, lengths=dataset["length"], seed=seed
        )

    def evaluation_loop(
        self, dataloader, description, prediction_loss_only=None, ignore_keys=None, metric_key_prefix="eval"
    ):
        output = super().evaluation_loop(dataloader, description, prediction_loss_only, ignore_keys, metric_key_prefix)
        key = f"{metric_key_prefix}_loss"
        if key in output.metrics and output.predictions is not None and output.label_ids is not None:
            output.metrics[key] = self.whole_set_loss(output.predictions, output.label_ids)  # change 5
        return output

    def whole_set_loss(self, logits, labels) -> float:
        """The training loss (cross-entropy, or binary cross-entropy per label for multi-label) averaged over
        every row once: what the stock heads and EncoderClassifier compute per batch."""
        logits = logits[0] if isinstance(logits, tuple) else logits
        problem_type = getattr(self.model.config, "problem_type", None) or "single_label_classification"
        loss = classification_loss(
            torch.from_numpy(np.asarray(logits)).float(), torch.from_numpy(labels), problem_type
        )
        return loss.item()

    def _get_eval_sampler(self, eval_dataset):
        if self.args.world_size <= 1:
            return SequentialSampler(eval_dataset)
        return None  # accelerate shards the dataset in order and gather_for_metrics restores it


class EpochSeededLengthGroupedSampler(LengthGroupedSampler):
    """Length-grouped batches shuffled by a generator seeded with seed + epoch (the Trainer calls set_epoch), so
    epoch k's order is the same in an uninterrupted run, a resumed run, and on every DDP rank."""

    def __init__(self, batch_size: int, lengths: list[int], seed: int):
        super().__init__(batch_size, lengths=lengths, generator=torch.Generator())
        self.seed = seed
        self.set_epoch(0)

    def set_epoch(self, epoch: int) -> None:
        self.generator.manual_seed(self.seed + epoch)


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
