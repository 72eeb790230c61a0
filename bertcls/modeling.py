"""Model loading, and the custom classifier head (the walkthrough's "own MLP after BERT with its own loss").

The default is the model's stock head through AutoModelForSequenceClassification. `--head mlp` or
`--pooling mean` builds EncoderClassifier: any AutoModel encoder, a pooled vector, a small head and its own loss.
Its settings live in config.json under `bertcls_head`, so `load_trained_model` rebuilds the same model.
"""

import logging
import os

import torch
from torch import nn
from transformers import AutoConfig, AutoModel, AutoModelForSequenceClassification, PretrainedConfig, PreTrainedModel
from transformers.activations import ACT2FN
from transformers.modeling_outputs import SequenceClassifierOutput

from .errors import UserError, load_error
from .labels import LabelSpace
from .losses import MULTI_LABEL, classification_loss
from .recipes import did_you_mean

logger = logging.getLogger(__name__)

HEAD_KEY = "bertcls_head"
PREPROCESSING_KEY = "bertcls_preprocessing"


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

    def forward(self, input_ids=None, attention_mask=None, token_type_ids=None, labels=None, **kwargs):
        inputs = {"input_ids": input_ids, "attention_mask": attention_mask}
        if token_type_ids is not None:
            inputs["token_type_ids"] = token_type_ids
        hidden = self.encoder(**inputs).last_hidden_state
        logits = self.head(self.pool(hidden, attention_mask))
        loss = classification_loss(logits, labels, self.config.problem_type) if labels is not None else None
        return SequenceClassifierOutput(loss=loss, logits=logits)


def _encoder_from_config(config):
    try:  # BERT-family encoders take add_pooling_layer; the custom head never uses the pooler
        return AutoModel.from_config(config, add_pooling_layer=False)
    except TypeError:
        return AutoModel.from_config(config)


def uses_custom_head(model_args) -> bool:
    return model_args.head != "linear" or model_args.pooling != "cls"


def load_config(model_args) -> PretrainedConfig:
    """The encoder's config, with the custom head's settings when one is asked for. Labels come later (set_labels)."""
    name = model_args.model_name_or_path
    _check_model_folder(name)
    try:
        config = AutoConfig.from_pretrained(
            name,
            cache_dir=model_args.cache_dir,
            revision=model_args.model_revision,
            trust_remote_code=model_args.trust_remote_code,
        )
    except (OSError, ValueError) as e:
        raise load_error(
            name, "model config", e, fix="pass a local model folder (config.json + weights) or a Hub id"
        ) from None
    if model_args.config_overrides:
        apply_config_overrides(config, model_args.config_overrides)
    if uses_custom_head(model_args):
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
        if model_args.head_activation not in ACT2FN:
            raise UserError(
                f"unknown --head_activation {model_args.head_activation!r}", fix=f"use one of {sorted(ACT2FN)[:12]}..."
            )
    return config


def apply_config_overrides(config: PretrainedConfig, overrides: str) -> None:
    """--config_overrides "key=value,key=value" onto the loaded config, through transformers' own parser
    (update_from_string: values take the type of the setting they replace)."""
    pairs = [pair.strip() for pair in overrides.split(",")]
    malformed = [pair for pair in pairs if pair.count("=") != 1 or not pair.split("=")[0].strip()]
    if malformed:
        raise UserError(
            f"--config_overrides: {malformed[0]!r} is not key=value",
            fix="write key=value pairs separated by commas, e.g. attention_probs_dropout_prob=0,hidden_dropout_prob=0.2",
        )
    known = list(config.to_dict())
    unknown = [pair.split("=")[0].strip() for pair in pairs if not hasattr(config, pair.split("=")[0].strip())]
    if unknown:
        raise UserError(
            f"--config_overrides: {unknown[0]!r} is not a setting of this model's config.json",
            fix=did_you_mean(unknown[:1], known),
        )
    try:
        config.update_from_string(",".join("=".join(part.strip() for part in pair.split("=")) for pair in pairs))
    except (ValueError, TypeError) as e:
        raise UserError(
            f"--config_overrides: {e}", fix="give each key a value of the type config.json holds"
        ) from None
    logger.info("Config overrides applied: %s", ", ".join(pairs))


def set_labels(config: PretrainedConfig, labels) -> None:
    """num_labels, label2id, id2label and problem_type from the data, so saved models predict label names
    (and pipeline() applies a sigmoid per label for multi-label models)."""
    config.num_labels = len(labels)
    config.id2label = labels.id2label
    config.label2id = labels.label2id
    config.problem_type = MULTI_LABEL if labels.multi_label else "single_label_classification"


