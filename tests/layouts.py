"""Tiny checkpoints written the way real Chinese releases write them, not the way bertcls saves models.

- hub_bert: the hfl/chinese-bert-wwm-ext Hub repo as first published: config.json saying BertForMaskedLM (with
  HFL's extra keys), weights only in pytorch_model.bin (torch.save of a state dict), tokenizer_config.json without
  model_max_length, special_tokens_map.json, an empty added_tokens.json, vocab.txt.
- release_zip: the Chinese-BERT-wwm GitHub zip: bert_config.json with Google's keys only, pytorch_model.bin of a
  BertForPreTraining state dict whose LayerNorm tensors are named gamma/beta (pytorch-pretrained-bert), vocab.txt.
- albert_chinese / electra_chinese: config.json of those model types, a MaskedLM / discriminator state dict in
  pytorch_model.bin, and a BERT WordPiece vocab.txt (no sentencepiece model).
Every LayerNorm weight is set to random values, so a test can tell loaded weights from freshly initialized ones.
"""

import json
import shutil
from pathlib import Path

import torch
from transformers import (
    AlbertConfig,
    AlbertForMaskedLM,
    BertConfig,
    BertForMaskedLM,
    BertForPreTraining,
    ElectraConfig,
    ElectraForPreTraining,
)

SIZES = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 64}
GOOGLE_KEYS = (
    "attention_probs_dropout_prob",
    "hidden_act",
    "hidden_dropout_prob",
    "hidden_size",
    "initializer_range",
    "intermediate_size",
    "max_position_embeddings",
    "num_attention_heads",
    "num_hidden_layers",
    "type_vocab_size",
    "vocab_size",
)
SPECIAL_TOKENS_MAP = {
    "unk_token": "[UNK]",
    "sep_token": "[SEP]",
    "pad_token": "[PAD]",
    "cls_token": "[CLS]",
    "mask_token": "[MASK]",
}


def _state_dict(model, seed: int) -> dict:
    torch.manual_seed(seed)
    for name, param in model.named_parameters():
        if "LayerNorm.weight" in name:
            param.data.uniform_(0.5, 1.5)  # not the 1.0 a fresh LayerNorm starts from
    return {k: v.clone() for k, v in model.state_dict().items()}


def _json(path: Path, obj) -> None:
    path.write_text(json.dumps(obj, indent=2, ensure_ascii=False), encoding="utf-8")


def hub_bert(folder: Path, vocab: str, vocab_size: int = 21128, seed: int = 0) -> Path:
    folder.mkdir(parents=True)
    torch.manual_seed(seed)
    config = BertConfig(vocab_size=vocab_size, **SIZES)
    state = _state_dict(BertForMaskedLM(config), seed)
    _json(
        folder / "config.json",
        {
            "architectures": ["BertForMaskedLM"],
            **{k: getattr(config, k) for k in GOOGLE_KEYS},
            "directionality": "bidi",
            "layer_norm_eps": 1e-12,
            "model_type": "bert",
            "output_past": True,
            "pad_token_id": 0,
            "pooler_fc_size": 768,
            "pooler_num_attention_heads": 12,
            "pooler_num_fc_layers": 3,
            "pooler_size_per_head": 128,
            "pooler_type": "first_token_transform",
        },
    )
    torch.save(state, folder / "pytorch_model.bin")
    _json(folder / "tokenizer_config.json", {"init_inputs": []})
    _json(folder / "special_tokens_map.json", SPECIAL_TOKENS_MAP)
    _json(folder / "added_tokens.json", {})
    shutil.copy(vocab, folder / "vocab.txt")
    return folder


def release_zip(folder: Path, vocab: str, seed: int = 1) -> Path:
    folder.mkdir(parents=True)
    torch.manual_seed(seed)
    config = BertConfig(vocab_size=21128, **SIZES)
    state = _state_dict(BertForPreTraining(config), seed)
    state = {k.replace("LayerNorm.weight", "LayerNorm.gamma").replace("LayerNorm.bias", "LayerNorm.beta"): v
             for k, v in state.items()}  # fmt: skip
    google = {k: getattr(config, k) for k in GOOGLE_KEYS}
    _json(folder / "bert_config.json", {**google, "directionality": "bidi", "pooler_type": "first_token_transform"})
    torch.save(state, folder / "pytorch_model.bin")
    shutil.copy(vocab, folder / "vocab.txt")
    return folder


def _transformers_release(folder: Path, vocab: str, config, model_class, seed: int) -> None:
    """config.json of `config` naming `model_class`, its state dict in pytorch_model.bin, the BERT vocab.txt."""
    folder.mkdir(parents=True)
    torch.manual_seed(seed)
    config.architectures = [model_class.__name__]
    config.save_pretrained(folder)
    torch.save(_state_dict(model_class(config), seed), folder / "pytorch_model.bin")
    shutil.copy(vocab, folder / "vocab.txt")


def albert_chinese(folder: Path, vocab: str, tokenizer_config: bool = False, seed: int = 2) -> Path:
    config = AlbertConfig(vocab_size=21128, embedding_size=16, **SIZES)
    _transformers_release(folder, vocab, config, AlbertForMaskedLM, seed)
    if tokenizer_config:  # without tokenizer_class, AutoTokenizer builds a sentencepiece AlbertTokenizer
        _json(folder / "tokenizer_config.json", {"do_lower_case": True})
    return folder


def electra_chinese(folder: Path, vocab: str, seed: int = 3) -> Path:
    config = ElectraConfig(vocab_size=21128, embedding_size=16, **SIZES)
    _transformers_release(folder, vocab, config, ElectraForPreTraining, seed)
    _json(folder / "tokenizer_config.json", {"do_lower_case": True})
    _json(folder / "special_tokens_map.json", SPECIAL_TOKENS_MAP)
    return folder


def shard_bin(folder: Path) -> Path:
    """Split the folder's pytorch_model.bin into two shards with a pytorch_model.bin.index.json, as large releases
    were published before safetensors."""
    state = torch.load(folder / "pytorch_model.bin", weights_only=True)
    names = sorted(state)
    halves = {"pytorch_model-00001-of-00002.bin": names[::2], "pytorch_model-00002-of-00002.bin": names[1::2]}
    weight_map = {}
    for file, keys in halves.items():
        torch.save({k: state[k] for k in keys}, folder / file)
        weight_map.update(dict.fromkeys(keys, file))
    total = sum(t.numel() * t.element_size() for t in state.values())
    _json(folder / "pytorch_model.bin.index.json", {"metadata": {"total_size": total}, "weight_map": weight_map})
    (folder / "pytorch_model.bin").unlink()
    return folder
