"""The Trainer subclass: in-order prediction under length grouping, precomputed lengths, parameter groups, losses
that do not scale with accumulation steps, and launches that must be distributed."""

import numpy as np
import pytest
import torch
from datasets import Dataset
from transformers import AutoModelForSequenceClassification, DataCollatorWithPadding, set_seed
from transformers import trainer as hf_trainer

from bertcls.config import training_arguments
from bertcls.config.training_arguments import ClassificationTrainingArguments
from bertcls.errors import UserError
from bertcls.training.optim import layer_depth, parameter_groups
from bertcls.training.trainer import ClassificationTrainer, make_data_collator, predict_in_order


@pytest.fixture
def rows(tokenizer):
    rng = np.random.default_rng(0)
    texts = ["好" * int(n) for n in rng.integers(3, 60, 120)]
    enc = tokenizer(texts)
    return Dataset.from_dict(
        {**enc, "label": [len(t) % 2 for t in texts], "length": [len(x) for x in enc["input_ids"]]}
    )


@pytest.fixture
def trainer_for(tiny_model, tokenizer, tmp_path):
    def make(**kwargs):
        model = AutoModelForSequenceClassification.from_pretrained(tiny_model, num_labels=2).eval()
        args = ClassificationTrainingArguments(
            output_dir=str(tmp_path), per_device_eval_batch_size=16, eval_strategy="no"
        )
        return ClassificationTrainer(
            model=model,
            args=args,
            processing_class=tokenizer,
            data_collator=DataCollatorWithPadding(tokenizer),
            **kwargs,
        )

    return make


def test_predictions_stay_in_input_order_under_length_grouping(trainer_for, rows):
    trainer = trainer_for()
    assert trainer.args.train_sampling_strategy == "group_by_length"
    logits, metrics = predict_in_order(trainer, rows)
    one = {k: torch.tensor(rows[k][7:8]) for k in ("input_ids", "attention_mask", "token_type_ids")}
    with torch.no_grad():
        expected = trainer.model(**one).logits.numpy()[0]
    assert np.allclose(logits[7], expected, atol=1e-5)
    output = trainer.predict(rows)
    assert output.label_ids.tolist() == rows["label"]


def test_length_grouped_sampler_reads_the_length_column(trainer_for, rows, monkeypatch):
    seen = {}
    original = hf_trainer.LengthGroupedSampler.__init__

    def spy(self, *args, lengths=None, **kwargs):
        seen["lengths"] = lengths
        return original(self, *args, lengths=lengths, **kwargs)

    monkeypatch.setattr(hf_trainer.LengthGroupedSampler, "__init__", spy)
    trainer_for(train_dataset=rows).get_train_dataloader()
    assert seen["lengths"] == rows["length"][:]
    # A plain list: the lazy datasets column reads one row per lookup (13.8 s per epoch for 100k rows).
    assert isinstance(seen["lengths"], list)


def test_layer_depth():
    assert layer_depth("bert.embeddings.word_embeddings.weight", 12, "bert") == 0
    assert layer_depth("bert.encoder.layer.0.attention.self.query.weight", 12, "bert") == 1
    assert layer_depth("bert.encoder.layer.11.output.dense.bias", 12, "bert") == 12
    assert layer_depth("bert.pooler.dense.weight", 12, "bert") == 13
    assert layer_depth("classifier.weight", 12, "bert") == 13
    # shared relative-position tables feed every layer: the embeddings' depth, not the head's
    assert layer_depth("deberta.encoder.rel_embeddings.weight", 12, "deberta") == 0
    assert layer_depth("deberta.encoder.LayerNorm.weight", 12, "deberta") == 0
    assert layer_depth("mpnet.encoder.relative_attention_bias.weight", 12, "mpnet") == 0
    assert layer_depth("classifier.out_proj.weight", 12, "electra") == 13


def test_without_layerwise_decay_there_are_two_groups(tiny_model):
    model = AutoModelForSequenceClassification.from_pretrained(tiny_model, num_labels=2)
    decay = {n for n, _ in model.named_parameters() if not n.endswith("bias") and "LayerNorm" not in n}
    groups = parameter_groups(model, decay, learning_rate=1e-3, weight_decay=0.1)
    assert [(g["name"], g["weight_decay"], g["lr"]) for g in groups] == [
        ("all/no_decay", 0.0, 1e-3),
        ("all/decay", 0.1, 1e-3),
    ]
    assert sum(len(g["params"]) for g in groups) == len(list(model.parameters()))


