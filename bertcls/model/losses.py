"""The training losses, in one place: cross-entropy, class weights, focal loss, binary cross-entropy for
multi-label, and R-Drop's symmetric KL term.

ClassificationTrainer.compute_loss calls `ClassificationLoss` for every model, the stock head and the custom
EncoderClassifier alike; EncoderClassifier.forward(labels=...) uses `classification_loss`, the same plain loss.
Every loss is a mean over the batch's rows, so the Trainer divides it by the gradient-accumulation steps and DDP's
gradient averaging gives the mean over all devices. With class weights the mean is weighted, as in torch's
weighted cross-entropy (sum of w_y * loss / sum of w_y), per batch: micro-batches of an accumulated step count
equally whatever their weight sums.
"""

import logging
from dataclasses import dataclass

import numpy as np
import torch
from torch.nn import functional as F

from bertcls.errors import UserError
from bertcls.model.runtime import MULTI_LABEL, REGRESSION

logger = logging.getLogger(__name__)


def classification_loss(logits: torch.Tensor, labels: torch.Tensor, problem_type: str | None) -> torch.Tensor:
    """Cross-entropy over classes (one label per row), binary cross-entropy per label (multi-label), or MSE
    (regression)."""
    return ClassificationLoss(multi_label=problem_type == MULTI_LABEL, regression=problem_type == REGRESSION)(
        logits, labels
    )


def focal_loss(
    logits: torch.Tensor, labels: torch.Tensor, gamma: float, weight: torch.Tensor | None = None
) -> torch.Tensor:
    """-(1 - p_t)^gamma * log p_t per row; with `weight`, a weighted mean like torch's weighted cross-entropy
    (sum of w_y * loss / sum of w_y), so gamma = 0 gives exactly F.cross_entropy(weight=...)."""
    log_p = F.log_softmax(logits.float(), dim=-1).gather(1, labels.view(-1, 1)).squeeze(1)
    per_row = -((1 - log_p.exp()) ** gamma) * log_p
    if weight is None:
        return per_row.mean()
    w = weight.to(per_row)[labels.view(-1)]
    return (w * per_row).sum() / w.sum()


def binary_focal_loss(logits: torch.Tensor, targets: torch.Tensor, gamma: float) -> torch.Tensor:
    """Focal loss per label on sigmoid outputs (the form of Lin et al. 2017), mean over rows and labels."""
    logits, targets = logits.float(), targets.to(torch.float32)
    bce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    p = torch.sigmoid(logits)
    p_t = p * targets + (1 - p) * (1 - targets)
    return ((1 - p_t) ** gamma * bce).mean()


def symmetric_kl(logits_a: torch.Tensor, logits_b: torch.Tensor, multi_label: bool = False) -> torch.Tensor:
    """(KL(a||b) + KL(b||a)) / 2 between two predictions of the same rows, mean over rows.

    Single-label: KL between the softmax distributions, summed over classes. Multi-label: KL between the
    Bernoulli distributions of each label, mean over labels (like binary cross-entropy's mean)."""
    a, b = logits_a.float(), logits_b.float()
    if multi_label:
        log_a1, log_a0 = F.logsigmoid(a), F.logsigmoid(-a)
        log_b1, log_b0 = F.logsigmoid(b), F.logsigmoid(-b)
        kl_ab = log_a1.exp() * (log_a1 - log_b1) + log_a0.exp() * (log_a0 - log_b0)
        kl_ba = log_b1.exp() * (log_b1 - log_a1) + log_b0.exp() * (log_b0 - log_a0)
        return ((kl_ab + kl_ba) / 2).mean()
    log_a, log_b = F.log_softmax(a, dim=-1), F.log_softmax(b, dim=-1)
    kl_ab = F.kl_div(log_b, log_a, log_target=True, reduction="batchmean")  # KL(a || b)
    kl_ba = F.kl_div(log_a, log_b, log_target=True, reduction="batchmean")
    return (kl_ab + kl_ba) / 2


