"""FGM adversarial training (Miyato et al. 2017) on the word-embedding matrix.

Per training step: the clean loss is back-propagated while a hook keeps the gradient that reaches the word
embeddings from THIS batch (with gradient accumulation, `.grad` also holds earlier micro-batches, so the hook is
used instead of reading `.grad`). The rows of the embedding matrix that received a gradient are then moved by
r = epsilon * g / ||g||, the adversarial loss is back-propagated (its gradients add to the clean ones), and the rows
are copied back exactly. ClassificationTrainer.training_step drives it; see there for DDP and accumulation.
"""

from contextlib import contextmanager

import torch
from torch import nn


class FGM:
    def __init__(self, embeddings: nn.Embedding, epsilon: float = 1.0):
        self.weight = embeddings.weight
        self.epsilon = epsilon
        self.gradient: torch.Tensor | None = None

    @contextmanager
    def capture_gradient(self):
        """Keep the gradient the word embeddings receive from the backward pass run inside this block."""
        self.gradient = None

        def keep(grad):
            self.gradient = grad.detach() if self.gradient is None else self.gradient + grad.detach()
            return grad

        handle = self.weight.register_hook(keep)
        try:
            yield
        finally:
            handle.remove()

    @contextmanager
    def perturbed(self):
        """The word embeddings moved along the captured gradient inside this block, restored exactly after it."""
        gradient = self.gradient
        if gradient is None:
            yield  # no gradient reached the embeddings (frozen?): the adversarial pass sees the clean weights
            return
        rows = gradient.abs().sum(dim=1).nonzero().squeeze(1)  # only tokens in the batch have a gradient
        norm = torch.linalg.vector_norm(gradient.float())
        kept = self.weight.data[rows].clone()
        # A zero or overflowing (fp16 loss scaling) gradient gives no direction: leave the weights as they are, but
        # still run the adversarial pass, so every DDP process does the same number of backward passes.
        if rows.numel() and torch.isfinite(norm) and norm > 0:
            step = (self.epsilon / norm) * gradient[rows].float()
            with torch.no_grad():
                self.weight.data[rows] += step.to(self.weight.dtype)
        try:
            yield
        finally:
            with torch.no_grad():
                self.weight.data[rows] = kept
            self.gradient = None
