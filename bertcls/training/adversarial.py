"""FGM adversarial training (Miyato et al. 2017) on the word-embedding matrix.

Per training step: the clean loss is back-propagated while a hook keeps the gradient that reaches the word
embeddings from THIS batch (with gradient accumulation, `.grad` also holds earlier micro-batches, so the hook is
used instead of reading `.grad`). The rows of the batch's tokens are then moved by r = epsilon * g / ||g||, the
adversarial loss is back-propagated (its gradients add to the clean ones), and the rows are copied back exactly.
ClassificationTrainer.training_step drives it; see there for DDP and accumulation.
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
    def perturbed(self, input_ids: torch.Tensor):
        """The word embeddings of `input_ids` (the batch's tokens, the only rows with a gradient) moved along the
        captured gradient inside this block, restored exactly after it. Everything stays on the device: no
        nonzero(), no tensor in an `if`, so a GPU never waits for the host here."""
        gradient = self.gradient
        if gradient is None:
            yield  # no gradient reached the embeddings (frozen?): the adversarial pass sees the clean weights
            return
        rows = input_ids.reshape(-1)  # with repeats: index_copy_ writes the same value for each repeat
        norm = torch.linalg.vector_norm(gradient.float())
        # A zero or overflowing (fp16 loss scaling) gradient gives no direction: a step of 0, decided on the
        # device. The adversarial pass still runs, so every DDP process does the same number of backward passes.
        usable = torch.isfinite(norm) & (norm > 0)
        scale = torch.where(usable, self.epsilon / norm.clamp(min=torch.finfo(norm.dtype).tiny), 0.0)
        kept = self.weight.data.index_select(0, rows)
        step = (scale * gradient.index_select(0, rows).float()).to(self.weight.dtype)
        with torch.no_grad():
            self.weight.data.index_copy_(0, rows, kept + step)
        try:
            yield
        finally:
            with torch.no_grad():
                self.weight.data.index_copy_(0, rows, kept)
            self.gradient = None
