"""The Trainer, with three changes that keep it fast and its outputs in order.

1. The optimizer's parameter groups come from optim.parameter_groups (layer-wise lr decay), built with the
   Trainer's own decay-name rule and optimizer class (`--optim`), so fused AdamW and friends still apply.
2. Length-grouped training batches read the precomputed `length` column (the stock Trainer removes unused
   columns, `length` among them, before it builds the sampler, and then re-reads every row's input_ids), and
   their shuffle is seeded by seed + epoch. The stock sampler draws from the global RNG when an epoch starts,
   so a run resumed after the first epoch trained on a different order than the run it continues.
3. Evaluation and prediction run in dataset order. Under `group_by_length` the stock Trainer also shuffles
   evaluation batches by length; `predict_in_order` sorts by length itself and puts the rows back.
"""

import numpy as np
import torch
from torch.utils.data import SequentialSampler
from transformers import Trainer
from transformers.trainer_pt_utils import LengthGroupedSampler

from .optim import parameter_groups


class ClassificationTrainer(Trainer):
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
