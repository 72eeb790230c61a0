"""The masked-LM model and Trainer: the checkpoint (or a new model) under its MLM head, the loss over masked
tokens only, and perplexity on the held-out blocks.

1. Sparse prediction. BERT's MLM head multiplies every position's hidden state by the vocabulary matrix (21,128
   x hidden for Chinese), though only the ~15% masked positions have a label. For a small model that matrix is
   most of the compute. Two forward pre-hooks make the model's own forward run the head on the masked positions
   only: one on the model takes `labels` out of its inputs and remembers where they are, one on the head keeps
   those positions of the hidden states. The loss and its gradients are the same; the model stays a
   PreTrainedModel (checkpoints, resume, DDP and save_pretrained work as usual), and the hooks live only in
   this process.
2. The loss is the sum over masked tokens divided by the Trainer's `num_items_in_batch` (masked tokens in the
   whole accumulated batch, over all processes), so gradient accumulation and DDP weigh every masked token
   equally, as the stock MLM loss does.
3. Perplexity is exp(mean loss per masked token) over the whole held-out set, every block once: each row's loss
   sum and masked count are gathered (accelerate drops the rows it repeats to even out the last batches) and
   summed. The stock evaluation averages per-batch means.
"""

import logging
import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from transformers import AutoModelForMaskedLM, Trainer

from bertcls.errors import UserError, load_error
from bertcls.model.checkpoints import from_pretrained
from bertcls.pretrain.masking import MASK_STATS

logger = logging.getLogger(__name__)


# ---------------------------------------------------------------------------------------------------------------
# The model


def load_mlm_model(model_args, config, seed: int):
    """The checkpoint under its masked-LM head (the head is initialized when the checkpoint has none, e.g. an
    encoder-only folder or a fine-tuned classifier), or a new model from `config`."""
    name = model_args.model_name_or_path
    if not name:
        torch.manual_seed(seed)
        model = _from_config(config)
        logger.info(
            "new %s from scratch: %d layers, hidden %d, %.1fM parameters",
            type(model).__name__,
            config.num_hidden_layers,
            config.hidden_size,
            model.num_parameters() / 1e6,
        )
        return model
    try:
        model, info = from_pretrained(AutoModelForMaskedLM, name, config=config, **model_args.hub_options())
    except ValueError as e:
        if "Unrecognized configuration class" in str(e):
            raise _no_mlm_error(name, config) from None
        raise load_error(name, "model", e, fix="check --model_name_or_path") from None
    except (OSError, RuntimeError) as e:
        raise load_error(name, "model", e, fix="check --model_name_or_path") from None
    prefix = model.base_model_prefix
    missing = sorted(set(info["missing_keys"]) | {k for k, *_ in info.get("mismatched_keys") or ()})
    head = [k for k in missing if not k.startswith(prefix + ".")]
    lost = [k for k in missing if k.startswith(prefix + ".") and ".pooler." not in k]
    if lost:
        raise UserError(
            f"the weights of {name} do not fit its config: {len(lost)} encoder tensors are not in the checkpoint "
            f"(e.g. {lost[0]}), so pretraining would start from random values",
            fix="check that config.json and the weights belong to the same checkpoint",
        )
    unused = sorted(info["unexpected_keys"])
    logger.info(
        "%s: %s; checkpoint tensors not used: %d%s",
        name,
        f"masked-LM head not in the checkpoint, initialized: {', '.join(head)}" if head else "masked-LM head loaded",
        len(unused),
        f" ({', '.join(unused[:4])}{', ...' if len(unused) > 4 else ''})" if unused else "",
    )
    return model


def _from_config(config):
    try:
        return AutoModelForMaskedLM.from_config(config)
    except ValueError as e:
        if "Unrecognized configuration class" in str(e):
            raise _no_mlm_error(getattr(config, "model_type", "?"), config) from None
        raise


def _no_mlm_error(name: str, config) -> UserError:
    return UserError(
        f"{name} ({getattr(config, 'model_type', '?')}) has no masked-LM model in transformers",
        fix="use a BERT-family encoder (bert, roberta, albert, electra, ernie, ...)",
    )


def mlm_head(model: nn.Module) -> nn.Module | None:
    """The module that turns hidden states into vocabulary logits, when the model has exactly one besides its base
    model (BertForMaskedLM.cls, RobertaForMaskedLM.lm_head, AlbertForMaskedLM.predictions); else None."""
    prefix = getattr(model, "base_model_prefix", None)
    others = [module for name, module in model.named_children() if name != prefix]
    return others[0] if prefix and hasattr(model, prefix) and len(others) == 1 else None


