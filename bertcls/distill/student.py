"""The student: K layers of the teacher itself (DistilBERT, hfl's rbt3), or a pretrained checkpoint with a new head.

Built from the teacher, the student is the teacher's own class (stock head or bertcls's EncoderClassifier) with
`num_hidden_layers = K`: the embeddings, the chosen encoder layers and the head are copied tensor for tensor, so it
starts as a shallower copy of the teacher and keeps its tokenizer, labels and preprocessing. From a checkpoint, it
is loaded as run_classification.py loads --model_name_or_path (checkpoints.py) under the teacher's labels.
"""

import copy
import logging
import re

from torch import nn

from bertcls.config.arguments import ModelArguments
from bertcls.errors import UserError
from bertcls.model.checkpoints import check_vocabulary, load_config, load_tokenizer
from bertcls.model.heads import HEAD_KEY, load_model, set_labels

logger = logging.getLogger(__name__)


def default_layer_ids(teacher_layers: int, student_layers: int) -> list[int]:
    """Every n-th teacher layer from the bottom, n = L / K: 0, 2, 4, ... for half the layers (DistilBERT)."""
    return [i * teacher_layers // student_layers for i in range(student_layers)]


def encoder_layers(model) -> tuple[str, nn.ModuleList]:
    """The name and module of the model's list of encoder layers (bert.encoder.layer, encoder.encoder.layer ...)."""
    count = model.config.num_hidden_layers
    found = [
        (name, module)
        for name, module in model.named_modules()
        if isinstance(module, nn.ModuleList) and len(module) == count and name.endswith("layer")
    ]
    if len(found) != 1:
        raise UserError(
            f"cannot find the {count} encoder layers of the teacher ({type(model).__name__}) to copy",
            fix="start the student from a pretrained checkpoint instead: --student CHECKPOINT",
        )
    return found[0]


def student_from_teacher(teacher_model, layer_ids: list[int] | None, num_layers: int):
    """A copy of `teacher_model` with only the encoder layers `layer_ids` (default: every n-th), in that order."""
    total = teacher_model.config.num_hidden_layers
    if num_layers >= total:
        raise UserError(
            f"--student_layers {num_layers}: the teacher has {total} layers, so the student would be no smaller",
            fix=f"pass --student_layers {max(1, total // 2)} or fewer",
        )
    layer_ids = list(layer_ids) if layer_ids is not None else default_layer_ids(total, num_layers)
    if any(not 0 <= i < total for i in layer_ids):
        raise UserError(f"--student_layer_ids {layer_ids}: the teacher's layers are 0 to {total - 1}")
    prefix, _ = encoder_layers(teacher_model)
    config = copy.deepcopy(teacher_model.config)
    config.num_hidden_layers = num_layers
    student = type(teacher_model)(config)
    pattern = re.compile(rf"^{re.escape(prefix)}\.(\d+)\.(.*)$")
    new_index = {teacher_index: i for i, teacher_index in enumerate(layer_ids)}
    state = {}
    for key, tensor in teacher_model.state_dict().items():
        match = pattern.match(key)
        if match is None:
            state[key] = tensor
        elif int(match.group(1)) in new_index:
            state[f"{prefix}.{new_index[int(match.group(1))]}.{match.group(2)}"] = tensor
    missing, unexpected = student.load_state_dict(state, strict=False)
    if missing or unexpected:  # a model whose layers hold more than the layer list (shared weights, say)
        raise UserError(
            f"the student built from the teacher's layers does not hold all its tensors ({(missing or unexpected)[:3]})",
            fix="start the student from a pretrained checkpoint instead: --student CHECKPOINT",
        )
    logger.info("student: %d of the teacher's %d layers (%s), its embeddings and head", num_layers, total, layer_ids)
    return student.train(), layer_ids


def student_from_checkpoint(args, teacher, cache_dir=None):
    """A pretrained checkpoint under a new head for the teacher's labels, and its tokenizer."""
    model_args = ModelArguments(model_name_or_path=args.student, cache_dir=cache_dir)
    config = load_config(model_args)
    set_labels(config, teacher.labels)
    if getattr(config, HEAD_KEY, None) is not None:
        delattr(config, HEAD_KEY)
    tokenizer = load_tokenizer(args.student, model_args, config)
    check_vocabulary(tokenizer, config, args.student)
    model = load_model(model_args, config)
    return model, tokenizer


def same_vocabulary(tokenizer_a, tokenizer_b) -> bool:
    return tokenizer_a.get_vocab() == tokenizer_b.get_vocab()
