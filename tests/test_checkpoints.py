"""Pretrained checkpoints in the layouts real Chinese releases ship (tests/layouts.py): each loads its own weights
under a fresh head, tokenizes like bert-base-chinese, and fine-tunes, evaluates and predicts; broken or hostile
ones stop with one clear line."""

import json
import logging

import pandas as pd
import pytest
import torch

import run_classification
from bertcls.config.arguments import ModelArguments
from bertcls.errors import UserError
from bertcls.model.checkpoints import load_config, load_tokenizer
from bertcls.model.heads import configure_head, load_model
from bertcls.shipping import predict

from . import layouts
from .conftest import chnsenticorp, cli, shared

ENCODERS = {
    "hub_bert": (layouts.hub_bert, "bert"),
    "release_zip": (layouts.release_zip, "bert"),
    "albert_chinese": (layouts.albert_chinese, "albert"),
    "electra_chinese": (layouts.electra_chinese, "electra"),
}


def build(name, tmp_path, **kwargs):
    return ENCODERS[name][0](tmp_path / name, shared("vocab", "vocab.txt"), **kwargs)


def load(folder, **model_flags):
    model_args = ModelArguments(model_name_or_path=str(folder), **model_flags)
    config = load_config(model_args)
    configure_head(config, model_args)
    config.num_labels = 2
    return load_model(model_args, config)


def saved_tensors(folder) -> dict:
    files = sorted(folder.glob("pytorch_model*.bin"))
    state = {}
    for file in files:
        state.update(torch.load(file, weights_only=True))
    return {k.replace("LayerNorm.gamma", "LayerNorm.weight").replace("LayerNorm.beta", "LayerNorm.bias"): v
            for k, v in state.items()}  # fmt: skip


@pytest.mark.parametrize("name", list(ENCODERS))
def test_each_layout_loads_its_own_encoder_weights_under_a_new_head(name, tmp_path, caplog):
    folder = build(name, tmp_path)
    with caplog.at_level(logging.INFO, logger="bertcls"):
        model = load(folder)
    prefix = ENCODERS[name][1]
    saved = saved_tensors(folder)
    loaded = model.state_dict()
    # Pretraining checkpoints name the encoder `<prefix>.`; every one of its tensors must come back as saved.
    encoder_keys = [k for k in saved if k.startswith(prefix + ".") and ".pooler." not in k]
    assert len(encoder_keys) > 20
    for key in encoder_keys:
        torch.testing.assert_close(loaded[key], saved[key], rtol=0, atol=0, msg=key)
    layer_norm = [k for k in encoder_keys if k.endswith("LayerNorm.weight")][0]
    assert not torch.all(loaded[layer_norm] == 1.0)  # the saved random values, not a fresh LayerNorm
    text = caplog.text
    assert f"reading {folder}/pytorch_model.bin with torch's weights-only loader" in text
    assert text.count("new classification head") == 1 and "classifier." in text


@pytest.mark.parametrize("name", ["hub_bert", "release_zip", "albert_chinese", "electra_chinese"])
def test_each_layout_tokenizes_like_bert_base_chinese(name, tmp_path, caplog):
    folder = build(name, tmp_path)
    config = load_config(ModelArguments(model_name_or_path=str(folder)))
    with caplog.at_level(logging.INFO, logger="bertcls"):
        tokenizer = load_tokenizer(str(folder), config=config)
    assert tokenizer("我喜欢")["input_ids"] == [101, 2769, 1599, 3614, 102]
    assert tokenizer("今天", "天气")["token_type_ids"] == [0, 0, 0, 0, 1, 1, 1]
    # HFL's tokenizer configs set no model_max_length (1e30): capped at the position limit, logged
    assert tokenizer.model_max_length == 512 and "sets no model_max_length" in caplog.text


def test_albert_folder_with_a_tokenizer_config_gets_the_bert_tokenizer(tmp_path, caplog):
    """AutoTokenizer alone builds a sentencepiece AlbertTokenizer with no model file: 我喜欢 -> [CLS] [UNK] [SEP]."""
    folder = layouts.albert_chinese(tmp_path / "albert", shared("vocab", "vocab.txt"), tokenizer_config=True)
    config = load_config(ModelArguments(model_name_or_path=str(folder)))
    with caplog.at_level(logging.INFO, logger="bertcls"):
        tokenizer = load_tokenizer(str(folder), config=config)
    assert tokenizer("我喜欢")["input_ids"] == [101, 2769, 1599, 3614, 102]
    assert "holds 21128" in caplog.text


def test_sharded_pickle_weights_load(tmp_path):
    folder = layouts.shard_bin(build("hub_bert", tmp_path))
    model = load(folder)
    saved = saved_tensors(folder)
    key = "bert.encoder.layer.1.output.LayerNorm.weight"
    torch.testing.assert_close(model.state_dict()[key], saved[key], rtol=0, atol=0)


def test_custom_head_takes_the_encoder_of_a_pretraining_checkpoint(tmp_path):
    folder = build("release_zip", tmp_path)
    model = load(folder, head="mlp", pooling="mean")
    saved = saved_tensors(folder)
    torch.testing.assert_close(
        model.encoder.embeddings.LayerNorm.weight, saved["bert.embeddings.LayerNorm.weight"], rtol=0, atol=0
    )