class SparsePrediction:
    """Forward pre-hooks that run `head` only at the positions whose label is not -100 (see the module docstring).
    With labels, the model returns logits for those positions, in row-major order, and no loss.

    The number of positions is rounded up to a multiple of `bucket` (the extra rows repeat position 0 and are
    dropped by the caller): with a count that changes every batch, the head's large (positions x vocabulary)
    tensors change size every step, and glibc's allocator keeps the freed sizes around: resident memory grew
    without bound (to 4 GB after 400 steps of a 2-layer model). A few sizes it reuses."""

    def __init__(self, model: nn.Module, head: nn.Module, bucket: int = 128):
        self.index, self.bucket = None, bucket
        self.handles = [
            model.register_forward_pre_hook(self._take_labels, with_kwargs=True),
            head.register_forward_pre_hook(self._select),
        ]

    def _take_labels(self, module, args, kwargs):
        labels = kwargs.pop("labels", None)
        self.index = None
        if labels is not None:
            index = (labels.flatten() != -100).nonzero().squeeze(1)
            size = max(1, -(-index.numel() // self.bucket)) * self.bucket
            self.index = torch.cat([index, index.new_zeros(size - index.numel())])
        return args, kwargs

    def _select(self, module, args):
        if self.index is None:
            return None
        hidden, *rest = args
        return (hidden.reshape(-1, hidden.shape[-1]).index_select(0, self.index), *rest)

    def remove(self) -> None:
        for handle in self.handles:
            handle.remove()


# ---------------------------------------------------------------------------------------------------------------
# The Trainer


class MaskedLMTrainer(Trainer):
    def __init__(self, *args, sparse_mlm_head: bool = True, **kwargs):
        super().__init__(*args, **kwargs)
        head = mlm_head(self.model) if sparse_mlm_head else None
        if sparse_mlm_head and head is None:
            logger.info("%s: its head cannot run on masked positions only; the full head runs", type(self.model))
        self.sparse = SparsePrediction(self.model, head) if head is not None else None
        self.mask_totals = torch.zeros(3, dtype=torch.long)  # the whole run, on the CPU
        self._mask_window = None  # since the last log, on the device (read only when logging: no sync per step)

    def masked_logits(self, model, inputs) -> tuple[torch.Tensor, torch.Tensor, object]:
        """(logits, targets, outputs) for the masked tokens of a batch, in the same order."""
        labels = inputs["labels"]
        features = {k: v for k, v in inputs.items() if k not in ("labels", MASK_STATS)}
        if self.sparse is not None:
            outputs = model(**features, labels=labels)  # the hooks take the labels out
            targets = labels[labels != -100]
            return outputs.logits[: targets.numel()], targets, outputs
        outputs = model(**features)
        masked = labels != -100
        return outputs.logits[masked], labels[masked], outputs

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        stats = inputs.get(MASK_STATS)
        if stats is not None:
            window = stats.sum(0)
            self._mask_window = window if self._mask_window is None else self._mask_window + window
        logits, targets, outputs = self.masked_logits(model, inputs)
        loss = F.cross_entropy(logits.float(), targets, reduction="sum")
        if num_items_in_batch is not None:
            loss = loss / num_items_in_batch
            if self.args.average_tokens_across_devices and self.args.world_size > 1:
                # num_items_in_batch counts every process's tokens and DDP averages the gradients: undo the average.
                loss = loss * self.accelerator.num_processes
        else:
            loss = loss / max(targets.numel(), 1)
        return (loss, outputs) if return_outputs else loss

    def log(self, logs: dict, start_time=None) -> None:
        if "loss" in logs and self._mask_window is not None:
            window, self._mask_window = self._mask_window.cpu(), None
            logs.update(mask_shares(window))
            self.mask_totals += window
        super().log(logs, start_time)

    def mask_summary(self) -> dict:
        """Masking shares over every batch this process trained on."""
        window = self._mask_window.cpu() if self._mask_window is not None else 0
        return mask_shares(self.mask_totals + window)

    def prediction_step(self, model, inputs, prediction_loss_only, ignore_keys=None):
        """Per row: the loss summed over its masked tokens, and their count (gathered as the `predictions`)."""
        inputs = self._prepare_inputs(inputs)
        model.eval()
        with torch.no_grad():
            logits, targets, _ = self.masked_logits(model, inputs)
            nll = F.cross_entropy(logits.float(), targets, reduction="none")
        masked = inputs["labels"] != -100
        rows = masked.nonzero()[:, 0]
        sums = torch.zeros(masked.shape[0], device=nll.device).index_add_(0, rows, nll)
        counts = masked.sum(1).float()
        per_row = torch.stack([sums, counts], dim=1)
        return (sums.sum() / counts.sum().clamp(min=1)).detach(), per_row, None

    def evaluation_loop(
        self, dataloader, description, prediction_loss_only=None, ignore_keys=None, metric_key_prefix="eval"
    ):
        output = super().evaluation_loop(dataloader, description, False, ignore_keys, metric_key_prefix)
        if output.predictions is not None and len(output.predictions):
            nll, count = np.asarray(output.predictions, dtype=np.float64).sum(0)
            loss = nll / max(count, 1)
            output.metrics[f"{metric_key_prefix}_loss"] = loss
            output.metrics[f"{metric_key_prefix}_perplexity"] = math.exp(min(loss, 700))
            output.metrics[f"{metric_key_prefix}_masked_tokens"] = int(count)
        return output


def mask_shares(totals: torch.Tensor) -> dict:
    masked, in_words, eligible = (int(x) for x in totals)
    shares = {"masked_share": round(masked / eligible, 4) if eligible else 0.0}
    if in_words:
        shares["masked_in_multi_token_words"] = round(in_words / masked, 4)
    return shares
