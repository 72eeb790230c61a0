"""AdamW parameter groups: weight decay on weights only, and optional layer-wise learning-rate decay.

The classic hand-written loop keys its groups `weight_decay_rate`, which torch.optim.AdamW silently ignores, so
every parameter decays. Here the key is `weight_decay`, and the groups are built inside the Trainer (see
trainer.py), so they are the groups of the optimizer that is actually stepped.
"""

import re
from collections import defaultdict

from torch import nn

from bertcls.errors import UserError

_LAYER = re.compile(r"\.layers?\.(\d+)\.")


def layer_depth(name: str, num_layers: int, base_prefix: str = "") -> int:
    """0 for embeddings, i + 1 for encoder layer i, num_layers + 1 for everything above (pooler, head).

    Parameters of the base model (named `base_prefix.`) that sit in no numbered layer and are not the pooler are
    inputs to every layer: embeddings, and relative-position tables such as DeBERTa's rel_embeddings (with its
    encoder.LayerNorm) or MPNet's relative_attention_bias. They get the embeddings' depth, not the head's full lr."""
    in_base = not base_prefix or name.startswith(base_prefix + ".")
    if not in_base:
        return num_layers + 1
    match = _LAYER.search(name)
    if match:
        return int(match.group(1)) + 1
    if "pooler" in name:
        return num_layers + 1
    return 0


def check_layers(model: nn.Module, num_layers: int, base_prefix: str) -> None:
    """Layer-wise decay needs one set of weights per encoder layer, numbered 0..num_layers-1."""
    found = {
        int(m.group(1))
        for name, _ in model.named_parameters()
        if name.startswith(base_prefix + ".") and (m := _LAYER.search(name))
    }
    if found != set(range(num_layers)):
        kind = getattr(getattr(model, "config", None), "model_type", "this model")
        raise UserError(
            f"--layerwise_lr_decay: the parameters of {kind} are not one set per encoder layer (found layers "
            f"{sorted(found)[:6]} of {num_layers}; ALBERT, for one, shares a single layer's weights across all "
            "its layers), so no depth can be given to them",
            fix="drop --layerwise_lr_decay for this model",
        )


def parameter_groups(
    model: nn.Module,
    decay_parameter_names: set[str],
    learning_rate: float,
    weight_decay: float,
    layerwise_lr_decay: float = 1.0,
    num_layers: int | None = None,
) -> list[dict]:
    """Groups keyed by (depth, decays?). Each group carries `weight_decay`, `lr` and a readable `name`.

    With layerwise_lr_decay d < 1 the group at depth k gets lr * d ** (num_layers + 1 - k): the head the full lr,
    the last encoder layer lr * d, ..., layer 0 lr * d ** num_layers, embeddings lr * d ** (num_layers + 1).
    Groups come head first: the Trainer logs the first group's learning rate, which is then the peak one.
    """
    decayed = layerwise_lr_decay != 1.0
    if decayed and not num_layers:
        raise UserError(
            "--layerwise_lr_decay needs the number of encoder layers (num_hidden_layers), and this model's config "
            "has none",
            fix="drop --layerwise_lr_decay for this model",
        )
    num_layers = num_layers or 0
    base_prefix = getattr(model, "base_model_prefix", "") or ""
    if decayed:
        check_layers(model, num_layers, base_prefix)
    grouped = defaultdict(list)
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        depth = layer_depth(name, num_layers, base_prefix) if decayed else num_layers + 1
        grouped[(depth, name in decay_parameter_names)].append(param)
    groups = []
    for (depth, decays), params in sorted(grouped.items(), key=lambda item: (-item[0][0], item[0][1])):
        scale = layerwise_lr_decay ** (num_layers + 1 - depth)
        where = {0: "embeddings", num_layers + 1: "head"}.get(depth, f"layer_{depth - 1}")
        groups.append(
            {
                "params": params,
                "weight_decay": weight_decay if decays else 0.0,
                "lr": learning_rate * scale,
                "name": f"{where if decayed else 'all'}/{'decay' if decays else 'no_decay'}",
            }
        )
    return groups