class CreatesAFile:
    """A pickled object whose unpickling creates a file: what a hostile pytorch_model.bin does."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def run_error(argv, capsys) -> str:
    with pytest.raises(SystemExit) as exit_info:
        run_classification.main(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return next(line for line in err.splitlines() if line.startswith("error: "))


@pytest.fixture(scope="module")
def small_data(tmp_path_factory) -> dict:
    """The first rows of ChnSentiCorp's splits as files of their own, so each run reads only what it uses."""
    folder = tmp_path_factory.mktemp("chnsenticorp-small")
    files = {}
    for split, rows in (("train", 64), ("dev", 16), ("test", 16)):
        with open(shared("chnsenticorp", f"{split}.tsv"), encoding="utf-8") as f:
            lines = f.read().splitlines()[: rows + 1]
        (folder / f"{split}.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")
        files[split] = str(folder / f"{split}.tsv")
    return files


def quick_run(folder, out, data=None, **flags):
    settings = {"max_seq_length": 32, "max_steps": 2, "save_strategy": "no", **flags}
    if data is None:
        return chnsenticorp(str(folder), out, train=64, validation=16, test=16, **settings)
    return cli(
        model_name_or_path=folder,
        train_file=data["train"],
        validation_file=data["dev"],
        test_file=data["test"],
        text_column="text_a",
        output_dir=out,
        **settings,
    )


def test_hostile_pickle_never_runs(tmp_path, capsys):
    folder = build("hub_bert", tmp_path)
    marker = tmp_path / "pwned"
    state = torch.load(folder / "pytorch_model.bin", weights_only=True)
    torch.save({**state, "extra": CreatesAFile(marker)}, folder / "pytorch_model.bin")
    line = run_error(quick_run(folder, tmp_path / "out"), capsys)
    assert f"{folder}/pytorch_model.bin: torch's weights-only loader refused this file" in line
    assert "none of its code was run" in line and "Fix: " in line
    assert not marker.exists()


def test_tensorflow_checkpoint_says_how_to_convert(tmp_path, capsys):
    folder = tmp_path / "chinese_wwm_ext_L-12_H-768_A-12"
    folder.mkdir()
    (folder / "bert_config.json").write_text(json.dumps({"hidden_size": 32, "vocab_size": 21128}))
    for suffix in (".index", ".data-00000-of-00001", ".meta"):
        (folder / f"bert_model.ckpt{suffix}").write_bytes(b"\0" * 16)
    (folder / "vocab.txt").write_text("[PAD]\n")
    line = run_error(quick_run(folder, tmp_path / "out"), capsys)
    assert "holds a TensorFlow checkpoint (bert_model.ckpt)" in line
    assert "transformers-cli convert --model_type bert" in line and "PyTorch version of the release" in line


def test_vocabulary_larger_than_the_embedding_fails_before_training(tmp_path, capsys, monkeypatch):
    folder = layouts.hub_bert(tmp_path / "small-embedding", shared("vocab", "vocab.txt"), vocab_size=21000)
    tokenized = []
    monkeypatch.setattr(run_classification, "tokenize_splits", lambda *a, **k: tokenized.append(1))
    line = run_error(quick_run(folder, tmp_path / "out"), capsys)
    assert "the tokenizer has 21128 tokens" in line and "embedding matrix of 21000 rows" in line
    assert not tokenized and not (tmp_path / "out").exists()


def test_uer_weights_are_named_and_the_converter_given(tmp_path):
    folder = build("hub_bert", tmp_path)
    state = torch.load(folder / "pytorch_model.bin", weights_only=True)
    uer = {k.replace("bert.embeddings.word_embeddings", "embedding.word.embedding"): v for k, v in state.items()}
    uer = {k.replace("bert.encoder.layer.", "encoder.transformer."): v for k, v in uer.items()}
    torch.save(uer, folder / "pytorch_model.bin")
    with pytest.raises(UserError, match="holds UER-py weights.*convert_bert_from_uer_to_huggingface"):
        load(folder)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["hub_bert", "release_zip", "albert_chinese", "electra_chinese", "sharded"])
def test_fine_tune_evaluate_and_predict_with_each_layout(name, tmp_path, small_data):
    if name == "sharded":
        folder = layouts.shard_bin(build("hub_bert", tmp_path))
    else:
        folder = build(name, tmp_path)
    out = tmp_path / "out"
    results = run_classification.main(quick_run(folder, out, small_data, max_steps=4, per_device_train_batch_size=16))
    assert results["eval_samples"] == 16 and results["test_samples"] == 16
    again = tmp_path / "again.csv"
    predict.main(cli(model_name_or_path=out, input_file=small_data["test"], output_file=again))
    reference = pd.read_csv(out / "predictions.csv")
    repeated = pd.read_csv(again)
    assert len(repeated) == len(reference) == 16
    assert (repeated["prediction"] == reference["prediction"]).all()
    assert (repeated["prob_1"] - reference["prob_1"]).abs().max() < 1e-5
