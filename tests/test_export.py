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
from bertcls.model.classifier import TrainedClassifier, load_trained_model
from bertcls.model.heads import HEAD_KEY
from bertcls.model.runtime import EXPORT_KEY, cpu_has_bf16
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
    int8 = report["onnx_int8"]
    assert int8["min_agreement"] == 0.99 and 0.99 <= int8["agreement_with_fp32"] <= 1
    dependence = int8["batch_dependence"]
    assert dependence["batch_sizes"] == [1, 32] and dependence["rows"] == CHECK_ROWS
    assert dependence["flipped_rows"] == round(dependence["flip_rate"] * CHECK_ROWS)
    # The thread count the report names is the one ONNX Runtime was given (it ignores OMP_NUM_THREADS).
    assert report["threads"]["onnxruntime_intra_op"] == report["threads"]["torch"] == 1
    session = TrainedClassifier.load(str(onnx_dir), threads=2).backend.session
    assert session.get_session_options().intra_op_num_threads == 2
    effect = report["optimize"]  # --optimize timed against the same graph without it, in interleaved rounds
    assert effect["rounds"] == 3 and effect["slower"] == (effect["speedup"] < 1)
    medians = [effect[f"{k}_rows_per_s"]["median"] for k in ("optimized", "unoptimized")]
    assert effect["speedup"] == pytest.approx(medians[0] / medians[1])
    assert not (onnx_dir / "unoptimized.onnx").exists()
    fastest = report["fastest"]
    candidates = [n for n, f in fastest["figures"].items() if f["within_gates"]]
    assert fastest["form"] == max(candidates, key=lambda n: report[n]["rows_per_s"])
    if cpu_has_bf16():
        bf16 = report["torch_bf16"]
        assert 0 <= bf16["agreement"] <= 1 and bf16["rows_per_s"] > 0
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


