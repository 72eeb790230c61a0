"""AdamW parameter groups: weight decay on weights only, and optional layer-wise learning-rate decay.

The classic hand-written loop keys its groups `weight_decay_rate`, which torch.optim.AdamW silently ignores, so
every parameter decays. Here the key is `weight_decay`, and the groups are built inside the Trainer (see
trainer.py), so they are the groups of the optimizer that is actually stepped.
"""

import re
from collections import defaultdict

from torch import nn

_LAYER = re.compile(r"\.layers?\.(\d+)\.")


def layer_depth(name: str, num_layers: int) -> int:
    """0 for embeddings, i + 1 for encoder layer i, num_layers + 1 for everything above (pooler, head)."""
    match = _LAYER.search(name)
    if match:
        return int(match.group(1)) + 1
    if "embeddings" in name:
        return 0
    return num_layers + 1


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
    """
    if layerwise_lr_decay != 1.0 and not num_layers:
        raise ValueError("layer-wise lr decay needs the number of encoder layers")
    num_layers = num_layers or 0
    grouped = defaultdict(list)
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        depth = layer_depth(name, num_layers) if layerwise_lr_decay != 1.0 else num_layers + 1
        grouped[(depth, name in decay_parameter_names)].append(param)
    groups = []
    for (depth, decays), params in sorted(grouped.items()):
        scale = layerwise_lr_decay ** (num_layers + 1 - depth)
        where = {0: "embeddings", num_layers + 1: "head"}.get(depth, f"layer_{depth - 1}")
        groups.append(
            {
                "params": params,
                "weight_decay": weight_decay if decays else 0.0,
                "lr": learning_rate * scale,
                "name": f"{where if layerwise_lr_decay != 1.0 else 'all'}/{'decay' if decays else 'no_decay'}",
            }
        )
    return groups
