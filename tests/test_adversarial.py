"""The Trainer's own loss under gradient accumulation, FGM's extra pass, and R-Drop, against hand computations."""

import copy

import numpy as np
import pytest
import torch
from datasets import Dataset
from torch.nn import functional as F
from transformers import AutoModelForSequenceClassification, DataCollatorWithPadding

from bertcls.config.arguments import ModelArguments
from bertcls.config.training_arguments import ClassificationTrainingArguments
from bertcls.training.trainer import ClassificationTrainer

NO_DROPOUT = {"hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0}


@pytest.fixture
def rows(tokenizer):
    rng = np.random.default_rng(1)
    texts = ["".join(rng.choice(list("好坏很不错差极了服务房间"), int(n))) for n in rng.integers(4, 20, 32)]
    enc = tokenizer(texts)
    return Dataset.from_dict(
        {**enc, "label": [int("好" in t) for t in texts], "length": [len(x) for x in enc["input_ids"]]}
    )


@pytest.fixture
def make_trainer(tiny_model, tokenizer, tmp_path):
    def make(dropout=False, train_dataset=None, **kwargs):
        torch.manual_seed(0)  # the same fresh classifier head every time
        model = AutoModelForSequenceClassification.from_pretrained(
            tiny_model, num_labels=2, **({} if dropout else NO_DROPOUT)
        )
        settings = {
            "output_dir": str(tmp_path),
            "eval_strategy": "no",
            "save_strategy": "no",
            "report_to": "none",
            "train_sampling_strategy": "sequential",
            "learning_rate": 1e-2,
            "warmup_steps": 0,
            "logging_steps": 1,
            **kwargs,
        }
        return ClassificationTrainer(
            model=model,
            args=ClassificationTrainingArguments(**settings),
            processing_class=tokenizer,
            data_collator=DataCollatorWithPadding(tokenizer),
            train_dataset=train_dataset,
        )

    return make


def batch_of(rows, tokenizer, start, stop):
    features = [
        {k: rows[i][k] for k in ("input_ids", "token_type_ids", "attention_mask", "label")} for i in range(start, stop)
    ]
    return DataCollatorWithPadding(tokenizer)(features)


@pytest.mark.parametrize("options", [{}, {"rdrop_alpha": 1.0}, {"loss": "focal"}])
def test_gradient_accumulation_gives_the_same_step_and_loss(make_trainer, rows, options):
    """One step over 16 rows equals two accumulated micro-batches of 8 (the stock loss doubled it in 5.24)."""
    after = {}
    for batch_size, accumulation in ((16, 1), (8, 2)):
        trainer = make_trainer(
            train_dataset=rows.select(range(16)),
            per_device_train_batch_size=batch_size,
            gradient_accumulation_steps=accumulation,
            max_steps=1,
            **options,
        )
        assert trainer.loss.rdrop_alpha == options.get("rdrop_alpha", 0.0)
        assert trainer.loss.kind == options.get("loss", "ce")
        trainer.train()
        loss = [e["loss"] for e in trainer.state.log_history if "loss" in e][0]
        after[accumulation] = (loss, trainer.model.classifier.weight.detach().clone())
    assert after[1][0] == pytest.approx(after[2][0], rel=1e-4)
    assert torch.allclose(after[1][1], after[2][1], atol=1e-6)


def test_class_weights_auto_count_the_trainers_train_rows(make_trainer, rows):
    trainer = make_trainer(train_dataset=rows, class_weights=["auto"])
    counts = np.bincount(rows["label"], minlength=2)
    weights = trainer.loss.class_weights.numpy()
    assert weights.mean() == pytest.approx(1.0) and weights[0] * counts[0] == pytest.approx(weights[1] * counts[1])


def fgm_by_hand(model, batch, epsilon, scale=1.0):
    """Clean loss backward, embeddings moved by epsilon * g / ||g||, adversarial loss backward, embeddings restored."""
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    embeddings = model.get_input_embeddings().weight
    before = embeddings.grad.clone() if embeddings.grad is not None else torch.zeros_like(embeddings)
    (F.cross_entropy(model(**inputs).logits, batch["labels"]) * scale).backward()
    g = embeddings.grad - before
    kept = embeddings.data.clone()
    embeddings.data += epsilon * g / g.norm()
    (F.cross_entropy(model(**inputs).logits, batch["labels"]) * scale).backward()
    embeddings.data.copy_(kept)


def test_fgm_step_matches_the_hand_computation_and_restores_the_embeddings(make_trainer, rows, tokenizer):
    trainer = make_trainer(adversarial="fgm", adv_epsilon=0.5)
    reference = copy.deepcopy(trainer.model)
    embeddings_before = trainer.model.get_input_embeddings().weight.detach().clone()
    batch = batch_of(rows, tokenizer, 0, 8)
    trainer.current_gradient_accumulation_steps = 1
    loss = trainer.training_step(trainer.model, dict(batch))
    assert torch.equal(trainer.model.get_input_embeddings().weight, embeddings_before)
    reference.train()
    fgm_by_hand(reference, batch, 0.5)
    clean = F.cross_entropy(reference(**{k: v for k, v in batch.items() if k != "labels"}).logits, batch["labels"])
    assert loss.item() == pytest.approx(clean.item(), rel=1e-5)  # the logged loss is the clean one
    ours, theirs = dict(trainer.model.named_parameters()), dict(reference.named_parameters())
    for name in ours:
        assert torch.allclose(ours[name].grad, theirs[name].grad, atol=1e-6), name
    # the adversarial pass really added something: the gradient is not the clean gradient alone
    clean_only = copy.deepcopy(trainer.model)
    clean_only.zero_grad()
    F.cross_entropy(clean_only(**{k: v for k, v in batch.items() if k != "labels"}).logits, batch["labels"]).backward()
    assert not torch.allclose(clean_only.classifier.weight.grad, ours["classifier.weight"].grad, atol=1e-6)


def test_fgm_under_accumulation_uses_each_micro_batch_own_gradient(make_trainer, rows, tokenizer):
    trainer = make_trainer(adversarial="fgm", adv_epsilon=1.0, gradient_accumulation_steps=2)
    reference = copy.deepcopy(trainer.model)
    trainer.current_gradient_accumulation_steps = 2
    first, second = batch_of(rows, tokenizer, 0, 8), batch_of(rows, tokenizer, 8, 16)
    trainer.training_step(trainer.model, dict(first))
    trainer.training_step(trainer.model, dict(second))
    reference.train()
    fgm_by_hand(reference, first, 1.0, scale=0.5)
    fgm_by_hand(reference, second, 1.0, scale=0.5)
    ours, theirs = dict(trainer.model.named_parameters()), dict(reference.named_parameters())
    for name in ours:
        assert torch.allclose(ours[name].grad, theirs[name].grad, atol=1e-6), name


def test_rdrop_runs_two_dropout_passes_in_one_forward(make_trainer, rows, tokenizer):
    trainer = make_trainer(dropout=True, rdrop_alpha=2.0)
    trainer.model.train()
    batch = batch_of(rows, tokenizer, 0, 8)
    calls = []
    handle = trainer.model.register_forward_hook(lambda m, i, o: calls.append(o.logits.shape[0]))
    torch.manual_seed(0)
    loss, outputs = trainer.compute_loss(trainer.model, dict(batch), return_outputs=True)
    handle.remove()
    assert calls == [16] and outputs.logits.shape == (8, 2)  # one forward over the doubled batch
    ce = F.cross_entropy(outputs.logits, batch["labels"])
    assert loss.item() > ce.item() * 0.5  # (CE_a + CE_b)/2 + alpha KL, with KL > 0 under dropout
    trainer.model.eval()
    eval_loss = trainer.compute_loss(trainer.model, dict(batch))
    with torch.no_grad():
        plain = F.cross_entropy(
            trainer.model(**{k: v for k, v in batch.items() if k != "labels"}).logits, batch["labels"]
        )
    assert eval_loss.item() == pytest.approx(plain.item(), rel=1e-5)  # no R-Drop outside training


def test_fgm_finds_the_word_embeddings_of_the_custom_head(tiny_model, tokenizer, tmp_path):
    from bertcls.model.checkpoints import load_config
    from bertcls.model.heads import EncoderClassifier, configure_head

    model_args = ModelArguments(model_name_or_path=tiny_model, head="mlp", pooling="mean")
    config = load_config(model_args)
    configure_head(config, model_args)
    config.num_labels = 2
    model = EncoderClassifier(config)
    args = ClassificationTrainingArguments(
        output_dir=str(tmp_path), adversarial="fgm", report_to="none", eval_strategy="no"
    )
    trainer = ClassificationTrainer(model=model, args=args, processing_class=tokenizer)
    assert trainer.fgm.weight is model.encoder.embeddings.word_embeddings.weight
