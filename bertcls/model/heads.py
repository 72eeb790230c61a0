"""The model to fine-tune: the stock head, or the custom classifier head (the walkthrough's "own MLP after BERT
with its own loss"), and the labels it is given.

The default is the model's stock head through AutoModelForSequenceClassification. `--head mlp` or
`--pooling mean` builds EncoderClassifier: any AutoModel encoder, a pooled vector, a small head and its own loss.
Its settings live in config.json under `bertcls_head`, so `classifier.load_trained_model` rebuilds the same model.
How a pretrained checkpoint is read is checkpoints.py's job.
"""

import logging

import torch
from torch import nn
from transformers import AutoModel, PretrainedConfig, PreTrainedModel
from transformers.activations import ACT2FN
from transformers.modeling_outputs import SequenceClassifierOutput

from bertcls.errors import UserError
from bertcls.model.checkpoints import load_pretrained
from bertcls.model.losses import MULTI_LABEL, REGRESSION, classification_loss

logger = logging.getLogger(__name__)

HEAD_KEY = "bertcls_head"


class EncoderClassifier(PreTrainedModel):
    """Encoder -> pooled vector (cls or mean) -> head (linear or mlp) -> logits, with its own loss."""

    config_class = PretrainedConfig
    base_model_prefix = "encoder"
    supports_gradient_checkpointing = True

    def __init__(self, config: PretrainedConfig, encoder: PreTrainedModel | None = None):
        super().__init__(config)
        settings = getattr(config, HEAD_KEY)
        self.pooling = settings["pooling"]
        self.encoder = encoder if encoder is not None else _encoder_from_config(config)
        hidden, dropout = config.hidden_size, settings["dropout"]
        if settings["head"] == "mlp":
            self.head = nn.Sequential(
                nn.Dropout(dropout),
                nn.Linear(hidden, settings["hidden_size"]),
                ACT2FN[settings["activation"]],
                nn.Dropout(dropout),
                nn.Linear(settings["hidden_size"], config.num_labels),
            )
        else:
            self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(hidden, config.num_labels))
        self.post_init()  # initializes the head only: a pretrained encoder is marked initialized by its loader

    def _init_weights(self, module):
        if isinstance(module, nn.Linear):
            module.weight.data.normal_(mean=0.0, std=getattr(self.config, "initializer_range", 0.02))
            module.bias.data.zero_()

    def pool(self, hidden: torch.Tensor, attention_mask: torch.Tensor | None) -> torch.Tensor:
        if self.pooling == "cls" or attention_mask is None:
            return hidden[:, 0]
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        return (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)

    def forward(
        self,
        input_ids=None,
        attention_mask=None,
        token_type_ids=None,
        labels=None,
        output_hidden_states=None,
        output_attentions=None,
        **kwargs,
    ):
        inputs = {"input_ids": input_ids, "attention_mask": attention_mask}
        if token_type_ids is not None:
            inputs["token_type_ids"] = token_type_ids
        # Hidden states and attentions on request, as the stock heads return them (distillation's layer losses).
        for name, value in (("output_hidden_states", output_hidden_states), ("output_attentions", output_attentions)):
            if value:
                inputs[name] = True
        encoded = self.encoder(**inputs)
        logits = self.head(self.pool(encoded.last_hidden_state, attention_mask))
        loss = classification_loss(logits, labels, self.config.problem_type) if labels is not None else None
        return SequenceClassifierOutput(
            loss=loss, logits=logits, hidden_states=encoded.hidden_states, attentions=encoded.attentions
        )


def _encoder_from_config(config):
    try:  # BERT-family encoders take add_pooling_layer; the custom head never uses the pooler
        return AutoModel.from_config(config, add_pooling_layer=False)
    except TypeError:
        return AutoModel.from_config(config)


def uses_custom_head(model_args) -> bool:
    return model_args.head != "linear" or model_args.pooling != "cls"


def configure_head(config: PretrainedConfig, model_args) -> None:
    """Store the custom head's settings in the config (when one is asked for), so the saved folder rebuilds it."""
    if not uses_custom_head(model_args):
        return
    if model_args.head_activation not in ACT2FN:
        raise UserError(
            f"unknown --head_activation {model_args.head_activation!r}", fix=f"use one of {sorted(ACT2FN)[:12]}..."
        )
    setattr(
        config,
        HEAD_KEY,
        {
            "head": model_args.head,
            "pooling": model_args.pooling,
            "hidden_size": model_args.head_hidden_size or config.hidden_size,
            "dropout": model_args.head_dropout
            if model_args.head_dropout is not None
            else getattr(config, "hidden_dropout_prob", 0.1),
            "activation": model_args.head_activation,
        },
    )


def load_model(model_args, config: PretrainedConfig) -> PreTrainedModel:
    """The pretrained checkpoint's encoder under the head to fine-tune: the stock one, or EncoderClassifier."""
    return load_pretrained(model_args, config, EncoderClassifier if uses_custom_head(model_args) else None)


def set_labels(config: PretrainedConfig, labels) -> None:
    """num_labels, label2id, id2label and problem_type from the data, so saved models predict label names
    (and pipeline() applies a sigmoid per label for multi-label models)."""
    config.num_labels = len(labels)
    config.id2label = labels.id2label
    config.label2id = labels.label2id
    if getattr(labels, "regression", False):
        config.problem_type = (
            REGRESSION  # num_labels 1: transformers' own MSE regression, pipeline() returns the value
        )
    else:
        config.problem_type = MULTI_LABEL if labels.multi_label else "single_label_classification"
