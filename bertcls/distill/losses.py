"""The distillation losses: soft targets at a temperature (Hinton et al. 2015), mixed with the hard-label loss, and
TinyBERT's intermediate-layer losses (hidden states, attention maps).

Every term is a mean over the batch's rows, like the fine-tuning losses (bertcls.model.losses), so the Trainer's
gradient-accumulation scaling and DDP's gradient averaging apply unchanged.
"""

from dataclasses import dataclass

import torch
from torch.nn import functional as F

from bertcls.model.losses import MULTI_LABEL, ClassificationLoss

REGRESSION = "regression"


def soft_target_loss(
    student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float, problem_type: str | None
) -> torch.Tensor:
    """The student's loss against the teacher's outputs, mean over rows.

    Single-label: T^2 x KL(softmax(teacher / T) || softmax(student / T)), summed over classes. The T^2 keeps the
    gradient's size independent of T (the softened gradients shrink as 1 / T^2). Multi-label: binary cross-entropy
    of sigmoid(student / T) to the teacher's sigmoid(teacher / T) per label (mean over labels), times T^2.
    Regression: the mean squared error to the teacher's value (a temperature means nothing there)."""
    s, t = student_logits.float(), teacher_logits.float().to(student_logits.device)
    if problem_type == REGRESSION:
        return F.mse_loss(s.view(-1), t.view(-1))
    if problem_type == MULTI_LABEL:
        targets = torch.sigmoid(t / temperature)
        return F.binary_cross_entropy_with_logits(s / temperature, targets) * temperature**2
    log_p_student = F.log_softmax(s / temperature, dim=-1)
    log_p_teacher = F.log_softmax(t / temperature, dim=-1)
    return F.kl_div(log_p_student, log_p_teacher, log_target=True, reduction="batchmean") * temperature**2


def masked_mse(student: torch.Tensor, teacher: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean squared error over the real (mask 1) positions of [batch, tokens, ...] tensors, mean over the last
    dimensions too."""
    per_position = ((student.float() - teacher.float()) ** 2).flatten(2).mean(-1)  # [batch, tokens]
    mask = mask.to(per_position.dtype)
    return (per_position * mask).sum() / mask.sum().clamp(min=1.0)


def hidden_state_loss(student_hidden, teacher_hidden, layer_map, mask, projection=None) -> torch.Tensor:
    """Mean over the layer map's pairs of the hidden-state MSE; student_hidden[m] (0 = embeddings) learns from
    teacher_hidden[layer_map[m]], through `projection` when the widths differ."""
    losses = []
    for m, n in enumerate(layer_map):
        hidden = student_hidden[m] if projection is None else projection(student_hidden[m])
        losses.append(masked_mse(hidden, teacher_hidden[n].detach(), mask))
    return torch.stack(losses).mean()


def attention_loss(student_attentions, teacher_attentions, layer_map, mask) -> torch.Tensor:
    """Mean over student layers of the MSE between attention probabilities [batch, heads, query, key], over real
    query and key positions; student layer m (1-based) learns from teacher layer layer_map[m]. TinyBERT matches the
    scores before the softmax; transformers returns the probabilities, which carry the same information for real
    keys and are bounded."""
    pair_mask = (mask[:, :, None] * mask[:, None, :]).to(torch.float32)  # [batch, query, key]
    losses = []
    for m in range(1, len(layer_map)):
        s = student_attentions[m - 1].float()
        t = teacher_attentions[layer_map[m] - 1].detach().float()
        per_pair = ((s - t) ** 2).mean(1)  # mean over heads: [batch, query, key]
        losses.append((per_pair * pair_mask).sum() / pair_mask.sum().clamp(min=1.0))
    return torch.stack(losses).mean()


@dataclass
class DistillationLoss:
    """alpha x soft + (1 - alpha) x hard (labelled rows only) [+ hidden_weight x hidden + attention_weight x attention]."""

    hard: ClassificationLoss
    problem_type: str | None
    temperature: float = 2.0
    alpha: float = 0.5

    def __call__(self, student_logits, teacher_logits, labels=None, labelled=None) -> tuple[torch.Tensor, dict]:
        """The mixed loss of a batch, and its parts (for the log). A batch's loss is the mean over its rows of
        alpha x soft + (1 - alpha) x hard for labelled rows and of soft alone for rows without a label."""

        def soft(rows=slice(None)):
            return soft_target_loss(student_logits[rows], teacher_logits[rows], self.temperature, self.problem_type)

        if labels is None or self.alpha == 1:
            loss = soft()
            return loss, {"soft": loss.detach()}
        if labelled is None:
            labelled = torch.ones(len(student_logits), dtype=torch.bool)
        labelled = labelled.bool().to(student_logits.device)
        count = int(labelled.sum())
        if count == 0:
            loss = soft()
            return loss, {"soft": loss.detach()}
        soft_labelled, hard = soft(labelled), self.hard(student_logits[labelled], labels[labelled])
        loss = self.alpha * soft_labelled + (1 - self.alpha) * hard
        if count < len(labelled):
            share = count / len(labelled)
            loss = share * loss + (1 - share) * soft(~labelled)
        return loss, {"soft": soft_labelled.detach(), "hard": hard.detach()}
