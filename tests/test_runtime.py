"""The torch-free runtime of export folders (bertcls/model/runtime.py).

Its tokenizer is the export's tokenizer.json read by the `tokenizers` library alone; it must encode exactly as the
transformers tokenizer training used (pinned here against PreTrainedTokenizerFast on the real vocabulary, for every
call the encoders make). Then predict and serve run on export folders in processes where torch (and, for the
server, datasets, scikit-learn, pandas, scipy and pyarrow) are not installed, and answer as the torch folder does.
"""

import json
import os
import subprocess
import sys

import httpx
import numpy as np
import pandas as pd
import pytest
from transformers import DataCollatorWithPadding

from bertcls.model.checkpoints import load_tokenizer
from bertcls.model.runtime import RustTokenizer, pad_batch
from bertcls.shipping import predict

from .conftest import REPO, shared
from .shipping import exported, fine_tuned
from .test_serve import read_banner

WITHOUT = [sys.executable, str(REPO / "tests" / "without.py")]
NO_TORCH = "torch"
SERVER_FREE_OF = "torch,datasets,sklearn,pandas,scipy,pyarrow"

TEXTS = [
    "这家酒店的服务很好，房间也干净，下次还会再来。" * 4,  # longer than every max_length below
    "太差了",
    "Hello WORLD, 北京欢迎你! 😀 emoji and ＦＵＬＬＷＩＤＴＨ",
    "",
]
PAIRS = ["适合出去玩" * 12, "今天天气很好", "short", "这是第二句"]


@pytest.fixture(scope="module")
def both(tmp_path_factory, tokenizer):
    """The test tokenizer saved as a release would save it, read back by each library."""
    folder = tmp_path_factory.mktemp("tokenizer")
    tokenizer.save_pretrained(folder)
    return load_tokenizer(str(folder)), RustTokenizer(str(folder))


@pytest.mark.parametrize(
    "call",
    [
        {"truncation": False},
        {"truncation": False, "return_special_tokens_mask": True},
        {"truncation": "longest_first", "max_length": 12},
        {"truncation": True, "max_length": 16, "stride": 4, "return_overflowing_tokens": True},
    ],
)
@pytest.mark.parametrize("side", ["right", "left"])
def test_rust_tokenizer_encodes_as_transformers_does(both, call, side):
    hf, rust = both
    hf.truncation_side = rust.truncation_side = side
    expected = hf(TEXTS, **call)
    got = rust(TEXTS, **call)
    for key in got:
        assert got[key] == expected[key], key
    assert set(got) == {k for k in expected if k != "length"}


LONG, SHORT = ["这家酒店的服务很好，房间也干净" * 3, "Hello WORLD 北京欢迎你 😀" * 3], ["短句", "ok"]


@pytest.mark.parametrize(
    "strategy, texts, pairs",
    [
        ("longest_first", TEXTS, PAIRS),
        ("only_first", LONG, SHORT),  # only the first text may be cut
        ("only_second", SHORT, LONG),
    ],
)
def test_rust_tokenizer_cuts_pairs_as_transformers_does(both, strategy, texts, pairs):
    hf, rust = both
    hf.truncation_side = rust.truncation_side = "right"
    expected = hf(texts, pairs, truncation=strategy, max_length=14)
    assert rust(texts, pairs, truncation=strategy, max_length=14) == {k: expected[k] for k in expected}
    # One text, not a list: the encoders' retry path calls it so.
    assert rust(texts[0], pairs[0], truncation=strategy, max_length=14) == dict(
        hf(texts[0], pairs[0], truncation=strategy, max_length=14)
    )
    assert rust.num_special_tokens_to_add(pair=True) == hf.num_special_tokens_to_add(pair=True)
    assert (rust.unk_token_id, rust.pad_token_id) == (hf.unk_token_id, hf.pad_token_id)


def test_a_pair_that_cannot_be_cut_fails_in_both(both):
    hf, rust = both
    with pytest.raises(Exception, match="Truncation error"):
        hf(["短"], ["这是一段很长的第二句" * 5], truncation="only_first", max_length=10)
    with pytest.raises(Exception, match="Truncation error"):
        rust(["短"], ["这是一段很长的第二句" * 5], truncation="only_first", max_length=10)


