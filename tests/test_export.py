"""bertcls.shipping.export and predict --backend onnx: the export predicts what the trained model predicts.

Parity is checked three ways: the export's predict CLI output against the torch predict CLI's on the same file;
one row against a forward pass of plain transformers on inputs built by hand (pairs with their token_type_ids,
head_tail cut by hand, windows by the tokenizer's own overflow); and the export's own report.
"""

import json
import shutil

import numpy as np
import onnx
import pandas as pd
import pytest
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from bertcls.errors import UserError
from bertcls.model.classifier import EXPORT_KEY, TrainedClassifier, load_trained_model
from bertcls.model.heads import HEAD_KEY
from bertcls.shipping import export, predict

from .shipping import CHECK_ROWS, exported, fine_tuned

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def runs(tiny_model, tmp_path_factory):
    return {kind: fine_tuned(kind, tiny_model, tmp_path_factory) for kind in ("single", "pair", "custom")}


@pytest.fixture(scope="module")
def exports(runs, tmp_path_factory):
    return {kind: exported(run, tmp_path_factory) for kind, run in runs.items()}


def check_file(run) -> str:
    with open(run / "recipe.json") as f:
        return json.load(f)["test_file"]


def predict_csv(model_dir, input_file, target, **flags) -> pd.DataFrame:
    argv = ["--model_name_or_path", str(model_dir), "--input_file", input_file, "--output_file", str(target)]
    for name, value in flags.items():
        argv += [f"--{name}", str(value)]
    predict.main(argv)
    return pd.read_csv(target, dtype={"prediction": str, "label": str}, keep_default_na=False)


@pytest.mark.parametrize("kind", ["single", "pair", "custom"])
def test_onnx_predict_equals_torch_predict(kind, runs, exports, tmp_path):
    run, onnx_dir = runs[kind], exports[kind]
    rows = check_file(run)
    by_torch = predict_csv(run, rows, tmp_path / "torch.csv", backend="torch")
    by_onnx = predict_csv(onnx_dir, rows, tmp_path / "onnx.csv")  # the export folder's own backend: onnx
    assert len(by_onnx) == CHECK_ROWS
    assert list(by_onnx.columns) == list(by_torch.columns)
    assert by_onnx["text_a"].tolist() == by_torch["text_a"].tolist()  # input order
    assert by_onnx["prediction"].tolist() == by_torch["prediction"].tolist()
    probs = [c for c in by_torch.columns if c.startswith("prob_")]
    assert np.abs(by_onnx[probs].to_numpy() - by_torch[probs].to_numpy()).max() <= 2e-6  # csv keeps 6 decimals
    # The run's own predictions.csv (written by the Trainer's path) agrees too.
    assert np.allclose(pd.read_csv(run / "predictions.csv")["prob_1"], by_onnx["prob_1"], atol=2e-6)

    with open(onnx_dir / "export_report.json") as f:
        report = json.load(f)
    assert report["rows"] == CHECK_ROWS and report["check_file"] == rows
    fp32 = report["onnx_fp32"]
    assert fp32["agreement"] == 1.0 and fp32["max_abs_prob_diff"] <= 1e-4
    assert fp32["scores"] == report["torch"]["scores"] and fp32["scores"]["samples"] == CHECK_ROWS
    accuracy = (by_torch["prediction"] == by_torch["label"]).mean()
    assert report["torch"]["scores"]["accuracy"] == pytest.approx(accuracy)
    assert fp32["rows_per_s"] > 0 and report["torch"]["rows_per_s"] > 0


def test_export_folder_carries_labels_preprocessing_and_tokenizer(runs, exports):
    for kind, onnx_dir in exports.items():
        names = {p.name for p in onnx_dir.iterdir()}
        assert {"model.onnx", "config.json", "tokenizer.json", "tokenizer_config.json", "export_report.json"} <= names
        assert not names & {"model.safetensors", "pytorch_model.bin"}
        with open(onnx_dir / "config.json") as f:
            config = json.load(f)
        with open(runs[kind] / "config.json") as f:
            trained = json.load(f)
        for key in ("bertcls_preprocessing", "id2label", "label2id", "problem_type"):
            assert config[key] == trained[key], (kind, key)
        assert (HEAD_KEY in config) == (kind == "custom") and config.get(HEAD_KEY) == trained.get(HEAD_KEY)
        assert config[EXPORT_KEY]["precision"] == "fp32"
    graph = onnx.load(str(exports["pair"] / "model.onnx"))
    inputs = {i.name: [d.dim_param or d.dim_value for d in i.type.tensor_type.shape.dim] for i in graph.graph.input}
    assert inputs == {name: ["batch", "sequence"] for name in ("input_ids", "token_type_ids", "attention_mask")}


def _torch_probs(run, enc) -> np.ndarray:
    model = AutoModelForSequenceClassification.from_pretrained(run).eval()
    with torch.no_grad():
        return torch.softmax(model(**{k: torch.tensor(v) for k, v in enc.items()}).logits, -1).numpy()


def test_pair_inputs_with_token_type_ids_match_plain_transformers(runs, exports):
    """A pair through the export, against plain transformers on the tokenizer's own pair encoding."""
    run = runs["pair"]
    tokenizer = AutoTokenizer.from_pretrained(run)
    first, second = "英雄联盟什么英雄最好", "英雄联盟最好英雄是什么"
    enc = tokenizer([first], [second], truncation=True, max_length=32)
    assert 1 in enc["token_type_ids"][0]
    expected = _torch_probs(run, enc)
    probs = TrainedClassifier.load(str(exports["pair"])).predict_texts([first], [second])
    assert np.allclose(probs, expected, atol=1e-6)
    swapped = TrainedClassifier.load(str(exports["pair"])).predict_texts([second], [first])
    assert not np.allclose(swapped, probs, atol=1e-6)  # the segments matter: the graph reads token_type_ids