def tree(folder) -> dict:
    """Every file under `folder` with its bytes: what "left byte for byte as it was" compares."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_an_output_dir_that_would_lose_the_model_is_refused(runs, tmp_path):
    parent = tmp_path / "parent"
    run = parent / "run"
    shutil.copytree(runs["single"], run)
    (parent / "notes.txt").write_text("mine")
    before = tree(parent)
    cases = [
        (parent, "holds the folder being exported"),  # the reported case: it deleted parent/run and every file
        (run, "is the folder being exported"),
        (run / "onnx", "lies inside the folder being exported"),
    ]
    for out, message in cases:
        with pytest.raises(UserError, match=message):
            export.export(export.ExportArguments(str(run), str(out), overwrite_output_dir=True))
    other = tmp_path / "results"  # a folder that is not an export: --overwrite_output_dir does not touch it
    other.mkdir()
    (other / "table.csv").write_text("a,b\n")
    with pytest.raises(UserError, match="is not an earlier export .*replaces only an export folder"):
        export.export(export.ExportArguments(str(run), str(other), overwrite_output_dir=True))
    assert tree(parent) == before and (other / "table.csv").read_text() == "a,b\n"


def test_a_broken_export_over_an_earlier_one_leaves_it_byte_for_byte(runs, exports, tmp_path, monkeypatch):
    earlier = tmp_path / "onnx"
    shutil.copytree(exports["single"], earlier)
    before = tree(earlier)
    original = export.LogitsOnly.forward
    with monkeypatch.context() as patched:
        patched.setattr(export.LogitsOnly, "forward", lambda self, *inputs: -original(self, *inputs))
        with pytest.raises(SystemExit):
            export.main(
                ["--model_name_or_path", str(runs["single"]), "--output_dir", str(earlier), "--overwrite_output_dir"]
            )
    assert tree(earlier) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["onnx"]  # no staging folder left beside it
    # A good export replaces it.
    export.main(
        [
            "--model_name_or_path",
            str(runs["single"]),
            "--output_dir",
            str(earlier),
            "--overwrite_output_dir",
            "--check_rows",
            "50",
        ]
    )
    assert json.loads((earlier / "export_report.json").read_text())["rows"] == 50


def test_tokenizer_json_alone_builds_inputs_the_graph_takes(runs, exports):
    """A consumer with tokenizer.json and model.onnx only (tokenizers + onnxruntime, as a Rust service has them):
    a long pair is cut at the trained 32 tokens, nothing is padded, and the graph answers what predict answers."""
    import onnxruntime
    from tokenizers import Tokenizer

    folder = exports["pair"]
    tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
    long_a, long_b = "英雄联盟什么英雄最好" * 20, "我想知道" * 30
    enc = tokenizer.encode(long_a, long_b)
    assert len(enc.ids) == 32 and 1 in enc.type_ids
    assert len(tokenizer.encode("很好").ids) == 4  # [CLS] 很 好 [SEP]: no padding
    session = onnxruntime.InferenceSession(str(folder / "model.onnx"), providers=["CPUExecutionProvider"])
    feed = {
        "input_ids": np.array([enc.ids], dtype=np.int64),
        "token_type_ids": np.array([enc.type_ids], dtype=np.int64),
        "attention_mask": np.array([enc.attention_mask], dtype=np.int64),
    }
    logits = session.run(None, feed)[0]
    probs = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    expected = TrainedClassifier.load(str(folder)).predict_texts([long_a], [long_b])
    assert np.allclose(probs, expected, atol=1e-5)
    report = json.loads((folder / "export_report.json").read_text())
    assert report["exported"]["tokenizer"] == {
        "truncation": "longest_first",
        "max_length": 32,
        "direction": "right",
        "padding": None,
        "as_trained": True,
    }


def negated_quantize(original):
    """quantize_graph, then the graph's logits negated: an int8 export that picks the other label on every row."""

    def quantize(source, target):
        original(source, target)
        model = onnx.load(target)
        output = model.graph.output[0].name
        for node in model.graph.node:
            node.output[:] = [f"{o}_raw" if o == output else o for o in node.output]
        model.graph.node.append(onnx.helper.make_node("Neg", [f"{output}_raw"], [output]))
        onnx.save(model, target)

    return quantize


def test_an_int8_export_below_the_agreement_gate_is_refused_without_labels(runs, tmp_path, monkeypatch, capsys):
    """An unlabelled check file has no metric to fall: the agreement with the fp32 export is the gate."""
    rows = pd.read_csv(check_file(runs["single"]), sep="\t", quoting=3, dtype=str)
    unlabelled = tmp_path / "unlabelled.tsv"
    rows[["text_a"]].to_csv(unlabelled, sep="\t", index=False)
    monkeypatch.setattr(export, "quantize_graph", negated_quantize(export.quantize_graph))
    out = tmp_path / "int8"
    argv = ["--model_name_or_path", str(runs["single"]), "--output_dir", str(out), "--quantize", "int8"]
    with pytest.raises(SystemExit) as exit_info:
        export.main([*argv, "--check_file", str(unlabelled)])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "onnx_int8 chooses the same label as the fp32 export on 0.00% of 120 check rows" in err, err
    assert "under --min_agreement 0.99" in err
    assert not out.exists()


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--quantise", "int8"], "unknown argument(s) --quantise int8. Fix: did you mean --quantize?"),
        (["--check_row", "5"], "unknown argument(s) --check_row 5"),  # no abbreviations
        (["--min_agreement", "2"], "--min_agreement must be in [0, 1], got 2.0"),
        (["--batch_size", "0"], "--batch_size must be at least 1, got 0"),
        (["--quantize", "int4"], "invalid choice: 'int4'"),
    ],
)
def test_flag_errors_are_one_line(flags, message, runs, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        export.main(["--model_name_or_path", str(runs["single"]), "--output_dir", str(tmp_path / "x"), *flags])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and err.count("\n") == 2, err
    assert not (tmp_path / "x").exists()