@pytest.mark.slow
def test_loss_and_gradients_do_not_grow_with_gradient_accumulation(tiny_model, tokenizer, rows, tmp_path):
    """transformers 5.24 reads BERT's `**kwargs` as "the model divides its loss by num_items_in_batch" and then
    skips the division by the accumulation steps: 8 rows x 2 steps logged twice the loss and gradient norm of
    16 rows x 1 step on the same 16 rows. Both must match."""
    first_step = {}
    for batch, accumulation in ((16, 1), (8, 2)):
        set_seed(0)  # the same fresh classifier head in both runs
        model = AutoModelForSequenceClassification.from_pretrained(
            tiny_model, num_labels=2, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0
        )
        args = ClassificationTrainingArguments(
            output_dir=str(tmp_path / str(accumulation)),
            per_device_train_batch_size=batch,
            gradient_accumulation_steps=accumulation,
            max_steps=1,
            logging_steps=1,
            train_sampling_strategy="sequential",
            eval_strategy="no",
            save_strategy="no",
            report_to=[],
        )
        trainer = ClassificationTrainer(
            model=model,
            args=args,
            train_dataset=rows,
            processing_class=tokenizer,
            data_collator=DataCollatorWithPadding(tokenizer),
        )
        trainer.train()
        first_step[accumulation] = trainer.state.log_history[0]
    assert first_step[1]["loss"] == pytest.approx(0.69, abs=0.05)  # a fresh 2-class head: about ln 2
    assert first_step[2]["loss"] == pytest.approx(first_step[1]["loss"], rel=1e-3)
    assert first_step[2]["grad_norm"] == pytest.approx(first_step[1]["grad_norm"], rel=1e-3)


def test_a_launch_the_trainer_does_not_see_as_distributed_is_an_error(tmp_path, monkeypatch):
    """Two launched processes that the Trainer sets up as two worlds of one would each train and write alone."""
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setattr(training_arguments, "distributed_accelerator_available", lambda: True)  # no CPU fallback
    with pytest.raises(UserError, match="2 processes were launched but the Trainer set up a world of 1") as error:
        ClassificationTrainingArguments(output_dir=str(tmp_path), report_to=[])
    assert "--use_cpu true" in error.value.fix


def test_evaluation_loss_is_the_mean_over_every_row(trainer_for, rows):
    """Reported with the other whole-set metrics; 120 rows in batches of 16 leave a last batch of 8."""
    trainer = trainer_for()
    logits, metrics = predict_in_order(trainer, rows)
    expected = torch.nn.functional.cross_entropy(torch.from_numpy(logits), torch.tensor(rows["label"])).item()
    assert metrics["test_loss"] == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize(
    ("flags", "expected"),
    [({}, None), ({"bf16": True}, 8), ({"pad_to_multiple_of": 8}, 8), ({"bf16": True, "pad_to_multiple_of": 1}, None)],
)
def test_data_collator_pads_each_batch_to_its_longest_row(tokenizer, tmp_path, flags, expected):
    args = ClassificationTrainingArguments(output_dir=str(tmp_path), use_cpu=True, **flags)
    collator = make_data_collator(tokenizer, args)
    assert collator.pad_to_multiple_of == expected
    batch = collator([tokenizer("好好"), tokenizer("好好好好好")])  # 4 and 7 tokens with [CLS]/[SEP]
    assert batch["input_ids"].shape == (2, 7 if expected is None else 8)
    assert batch["attention_mask"].sum().item() == 11


def test_layerwise_decay_places_shared_position_tables_and_refuses_albert():
    from transformers import (
        AlbertConfig,
        AlbertForSequenceClassification,
        DebertaV2Config,
        DebertaV2ForSequenceClassification,
        MPNetConfig,
        MPNetForSequenceClassification,
    )

    sizes = {"vocab_size": 99, "hidden_size": 16, "num_hidden_layers": 2, "num_attention_heads": 2}
    sizes["intermediate_size"] = 32
    lr, d, layers = 1e-3, 0.5, 2

    def lr_by_name(model):
        groups = parameter_groups(model, set(), learning_rate=lr, weight_decay=0.0, layerwise_lr_decay=d, num_layers=2)
        lr_of = {id(p): g["lr"] for g in groups for p in g["params"]}
        return {name: lr_of[id(p)] for name, p in model.named_parameters()}, groups

    deberta, groups = lr_by_name(
        DebertaV2ForSequenceClassification(
            DebertaV2Config(**sizes, relative_attention=True, norm_rel_ebd="layer_norm")
        )
    )
    embeddings = lr * d ** (layers + 1)
    assert deberta["deberta.encoder.rel_embeddings.weight"] == pytest.approx(embeddings)
    assert deberta["deberta.encoder.LayerNorm.weight"] == pytest.approx(embeddings)
    assert deberta["deberta.encoder.layer.1.output.dense.weight"] == pytest.approx(lr * d)
    assert deberta["classifier.weight"] == pytest.approx(lr)
    assert groups[0]["lr"] == lr  # head first: the Trainer logs the first group's rate
    mpnet, _ = lr_by_name(MPNetForSequenceClassification(MPNetConfig(**sizes)))
    assert mpnet["mpnet.encoder.relative_attention_bias.weight"] == pytest.approx(embeddings)
    with pytest.raises(UserError, match="not one set per encoder layer"):
        lr_by_name(AlbertForSequenceClassification(AlbertConfig(**sizes, embedding_size=8)))
