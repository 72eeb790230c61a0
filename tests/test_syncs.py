"""Host syncs per training step: the default path adds none over the stock Trainer, and neither do the options.

On a GPU every `.item()`, `.nonzero()`, `.tolist()`, `.cpu()` or tensor in an `if` makes the host wait for the
device. On CPU they are free, so the test counts the calls themselves while the Trainer trains, outside the
model's own forward (transformers' mask code checks `padding_mask.all()` in every forward, and FGM's extra
forward pass is the option itself)."""

import functools
from collections import Counter

import numpy as np
import pytest
import torch
from datasets import Dataset
from transformers import AutoModelForSequenceClassification, DataCollatorWithPadding, Trainer, TrainingArguments

from bertcls.config.training_arguments import ClassificationTrainingArguments
from bertcls.training import interrupt
from bertcls.training.trainer import ClassificationTrainer

SYNCS = ("item", "nonzero", "tolist", "cpu", "numpy", "__bool__")
STEPS = 6


@pytest.fixture
def rows(tokenizer):
    rng = np.random.default_rng(2)
    texts = ["".join(rng.choice(list("好坏很不错差极了服务房间"), int(n))) for n in rng.integers(4, 20, 48)]
    enc = tokenizer(texts)
    labels = [int("好" in t) + int("差" in t) for t in texts]  # three classes, for class weights
    return Dataset.from_dict({**enc, "label": labels, "length": [len(x) for x in enc["input_ids"]]})


def count_syncs(trainer, monkeypatch) -> Counter:
    counts = Counter()
    in_forward = []

    def counting(name):
        original = getattr(torch.Tensor, name)

        def counted(self, *args, **kwargs):
            if not in_forward:
                counts[name] += 1
            return original(self, *args, **kwargs)

        return counted

    forward = trainer.model.forward

    @functools.wraps(forward)  # the Trainer reads the forward's signature to choose the input columns
    def model_forward(*args, **kwargs):
        in_forward.append(1)
        try:
            return forward(*args, **kwargs)
        finally:
            in_forward.pop()

    monkeypatch.setattr(trainer.model, "forward", model_forward)
    for name in SYNCS:
        monkeypatch.setattr(torch.Tensor, name, counting(name))
    trainer.train()
    monkeypatch.undo()
    return counts


SETTINGS = {
    "eval_strategy": "no",
    "save_strategy": "no",
    "report_to": "none",
    "max_steps": STEPS,
    "logging_steps": 1000,  # the loss is read (and synced) only at logging steps
    "per_device_train_batch_size": 8,
    "warmup_steps": 0,
}


def model(tiny_model):
    torch.manual_seed(0)
    return AutoModelForSequenceClassification.from_pretrained(tiny_model, num_labels=3)


def stock_trainer(tiny_model, tokenizer, rows, tmp_path):
    args = TrainingArguments(output_dir=str(tmp_path / "stock"), train_sampling_strategy="sequential", **SETTINGS)
    return Trainer(
        model=model(tiny_model),
        args=args,
        train_dataset=rows,
        processing_class=tokenizer,
        data_collator=DataCollatorWithPadding(tokenizer),
    )


@pytest.mark.parametrize(
    "options",
    [{}, {"adversarial": "fgm"}, {"class_weights": ["auto"]}, {"loss": "focal", "class_weights": ["auto"]}]
    + [{"rdrop_alpha": 1.0}],
    ids=["default", "fgm", "class_weights", "focal_weighted", "rdrop"],
)
def test_no_host_sync_over_the_stock_trainer(options, tiny_model, tokenizer, rows, tmp_path, monkeypatch):
    stock = count_syncs(stock_trainer(tiny_model, tokenizer, rows, tmp_path), monkeypatch)
    args = ClassificationTrainingArguments(
        output_dir=str(tmp_path / "ours"), train_sampling_strategy="sequential", **SETTINGS, **options
    )
    ours = ClassificationTrainer(
        model=model(tiny_model),
        args=args,
        train_dataset=rows,
        processing_class=tokenizer,
        data_collator=DataCollatorWithPadding(tokenizer),
        callbacks=[interrupt.GracefulInterrupt()],
    )
    counted = count_syncs(ours, monkeypatch)
    assert ours.state.global_step == STEPS
    for name in SYNCS:
        assert counted[name] <= stock[name], (name, counted, stock)


def test_class_weights_move_to_the_device_once(tiny_model, tokenizer, rows, tmp_path, monkeypatch):
    args = ClassificationTrainingArguments(
        output_dir=str(tmp_path), train_sampling_strategy="sequential", class_weights=["auto"], **SETTINGS
    )
    trainer = ClassificationTrainer(
        model=model(tiny_model), args=args, train_dataset=rows, data_collator=DataCollatorWithPadding(tokenizer)
    )
    moved = []
    original = torch.Tensor.to

    def to(self, *a, **k):
        if self is trainer.loss.class_weights:
            moved.append(1)
        return original(self, *a, **k)

    monkeypatch.setattr(torch.Tensor, "to", to)
    trainer.train()
    assert len(moved) <= 1


def test_interrupt_agreement_under_ddp_runs_every_check_every_steps(monkeypatch):
    reduced = []
    monkeypatch.setattr(interrupt.dist, "is_available", lambda: True)
    monkeypatch.setattr(interrupt.dist, "is_initialized", lambda: True)
    monkeypatch.setattr(interrupt.dist, "get_world_size", lambda: 2)
    monkeypatch.setattr(interrupt.dist, "get_backend", lambda: "gloo")
    monkeypatch.setattr(interrupt.dist, "all_reduce", lambda flag, op: reduced.append(flag))
    callback = interrupt.GracefulInterrupt()
    state = type("State", (), {"global_step": 0})()
    control = type("Control", (), {"should_save": False, "should_training_stop": False})()
    for step in range(1, 31):
        state.global_step = step
        callback.on_step_end(None, state, control)
    assert len(reduced) == 30 // interrupt.CHECK_EVERY
