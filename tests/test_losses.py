"""losses.py: class weights, focal loss, multi-label BCE, R-Drop's symmetric KL; and the option checks."""

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from bertcls.config.recipes import parse_args
from bertcls.config.training_arguments import ClassificationTrainingArguments
from bertcls.data.labels import LabelSpace
from bertcls.errors import UserError
from bertcls.model.losses import (
    ClassificationLoss,
    binary_focal_loss,
    build_loss,
    class_weight_vector,
    focal_loss,
    symmetric_kl,
)


@pytest.fixture
def batch():
    g = torch.Generator().manual_seed(0)
    return torch.randn(12, 4, generator=g), torch.randint(0, 4, (12,), generator=g)


def args(tmp_path, **kwargs):
    return ClassificationTrainingArguments(output_dir=str(tmp_path), **kwargs)


def test_auto_class_weights_are_inverse_frequency_averaging_one():
    ids = [0] * 60 + [1] * 30 + [2] * 10
    w = class_weight_vector(["auto"], ids, ["a", "b", "c"]).numpy()
    assert w.mean() == pytest.approx(1.0)
    assert w[0] * 60 == pytest.approx(w[1] * 30) == pytest.approx(w[2] * 10)  # weight x count is constant
    assert w[2] > w[1] > w[0]


def test_class_weight_list_and_its_errors():
    assert class_weight_vector(["1", "2.5"], [0, 1], ["a", "b"]).tolist() == [1.0, 2.5]
    assert class_weight_vector(["none"], [0, 1], ["a", "b"]) is None
    with pytest.raises(UserError, match="has 2 weights, but there are 3 labels"):
        class_weight_vector(["1", "2"], [0, 1, 2], ["a", "b", "c"])
    with pytest.raises(UserError, match=r"\['c'\] have no training rows"):
        class_weight_vector(["auto"], [0, 1, 1], ["a", "b", "c"])


def test_weighted_cross_entropy_matches_torch(batch):
    logits, labels = batch
    weights = torch.tensor([1.0, 2.0, 0.5, 3.0])
    loss = ClassificationLoss(class_weights=weights)(logits, labels)
    assert loss == pytest.approx(F.cross_entropy(logits, labels, weight=weights).item(), rel=1e-6)
    assert loss != pytest.approx(F.cross_entropy(logits, labels).item(), rel=1e-3)


def test_focal_loss_with_gamma_zero_is_cross_entropy_and_gamma_down_weights_easy_rows(batch):
    logits, labels = batch
    weights = torch.tensor([1.0, 2.0, 0.5, 3.0])
    assert focal_loss(logits, labels, 0.0) == pytest.approx(F.cross_entropy(logits, labels).item(), rel=1e-6)
    assert focal_loss(logits, labels, 0.0, weights) == pytest.approx(
        F.cross_entropy(logits, labels, weight=weights).item(), rel=1e-6
    )
    # An easy row (p_t ~ 0.98) loses almost all of its loss under gamma 2; a hard row (p_t ~ 0.02) keeps most.
    easy, hard = torch.tensor([[4.0, 0.0]]), torch.tensor([[0.0, 4.0]])
    target = torch.tensor([0])
    ratio_easy = focal_loss(easy, target, 2.0) / F.cross_entropy(easy, target)
    ratio_hard = focal_loss(hard, target, 2.0) / F.cross_entropy(hard, target)
    assert ratio_easy < 0.01 and ratio_hard > 0.9
    loss = ClassificationLoss(kind="focal", focal_gamma=2.0)
    assert loss(logits, labels) == pytest.approx(focal_loss(logits, labels, 2.0).item())


def test_multi_label_losses():
    logits = torch.tensor([[2.0, -1.0, 0.5], [-3.0, 0.0, 1.0]])
    targets = torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]])
    bce = F.binary_cross_entropy_with_logits(logits, targets)
    assert ClassificationLoss(multi_label=True)(logits, targets) == pytest.approx(bce.item())
    assert binary_focal_loss(logits, targets, 0.0) == pytest.approx(bce.item(), rel=1e-6)
    assert binary_focal_loss(logits, targets, 2.0) < bce


def test_symmetric_kl(batch):
    logits, _ = batch
    other = logits.flip(0)
    assert symmetric_kl(logits, logits) == pytest.approx(0.0, abs=1e-7)
    assert symmetric_kl(logits, other) == pytest.approx(symmetric_kl(other, logits).item())
    p, q = F.softmax(logits, -1), F.softmax(other, -1)
    by_hand = ((p * (p / q).log()).sum(-1) + (q * (q / p).log()).sum(-1)).mean() / 2
    assert symmetric_kl(logits, other) == pytest.approx(by_hand.item(), rel=1e-5)
    # multi-label: Bernoulli KL per label
    a, b = torch.tensor([[0.0, 2.0]]), torch.tensor([[1.0, -1.0]])
    pa, pb = torch.sigmoid(a), torch.sigmoid(b)

    def kl(x, y):
        return x * (x / y).log() + (1 - x) * ((1 - x) / (1 - y)).log()

    expected = ((kl(pa, pb) + kl(pb, pa)) / 2).mean()
    assert symmetric_kl(a, b, multi_label=True) == pytest.approx(expected.item(), rel=1e-5)


def test_rdrop_loss_is_mean_task_loss_plus_alpha_kl(batch):
    logits, labels = batch
    other = logits + 0.3 * torch.randn(logits.shape, generator=torch.Generator().manual_seed(1))
    loss = ClassificationLoss(rdrop_alpha=4.0)
    expected = (F.cross_entropy(logits, labels) + F.cross_entropy(other, labels)) / 2 + 4.0 * symmetric_kl(
        logits, other
    )
    assert loss.rdrop(logits, other, labels) == pytest.approx(expected.item(), rel=1e-6)