def test_head_tail_and_windows_are_cut_as_in_training(runs, exports):
    """head_tail (single model) and sliding windows (custom head) built by hand, against the export."""
    text = "".join(chr(0x4E00 + i) for i in range(60))  # 60 distinct CJK characters, one token each
    run = runs["single"]
    tokenizer = AutoTokenizer.from_pretrained(run)
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    kept = [tokenizer.cls_token_id] + ids[:10] + ids[-20:] + [tokenizer.sep_token_id]  # 32 = 1 + 10 + 20 + 1
    enc = {"input_ids": [kept], "token_type_ids": [[0] * 32], "attention_mask": [[1] * 32]}
    single = TrainedClassifier.load(str(exports["single"])).predict_texts([text])
    assert np.allclose(single, _torch_probs(run, enc), atol=1e-6)

    run = runs["custom"]
    model = load_trained_model(str(run))  # EncoderClassifier: plain transformers cannot load it
    enc = tokenizer(text, truncation=True, max_length=32, stride=8, return_overflowing_tokens=True, padding=True)
    assert len(enc["input_ids"]) == 3  # 60 tokens in windows of 30 sharing 8
    with torch.no_grad():
        inputs = {k: torch.tensor(enc[k]) for k in ("input_ids", "token_type_ids", "attention_mask")}
        expected = torch.softmax(model(**inputs).logits.mean(0), -1).numpy()
    windows = TrainedClassifier.load(str(exports["custom"])).predict_texts([text])
    assert np.allclose(windows[0], expected, atol=1e-6)


def test_int8_export_runs_and_reports(runs, tmp_path_factory, tmp_path):
    run = runs["single"]
    onnx_dir = exported(run, tmp_path_factory, "--quantize", "int8", "--optimize", "--max_metric_drop", "100")
    with open(onnx_dir / "export_report.json") as f:
        report = json.load(f)
    assert report["exported"]["precision"] == "int8" and report["exported"]["optimized"]
    assert report["exported"]["fused_ops"]["Attention"] == 2  # both layers' attention fused
    for name in ("onnx_fp32", "onnx_int8"):
        entry = report[name]
        assert 0 <= entry["max_abs_prob_diff"] < 1 and entry["rows_per_s"] > 0
        assert set(entry["scores"]) == {"metric", "accuracy", "f1_macro", "samples"}
    assert report["onnx_fp32"]["agreement"] == 1.0
    ops = {node.op_type for node in onnx.load(str(onnx_dir / "model.onnx")).graph.node}
    assert ops & {"MatMulInteger", "DynamicQuantizeMatMul", "QAttention"}, ops
    with open(onnx_dir / "config.json") as f:
        assert json.load(f)[EXPORT_KEY]["precision"] == "int8"
    frame = predict_csv(onnx_dir, check_file(run), tmp_path / "int8.csv")
    assert len(frame) == CHECK_ROWS
    with open(runs["single"] / "test_results.json") as f:
        trained_accuracy = json.load(f)["test_accuracy"]
    assert report["torch"]["scores"]["accuracy"] == pytest.approx(trained_accuracy)


def test_a_broken_export_is_refused_and_nothing_is_written(runs, tmp_path, monkeypatch, capsys):
    """An fp32 graph that disagrees with PyTorch (here: its logits negated) stops the export."""
    original = export.LogitsOnly.forward
    monkeypatch.setattr(export.LogitsOnly, "forward", lambda self, *inputs: -original(self, *inputs))
    out = tmp_path / "broken"
    with pytest.raises(SystemExit) as exit_info:
        export.main(["--model_name_or_path", str(runs["single"]), "--output_dir", str(out)])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "the fp32 export disagrees with PyTorch on" in err and "the export is broken" in err
    assert not out.exists() and list(tmp_path.iterdir()) == []  # no half-written folder, no staging left


def test_export_refusals(runs, exports, tmp_path):
    run = runs["single"]
    with pytest.raises(UserError, match="is the folder being exported"):
        export.export(export.ExportArguments(model_name_or_path=str(run), output_dir=str(run)))
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "notes.txt").write_text("mine")
    with pytest.raises(UserError, match="exists and is not empty.*--overwrite_output_dir"):
        export.export(export.ExportArguments(model_name_or_path=str(run), output_dir=str(taken)))
    assert (taken / "notes.txt").read_text() == "mine"

    lost = tmp_path / "lost"
    shutil.copytree(run, lost)
    recipe = json.loads((lost / "recipe.json").read_text())
    (lost / "recipe.json").write_text(json.dumps({**recipe, "test_file": str(tmp_path / "gone.tsv")}))
    with pytest.raises(UserError, match="no rows to check the export on: the run's .*gone.tsv cannot be found"):
        export.export(export.ExportArguments(model_name_or_path=str(lost), output_dir=str(tmp_path / "x")))
    assert not (tmp_path / "x").exists()

    with pytest.raises(UserError, match="holds no model.onnx.*python -m bertcls export"):
        TrainedClassifier.load(str(run), backend="onnx")
    with pytest.raises(UserError, match="is an ONNX export.*--backend onnx"):
        TrainedClassifier.load(str(exports["single"]), backend="torch")
    assert TrainedClassifier.load(str(exports["single"])).backend.name == "onnx"
    assert TrainedClassifier.load(str(run)).backend.name == "torch"