def trained_labels(config) -> LabelSpace:
    """The model's labels, in id order, and how a multi-label model joins them."""
    trained = getattr(config, PREPROCESSING_KEY, None) or {}
    return LabelSpace(
        tuple(config.id2label[i] for i in range(config.num_labels)),
        multi_label=config.problem_type == MULTI_LABEL,
        delimiter=trained.get("label_delimiter") or "|",
    )


# How inputs were built and predictions read; `bertcls.predict` uses the same by default.
PREPROCESSING_KEYS = (
    "text_column",
    "text_pair_column",
    "max_seq_length",
    "truncation",
    "truncation_side",
    "head_tokens",
    "sliding_window",
    "stride",
    "window_aggregation",
    "multi_label_threshold",
)


def remember_preprocessing(config: PretrainedConfig, data_args, labels=None) -> None:
    """Store how inputs were built, so `bertcls.predict` builds them the same way by default."""
    settings = {k: getattr(data_args, k) for k in PREPROCESSING_KEYS}
    if labels is not None and labels.multi_label:
        settings["label_delimiter"] = labels.delimiter
    setattr(config, PREPROCESSING_KEY, settings)


def _check_model_folder(name: str) -> None:
    looks_local = os.path.isabs(name) or name.startswith(".") or os.path.exists(name)
    if looks_local and not os.path.isdir(name):
        raise UserError(f"model folder not found: {name}", fix="check --model_name_or_path")
    if os.path.isdir(name) and not os.path.isfile(os.path.join(name, "config.json")):
        what = "only a vocabulary (vocab.txt)" if os.path.isfile(os.path.join(name, "vocab.txt")) else "no config.json"
        raise UserError(
            f"model folder {name} holds {what}, not a model",
            fix="point --model_name_or_path at a folder with config.json and model weights",
        )


def load_model(model_args, config: PretrainedConfig) -> PreTrainedModel:
    """The model to fine-tune: stock head, or EncoderClassifier around the pretrained encoder."""
    options = {
        "cache_dir": model_args.cache_dir,
        "revision": model_args.model_revision,
        "trust_remote_code": model_args.trust_remote_code,
        # pytorch_model.bin is a pickle and can run code when loaded; accept it only when asked.
        "use_safetensors": None if model_args.allow_pickle_weights else True,
    }
    name = model_args.model_name_or_path
    try:
        if uses_custom_head(model_args):
            encoder = AutoModel.from_pretrained(name, config=config, **options, **_no_pooler(config))
            return EncoderClassifier(config, encoder=encoder)
        return AutoModelForSequenceClassification.from_pretrained(
            name, config=config, ignore_mismatched_sizes=model_args.ignore_mismatched_sizes, **options
        )
    except (OSError, ValueError, RuntimeError) as e:
        raise _model_error(name, e, config.num_labels) from None


def _no_pooler(config) -> dict:
    return (
        {"add_pooling_layer": False}
        if getattr(config, "model_type", None) in ("bert", "roberta", "ernie", "nezha")
        else {}
    )


def _model_error(name: str, error: Exception, num_labels: int) -> UserError:
    text = str(error)
    if "mismatched" in text.lower() or "size mismatch" in text:
        return UserError(
            f"{name} was fine-tuned for a different number of labels; this data has {num_labels}",
            fix="pass --ignore_mismatched_sizes to give it a fresh classifier head",
        )
    if "model.safetensors" in text:
        return UserError(
            f"{name} has no model.safetensors, only pickle weights (pytorch_model.bin), which can run code",
            fix="convert it to safetensors, or pass --allow_pickle_weights if you trust its source",
        )
    if "Unrecognized configuration class" in text:
        return UserError(
            f"{name} is not a model that can classify text: {text.splitlines()[0][:160]}",
            fix="use a BERT-family encoder checkpoint",
        )
    return load_error(name, "model", error, fix="check --model_name_or_path")


def load_trained_model(path: str) -> PreTrainedModel:
    """Load a folder written by run_classification.py, custom head or not."""
    _check_model_folder(path)
    config = AutoConfig.from_pretrained(path)
    if getattr(config, HEAD_KEY, None):
        return EncoderClassifier.from_pretrained(path, config=config)
    return AutoModelForSequenceClassification.from_pretrained(path, config=config)