@dataclass
class ClassificationLoss:
    """The loss of one run: `loss(logits, labels)`, and `loss.rdrop(logits_a, logits_b, labels)` for R-Drop."""

    multi_label: bool = False
    kind: str = "ce"  # ce | focal
    focal_gamma: float = 2.0
    class_weights: torch.Tensor | None = None  # one weight per class, single-label only
    label_smoothing: float = 0.0
    rdrop_alpha: float = 0.0
    regression: bool = False  # one output per row: kind mse (also what ce means here) or huber

    def __call__(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        if self.regression:
            predicted, gold = logits.float().view(-1), labels.to(torch.float32).view(-1)
            if self.kind == "huber":
                return F.huber_loss(predicted, gold)
            return F.mse_loss(predicted, gold)
        if self.multi_label:
            if self.kind == "focal":
                return binary_focal_loss(logits, labels, self.focal_gamma)
            return F.binary_cross_entropy_with_logits(logits.float(), labels.to(torch.float32))
        logits, labels = logits.view(-1, logits.size(-1)), labels.view(-1)
        if self.kind == "focal":
            return focal_loss(logits, labels, self.focal_gamma, self._weights_on(logits.device))
        return F.cross_entropy(
            logits.float(), labels, weight=self._weights_on(logits.device), label_smoothing=self.label_smoothing
        )

    def _weights_on(self, device) -> torch.Tensor | None:
        """The class weights on `device`, moved there once (a copy to the GPU every step would make it wait)."""
        if self.class_weights is not None and self.class_weights.device != device:
            self.class_weights = self.class_weights.to(device, torch.float32)
        return self.class_weights

    def rdrop(self, logits_a: torch.Tensor, logits_b: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """R-Drop: the mean of both passes' losses + alpha x their symmetric KL."""
        task = (self(logits_a, labels) + self(logits_b, labels)) / 2
        return task + self.rdrop_alpha * symmetric_kl(logits_a, logits_b, self.multi_label)


def class_weight_vector(setting: list[str], train_label_ids, names: list[str]) -> torch.Tensor | None:
    """--class_weights as a tensor: None for `none`; inverse train frequency averaging 1 for `auto`; else the list.

    auto: w_c = (1 / n_c) / mean_k(1 / n_k), where n_c counts class c in train."""
    setting = setting or ["none"]
    if setting == ["none"]:
        return None
    if setting == ["auto"]:
        counts = np.bincount(np.asarray(train_label_ids, dtype=np.int64), minlength=len(names))
        empty = [names[i] for i in np.flatnonzero(counts == 0)]
        if empty:
            raise UserError(
                f"--class_weights auto: label(s) {empty[:5]} have no training rows, so no frequency to invert",
                fix="give the weights yourself, one per label: --class_weights w1 w2 ...",
            )
        inverse = 1.0 / counts
        return torch.tensor(inverse / inverse.mean(), dtype=torch.float32)
    if len(setting) != len(names):
        raise UserError(
            f"--class_weights has {len(setting)} weights, but there are {len(names)} labels ({', '.join(names[:10])})",
            fix=f"give one weight per label, in label order ({len(names)} numbers), or use auto",
        )
    return torch.tensor([float(w) for w in setting], dtype=torch.float32)


def build_loss(training_args, labels, train_label_ids=None) -> ClassificationLoss:
    """The run's loss from the training options and the train split's label ids (for class_weights auto)."""
    weights_set = (training_args.class_weights or ["none"]) != ["none"]
    smoothing = training_args.label_smoothing_factor
    if getattr(labels, "regression", False):
        check_regression_loss(training_args, weights_set)
        kind = "huber" if training_args.loss == "huber" else "mse"
        return ClassificationLoss(kind=kind, regression=True)
    if training_args.loss in ("mse", "huber"):
        raise UserError(
            f"--loss {training_args.loss} is a regression loss, and this is a classification task",
            fix="drop --loss (or pass --do_regression if the labels are numbers to predict)",
        )
    if labels.multi_label:
        if weights_set:
            raise UserError(
                "--class_weights are for single-label tasks; with --multi_label each label is its own binary task",
                fix="drop --class_weights; for rare labels try --loss focal",
            )
        if smoothing:
            raise UserError("--label_smoothing_factor is for single-label tasks", fix="drop it for --multi_label")
    if training_args.loss == "focal" and smoothing:
        raise UserError("--loss focal and --label_smoothing_factor do not combine", fix="pass one of them")
    weights = None
    if weights_set and train_label_ids is None and training_args.class_weights == ["auto"]:
        logger.info("--class_weights auto: no training rows to count, so the (evaluation) loss is unweighted")
    elif weights_set:
        weights = class_weight_vector(training_args.class_weights, train_label_ids, list(labels.names))
        logger.info("class weights: %s", dict(zip(labels.names, [round(w, 4) for w in weights.tolist()])))
    return ClassificationLoss(
        multi_label=labels.multi_label,
        kind=training_args.loss,
        focal_gamma=training_args.focal_gamma,
        class_weights=weights,
        label_smoothing=smoothing,
        rdrop_alpha=training_args.rdrop_alpha,
    )


def check_regression_loss(training_args, weights_set: bool) -> None:
    """Options of classifiers that mean nothing for a regression model: one line each."""
    refused = {
        "--class_weights": weights_set,
        "--loss focal": training_args.loss == "focal",
        "--label_smoothing_factor": bool(training_args.label_smoothing_factor),
        "--rdrop_alpha": training_args.rdrop_alpha > 0,
    }
    for flag, on in refused.items():
        if on:
            raise UserError(
                f"{flag} applies to classes, and this is a regression task (one number per row)",
                fix=f"drop {flag.split()[0]} (regression losses: --loss mse or --loss huber)",
            )