def test_build_loss(tmp_path):
    labels = LabelSpace(("a", "b", "c"))
    loss = build_loss(args(tmp_path, class_weights=["auto"], loss="focal", focal_gamma=1.5), labels, [0, 0, 0, 1, 2])
    assert loss.kind == "focal" and loss.focal_gamma == 1.5
    assert np.allclose(loss.class_weights.numpy() * [3, 1, 1], loss.class_weights[1].item())
    multi = LabelSpace(("a", "b"), multi_label=True)
    with pytest.raises(UserError, match="--class_weights are for single-label"):
        build_loss(args(tmp_path, class_weights=["auto"]), multi, None)
    with pytest.raises(UserError, match="do not combine"):
        build_loss(args(tmp_path, loss="focal", label_smoothing_factor=0.1), labels, [0, 1, 2])
    assert build_loss(args(tmp_path, label_smoothing_factor=0.1), labels, [0, 1, 2]).label_smoothing == 0.1


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--class_weights", "heavy"], "expected none, auto, or one number per label"),
        (["--class_weights", "1", "-2"], "every weight must be above 0"),
        (["--kfold", "1"], "k-fold needs at least 2 folds"),
        (["--rdrop_alpha", "-1"], "--rdrop_alpha must be at least 0"),
        (["--early_stopping_patience", "2", "--save_strategy", "no"], "--save_strategy no does not match"),
        (["--early_stopping_patience", "2", "--eval_strategy", "no"], "--eval_strategy is no"),
        (
            ["--early_stopping_patience", "2", "--eval_strategy", "steps", "--save_strategy", "steps"]
            + ["--eval_steps", "20", "--save_steps", "30"],
            "--save_steps 30 is not a multiple of --eval_steps 20",
        ),
    ],
)
def test_option_mistakes_are_user_errors(flags, message):
    with pytest.raises(UserError, match=message):
        parse_args(["--model_name_or_path", "m", "--output_dir", "o", *flags])


def test_early_stopping_turns_on_best_model_with_f1_macro():
    _, _, training = parse_args(["--model_name_or_path", "m", "--output_dir", "o", "--early_stopping_patience", "3"])
    assert training.load_best_model_at_end and training.metric_for_best_model == "f1_macro"
    assert training.greater_is_better
    _, _, training = parse_args(
        ["--model_name_or_path", "m", "--output_dir", "o", "--early_stopping_patience", "3"]
        + ["--metric_for_best_model", "loss"]
    )
    assert training.metric_for_best_model == "loss" and not training.greater_is_better


def test_recipe_takes_class_weights_as_word_or_numbers(tmp_path):
    import json

    for value, expected in (("auto", ["auto"]), ([1, 2.5, 3], ["1", "2.5", "3"]), (["none"], ["none"])):
        path = tmp_path / "r.json"
        path.write_text(json.dumps({"model_name_or_path": "m", "output_dir": "o", "class_weights": value}))
        _, _, training = parse_args([str(path)])
        assert training.class_weights == expected


def test_eval_loss_is_the_weighted_mean_over_the_whole_set(tiny_model, tokenizer, tmp_path):
    """With class weights, the mean of per-batch weighted means (the stock evaluation loop) is not the weighted mean
    over the set (sum w_y * loss / sum w_y); the reported loss must be the latter, on one process too."""
    import torch
    from datasets import Dataset
    from torch.nn import functional as F
    from transformers import AutoModelForSequenceClassification, DataCollatorWithPadding

    from bertcls.training.trainer import ClassificationTrainer

    rng = np.random.default_rng(4)
    texts = ["".join(rng.choice(list("好坏很不错差极了服务房间"), int(n))) for n in rng.integers(3, 15, 37)]
    labels = [0] * 25 + [1] * 8 + [2] * 4
    enc = tokenizer(texts)
    rows = Dataset.from_dict({**enc, "label": labels, "length": [len(x) for x in enc["input_ids"]]})
    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_pretrained(tiny_model, num_labels=3)
    torch.nn.init.normal_(model.classifier.weight, std=1.0)  # logits that differ from row to row
    trainer = ClassificationTrainer(
        model=model,
        args=args(tmp_path, class_weights=["auto"], per_device_eval_batch_size=8, eval_strategy="no"),
        train_dataset=rows,
        data_collator=DataCollatorWithPadding(tokenizer),
    )
    reported = trainer.evaluate(rows)["eval_loss"]

    counts = np.bincount(labels)
    weights = (1 / counts) / np.mean(1 / counts)
    batch = DataCollatorWithPadding(tokenizer)([{k: enc[k][i] for k in enc} for i in range(len(texts))])
    model.eval()
    with torch.no_grad():
        logits = model(**batch).logits
    expected = F.cross_entropy(logits, torch.tensor(labels), weight=torch.tensor(weights, dtype=torch.float32))
    per_batch = [
        F.cross_entropy(logits[i : i + 8], torch.tensor(labels[i : i + 8]), weight=torch.tensor(weights).float())
        for i in range(0, 37, 8)
    ]
    stock = sum(loss.item() * len(labels[i * 8 : i * 8 + 8]) for i, loss in enumerate(per_batch)) / 37
    assert abs(stock - expected.item()) > 1e-3  # the two really differ here
    assert reported == pytest.approx(expected.item(), rel=1e-5)