def test_padding_matches_transformers_collator(both):
    hf, _ = both
    rows = [{k: v[i] for k, v in hf(TEXTS).items()} for i in range(len(TEXTS))]
    expected = DataCollatorWithPadding(hf, return_tensors="np")(rows)
    got = pad_batch(rows, hf.pad_token_id)
    assert set(got) == set(expected)
    for key in got:
        assert got[key].dtype == np.int64 and np.array_equal(got[key], expected[key]), key


@pytest.fixture(scope="module")
def folders(tiny_model, tmp_path_factory):
    """(run folder, export folder) of each kind: head+tail truncation, sentence pairs, windows with a custom head."""
    return {
        kind: (run, exported(run, tmp_path_factory))
        for kind in ("single", "pair", "custom")
        for run in [fine_tuned(kind, tiny_model, tmp_path_factory)]
    }


def env() -> dict:
    return {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO)}


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["single", "pair", "custom"])
def test_predict_on_an_export_runs_without_torch_and_matches_the_torch_folder(kind, folders, tmp_path):
    run, onnx_dir = folders[kind]
    rows = json.loads((run / "recipe.json").read_text())["test_file"]
    lean, reference = tmp_path / "lean.csv", tmp_path / "torch.csv"
    command = [*WITHOUT, NO_TORCH, "-m", "bertcls", "predict", "--model_name_or_path", str(onnx_dir)]
    command += ["--input_file", rows, "--output_file", str(lean)]
    done = subprocess.run(command, cwd=REPO, env=env(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Traceback" not in done.stderr
    predict.main(["--model_name_or_path", str(run), "--input_file", rows, "--output_file", str(reference)])
    got = pd.read_csv(lean, dtype={"prediction": str}, keep_default_na=False)
    expected = pd.read_csv(reference, dtype={"prediction": str}, keep_default_na=False)
    assert list(got.columns) == list(expected.columns) and len(got) == len(expected) > 100
    assert (got["prediction"] == expected["prediction"]).mean() >= 0.99  # fp32 export: float sums differ slightly
    probs = [c for c in got.columns if c.startswith("prob_")]
    assert np.abs(got[probs].to_numpy() - expected[probs].to_numpy()).max() < 1e-4


@pytest.mark.slow
def test_serve_on_an_export_runs_without_torch_datasets_or_sklearn(folders, tmp_path):
    run, onnx_dir = folders["pair"]
    command = [*WITHOUT, SERVER_FREE_OF, "-m", "bertcls", "serve", "--model_name_or_path", str(onnx_dir)]
    command += ["--port", "0", "--threads", "1"]
    with open(tmp_path / "stderr.log", "w") as stderr:
        process = subprocess.Popen(command, cwd=REPO, env=env(), stdout=subprocess.PIPE, stderr=stderr, text=True)
    try:
        url, _ = read_banner(process)
        test = pd.read_csv(shared("lcqmc", "test.tsv"), sep="\t", quoting=3, nrows=40, dtype=str)
        pairs = test[["text_a", "text_b"]].values.tolist()
        with httpx.Client(base_url=url, timeout=60, trust_env=False) as client:
            answer = client.post("/predict", json={"pairs": pairs})
            hf_api = client.post("/", json={"inputs": {"text": pairs[0][0], "text_pair": pairs[0][1]}})
    finally:
        process.terminate()
        process.wait(timeout=30)
    assert answer.status_code == 200, (tmp_path / "stderr.log").read_text()[-3000:]
    from bertcls.model.classifier import TrainedClassifier

    torch_folder = TrainedClassifier.load(str(run))
    expected = torch_folder.predict_texts([a for a, _ in pairs], [b for _, b in pairs])
    got = np.array(
        [[p["probabilities"][name] for name in torch_folder.labels.names] for p in answer.json()["predictions"]]
    )
    assert np.abs(got - expected).max() < 1e-4
    assert hf_api.status_code == 200 and {d["label"] for d in hf_api.json()[0]} == set(torch_folder.labels.names)
