"""A PRETRAINED checkpoint as people really have it: its config, its tokenizer, and its weights under a new head.

Chinese encoders reach users in several layouts, and each one is read here:
- Hub folders (`hfl/chinese-bert-wwm-ext` and friends): config.json (often `BertForMaskedLM`), weights only as
  `pytorch_model.bin`, a tokenizer_config.json without `model_max_length`, special_tokens_map.json, an empty
  added_tokens.json. Newer folders: model.safetensors, possibly sharded (`*.index.json`).
- Release zips (Chinese-BERT-wwm on GitHub, UER-py): `bert_config.json` with Google's keys only, a
  BertForPreTraining `pytorch_model.bin` (old ones name LayerNorm tensors gamma/beta), `vocab.txt`.
- ALBERT-Chinese and ELECTRA-Chinese folders that ship a BERT WordPiece vocab.txt instead of a sentencepiece model.

`pytorch_model.bin` is read by torch's weights-only unpickler (what transformers 5 uses): tensors only, no code
runs. A file it refuses is one clear error naming the file; nothing here ever unpickles arbitrary objects.
A fine-tuned folder written by run_classification.py is a different thing: see classifier.py.
"""

import glob
import logging
import os
import pickle
from contextlib import contextmanager

from transformers import (
    AutoConfig,
    AutoModel,
    AutoModelForSequenceClassification,
    AutoTokenizer,
    BertConfig,
    BertTokenizer,
    PretrainedConfig,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

from bertcls.config.recipes import did_you_mean
from bertcls.data.tokenization import position_limit
from bertcls.errors import UserError, load_error

logger = logging.getLogger(__name__)

CONFIG_FILE = "config.json"
GOOGLE_CONFIG_FILE = "bert_config.json"  # Google's BERT release format, also Chinese-BERT-wwm and UER-py zips
# In the order transformers reads them.
WEIGHT_FILES = (
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
)
# A tokenizer that does not say how long its inputs may be reports this (transformers' VERY_LARGE_INTEGER is 1e30).
UNSET_MAX_LENGTH = 1_000_000
TF_CONVERSION = (
    "download the PyTorch version of the release (Chinese-BERT-wwm publishes one for every model), or convert it "
    "once in a separate environment: pip install 'transformers<4.50' tensorflow && transformers-cli convert "
    "--model_type bert --tf_checkpoint {ckpt} --config {folder}/bert_config.json --pytorch_dump_output "
    "{folder}/pytorch_model.bin"
)
UER_CONVERSION = (
    "convert it with UER-py's scripts/convert_bert_from_uer_to_huggingface.py (--input_model_path {weights} "
    "--output_model_path {folder}/pytorch_model.bin --layers_num N), or use the uer/... folder of the Hub"
)


def is_local(name: str) -> bool:
    return os.path.isabs(name) or name.startswith(".") or os.path.exists(name)


def check_local_folder(name: str) -> None:
    """A local model folder must exist and hold a config and weights that PyTorch can read; say what is wrong."""
    if not is_local(name):
        return  # a Hub id: from_pretrained reports what is missing
    if not os.path.isdir(name):
        raise UserError(f"model folder not found: {name}", fix="check --model_name_or_path")
    has = lambda f: os.path.isfile(os.path.join(name, f))  # noqa: E731
    tf_checkpoints = sorted(glob.glob(os.path.join(name, "*.ckpt.index")))
    if not any(has(f) for f in WEIGHT_FILES):
        if tf_checkpoints or has("tf_model.h5"):
            ckpt = tf_checkpoints[0][: -len(".index")] if tf_checkpoints else os.path.join(name, "tf_model.h5")
            raise UserError(
                f"model folder {name} holds a TensorFlow checkpoint ({os.path.basename(ckpt)}), which transformers 5 "
                "cannot read",
                fix=TF_CONVERSION.format(ckpt=ckpt, folder=name),
            )
        if has("flax_model.msgpack"):
            raise UserError(
                f"model folder {name} holds only Flax weights (flax_model.msgpack), which transformers 5 cannot read",
                fix="download the folder's pytorch_model.bin or model.safetensors as well",
            )
        if has("vocab.txt") and not (has(CONFIG_FILE) or has(GOOGLE_CONFIG_FILE)):
            raise UserError(
                f"model folder {name} holds only a vocabulary (vocab.txt), not a model",
                fix="point --model_name_or_path at a folder with config.json (or bert_config.json) and weights",
            )
        raise UserError(
            f"model folder {name} has no weights ({', '.join(WEIGHT_FILES)})",
            fix="point --model_name_or_path at the folder that holds the checkpoint's weights",
        )
    if not (has(CONFIG_FILE) or has(GOOGLE_CONFIG_FILE)):
        raise UserError(
            f"model folder {name} has weights but no config.json (or bert_config.json)",
            fix="copy the checkpoint's config file into the folder",
        )


def weights_file(name: str) -> str | None:
    """The weights file from_pretrained will read in a local folder (None for a Hub id)."""
    if not os.path.isdir(name):
        return None
    for file in WEIGHT_FILES:
        if os.path.isfile(os.path.join(name, file)):
            return os.path.join(name, file)
    return None


def load_config(model_args) -> PretrainedConfig:
    """The checkpoint's config: config.json, or bert_config.json of a release zip; --config_overrides applied."""
    name = model_args.model_name_or_path
    check_local_folder(name)
    if getattr(model_args, "config_name", None):  # --config_name: the config comes from elsewhere (reference)
        name = model_args.config_name
        if is_local(name) and not os.path.isfile(os.path.join(name, CONFIG_FILE)) and not os.path.isfile(name):
            raise UserError(f"--config_name {name}: no {CONFIG_FILE} there", fix="pass a folder holding config.json")
    if os.path.isdir(name) and not os.path.isfile(os.path.join(name, CONFIG_FILE)):
        # AutoConfig reads config.json only; Google's bert_config.json holds the same keys minus model_type.
        config = BertConfig.from_json_file(os.path.join(name, GOOGLE_CONFIG_FILE))
        logger.info("%s: no config.json, read the BERT config from %s", name, GOOGLE_CONFIG_FILE)
    else:
        try:
            config = AutoConfig.from_pretrained(name, **model_args.hub_options())
        except (OSError, ValueError) as e:
            raise load_error(
                name, "model config", e, fix="pass a local model folder (config.json + weights) or a Hub id"
            ) from None
    if model_args.config_overrides:
        apply_config_overrides(config, model_args.config_overrides)
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


# ---------------------------------------------------------------------------------------------------------------
# Tokenizer


def load_tokenizer(name_or_path: str, model_args=None, config: PretrainedConfig | None = None):
    """The checkpoint's tokenizer, with the fallbacks real Chinese checkpoints need, and a known model_max_length.

    - a folder holding only vocab.txt (release zips): BertTokenizer.from_pretrained on the folder (AutoTokenizer
      cannot build one from a bare vocab.txt in transformers 5, and BertTokenizer(vocab_file=...) ignores the file);
    - a vocab.txt that the tokenizer AutoTokenizer built does not use (ALBERT-Chinese: AutoTokenizer makes a
      sentencepiece AlbertTokenizer with no model file, which maps every Chinese character to [UNK]): BertTokenizer;
    - model_max_length missing or 1e30 (HFL's tokenizer configs): the model's position limit, logged.
    """
    options = {}
    if model_args is not None:
        options = {
            **model_args.hub_options(),
            # transformers 5 always builds the fast tokenizer and drops this; passed on for the versions that read it
            "use_fast": getattr(model_args, "use_fast_tokenizer", True),
        }
    vocab = os.path.join(name_or_path, "vocab.txt")
    has_vocab = os.path.isfile(vocab)
    tokenizer_files = any(
        os.path.isfile(os.path.join(name_or_path, f)) for f in ("tokenizer.json", "tokenizer_config.json")
    )
    if has_vocab and not tokenizer_files:
        tokenizer = BertTokenizer.from_pretrained(name_or_path)
        logger.info("%s: no tokenizer files, a WordPiece BertTokenizer built from its vocab.txt", name_or_path)
    else:
        try:
            tokenizer = AutoTokenizer.from_pretrained(name_or_path, **options)
        except (OSError, ValueError, TypeError) as e:
            if not has_vocab:
                raise load_error(
                    name_or_path,
                    "tokenizer",
                    e,
                    fix="pass a model folder with tokenizer files or vocab.txt, or --tokenizer_name",
                ) from None
            tokenizer = None
            logger.info("%s: AutoTokenizer failed (%s); using BertTokenizer on its vocab.txt", name_or_path, e)
        if has_vocab and (tokenizer is None or tokenizer.vocab_size != _vocab_lines(vocab)):
            if tokenizer is not None:
                logger.info(
                    "%s: AutoTokenizer built a %s of %d tokens, but the folder's vocab.txt holds %d (ALBERT/ELECTRA-"
                    "Chinese ship a BERT vocabulary): using BertTokenizer on vocab.txt",
                    name_or_path,
                    type(tokenizer).__name__,
                    tokenizer.vocab_size,
                    _vocab_lines(vocab),
                )
            tokenizer = BertTokenizer.from_pretrained(name_or_path)
    if config is not None:
        cap_model_max_length(tokenizer, config, name_or_path)
    return tokenizer


def _vocab_lines(path: str) -> int:
    with open(path, encoding="utf-8") as f:
        return sum(1 for _ in f)


def cap_model_max_length(tokenizer: PreTrainedTokenizerBase, config, name: str) -> None:
    """A tokenizer that sets no model_max_length (or 1e30) gets the model's position limit, so truncation=True
    in pipeline() cuts where the model must."""
    limit = position_limit(config)
    if limit and (not tokenizer.model_max_length or tokenizer.model_max_length > UNSET_MAX_LENGTH):
        logger.info("%s: the tokenizer sets no model_max_length; using the model's position limit, %d", name, limit)
        tokenizer.model_max_length = limit


def check_vocabulary(tokenizer: PreTrainedTokenizerBase, config, name: str) -> None:
    """Every token id must have a row in the embedding matrix; otherwise forward fails deep inside with
    `IndexError: index out of range in self`, after loading and tokenizing everything."""
    rows = getattr(config, "vocab_size", None)
    if not rows:
        return
    ids = max(len(tokenizer), max(tokenizer.get_vocab().values(), default=-1) + 1)
    if ids > rows:
        raise UserError(
            f"the tokenizer has {ids} tokens but the model {name} has an embedding matrix of {rows} rows "
            f"(vocab_size): token ids {rows}..{ids - 1} would crash the model",
            fix="use the vocab.txt that came with this checkpoint (or --tokenizer_name with the matching one)",
        )


# ---------------------------------------------------------------------------------------------------------------
# Weights


@contextmanager
def _quiet_load_report():
    """transformers prints a table of every missing/unexpected tensor; load_pretrained logs one line instead.
    Raising that logger to ERROR makes transformers 5.24 run a tensor-parallel plan check that warns about every
    layer of a model loaded without tensor parallelism ("The following layers were not sharded: ..."): nothing is
    wrong, so that logger is quieted too."""
    logs = [logging.getLogger(n) for n in ("transformers.modeling_utils", "transformers.distributed.tensor_parallel")]
    levels = [log.level for log in logs]
    for log in logs:
        log.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for log, level in zip(logs, levels):
            log.setLevel(level)


def from_pretrained(model_class, name: str, **options):
    """model_class.from_pretrained with errors named: a pickle the weights-only loader refuses, a mismatched head.
    Returns the model and the loading info (missing / unexpected keys)."""
    source = weights_file(name) or name
    if source.endswith(".bin") or source.endswith(".bin.index.json"):
        logger.info("reading %s with torch's weights-only loader (tensors only: no code in it runs)", source)
    else:
        logger.info("reading %s", source)
    try:
        with _quiet_load_report():
            return model_class.from_pretrained(name, output_loading_info=True, **options)
    except pickle.UnpicklingError as e:
        reason = next((line for line in str(e).splitlines() if "GLOBAL" in line or "Unsupported" in line), "")
        raise UserError(
            f"{source}: torch's weights-only loader refused this file: it holds more than tensors"
            + (f" ({reason.strip()})" if reason else "")
            + "; none of its code was run",
            fix="get the checkpoint from its original source, or as model.safetensors; bertcls never unpickles "
            "anything but tensors",
        ) from None


def load_pretrained(model_args, config: PretrainedConfig, head_class=None) -> PreTrainedModel:
    """The checkpoint's encoder under a classification head: the stock head (AutoModelForSequenceClassification)
    or `head_class(config, encoder=...)`. Logs the weights file read and, once, the new head's tensors. An encoder
    tensor that is missing from the checkpoint (other than a pooler that MaskedLM checkpoints lack) is an error:
    such a model would train from random weights without a word."""
    name = model_args.model_name_or_path
    options = model_args.hub_options()
    try:
        if head_class is not None:
            extra = {"add_pooling_layer": False} if _has_pooler_option(config) else {}
            encoder, info = from_pretrained(AutoModel, name, config=config, **options, **extra)
            model = head_class(config, encoder=encoder)
            new_head = [f"head.{n}" for n, _ in model.head.named_parameters()]
        else:
            model, info = from_pretrained(
                AutoModelForSequenceClassification,
                name,
                config=config,
                ignore_mismatched_sizes=model_args.ignore_mismatched_sizes,
                **options,
            )
            new_head = []
    except (OSError, ValueError, RuntimeError) as e:
        raise _model_error(name, e, config.num_labels) from None
    missing = sorted(set(info["missing_keys"]) | {k for k, *_ in info.get("mismatched_keys") or ()})
    # The stock model's own keys include its head; the custom head's encoder was loaded alone.
    head = [k for k in missing if _is_head(k, model)] if head_class is None else []
    pooler = [k for k in missing if ".pooler." in f".{k}" and k not in head]
    lost = [k for k in missing if k not in head and k not in pooler]
    if lost:
        raise _unloaded_encoder_error(name, lost, info["unexpected_keys"])
    logger.info(
        "new classification head (trained from scratch): %s%s; checkpoint tensors not used: %d%s",
        ", ".join(new_head + head) or "none",
        f"; pooler not in the checkpoint, initialized: {', '.join(pooler)}" if pooler else "",
        len(info["unexpected_keys"]),
        f" ({_summarize(info['unexpected_keys'])})" if info["unexpected_keys"] else "",
    )
    return model


def _has_pooler_option(config) -> bool:
    # BERT-family encoders take add_pooling_layer; the custom head never uses the pooler.
    return getattr(config, "model_type", None) in ("bert", "roberta", "ernie", "nezha", "albert")


def _is_head(key: str, model) -> bool:
    """Tensors of the classifier on top of the base model (classifier.*, or `score.*` / `head.*` elsewhere)."""
    prefix = getattr(model, "base_model_prefix", "")
    return not (prefix and key.startswith(prefix + "."))


def _summarize(keys) -> str:
    """`cls.predictions.* (5), cls.seq_relationship.* (2)`: the unused tensors by their first two name parts."""
    groups = {}
    for key in keys:
        parts = key.split(".")
        stem = ".".join(parts[:2] if len(parts) > 2 else parts[:1])
        groups[stem] = groups.get(stem, 0) + 1
    return ", ".join(f"{stem}.* ({n})" for stem, n in sorted(groups.items())[:6])


def _unloaded_encoder_error(name: str, lost: list[str], unexpected) -> UserError:
    folder = name if os.path.isdir(name) else None
    uer = any(k.startswith(("embedding.word", "encoder.transformer.")) for k in unexpected)
    if uer and folder:
        return UserError(
            f"{weights_file(name)} holds UER-py weights (tensor names like 'embedding.word.embedding.weight'), "
            f"which transformers cannot map: {len(lost)} encoder tensors would stay random",
            fix=UER_CONVERSION.format(weights=weights_file(name), folder=folder),
        )
    return UserError(
        f"the weights of {name} do not fit its config: {len(lost)} encoder tensors are not in the checkpoint "
        f"(e.g. {lost[0]}){'; its tensors are named like ' + repr(sorted(unexpected)[0]) if unexpected else ''}, "
        "so they would be trained from random values",
        fix="check that config.json and the weights belong to the same checkpoint",
    )


def _model_error(name: str, error: Exception, num_labels: int) -> UserError:
    text = str(error)
    if "mismatched" in text.lower() or "size mismatch" in text:
        return UserError(
            f"{name} was fine-tuned for a different number of labels; this data has {num_labels}",
            fix="pass --ignore_mismatched_sizes to give it a fresh classifier head",
        )
    if "Unrecognized configuration class" in text:
        return UserError(
            f"{name} is not a model that can classify text: {text.splitlines()[0][:160]}",
            fix="use a BERT-family encoder checkpoint",
        )
    return load_error(name, "model", error, fix="check --model_name_or_path")
