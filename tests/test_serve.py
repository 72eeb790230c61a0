"""bertcls.shipping.serve: a real server process on 127.0.0.1, called over HTTP, answers what bertcls.shipping.predict answers,
batches concurrent requests, refuses bad ones with a 4xx and one message, and keeps serving."""

import json
import os
import queue
import subprocess
import sys
import threading

import httpx
import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient

from bertcls.model.classifier import TrainedClassifier
from bertcls.shipping import predict, serve

from .conftest import REPO
from .shipping import exported, fine_tuned

pytestmark = pytest.mark.slow

MAX_ITEMS, MAX_BODY = 8, 4000


def read_banner(process, timeout=120) -> tuple[str, str]:
    """The URL the server prints on its first line of stdout, and the example command of its second."""
    lines = queue.Queue()
    threading.Thread(target=lambda: [lines.put(process.stdout.readline()) for _ in range(2)], daemon=True).start()
    try:
        first, second = lines.get(timeout=timeout), lines.get(timeout=10)
    except queue.Empty:
        raise AssertionError(
            f"the server printed no banner: {process.stderr.read() if process.poll() else ''}"
        ) from None
    assert first.startswith("serving "), first
    return first.split(" on ")[-1].strip(), second


@pytest.fixture(scope="module")
def single(tiny_model, tmp_path_factory):
    run = fine_tuned("single", tiny_model, tmp_path_factory)
    return run, exported(run, tmp_path_factory)


@pytest.fixture(scope="module")
def server(single):
    _, onnx_dir = single
    command = [sys.executable, "-m", "bertcls", "serve", "--model_name_or_path", str(onnx_dir), "--port", "0"]
    command += ["--max_items", str(MAX_ITEMS), "--max_body_bytes", str(MAX_BODY), "--max_batch_size", "16"]
    command += ["--max_wait_ms", "300", "--threads", "1"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO)}
    process = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        url, example = read_banner(process)
        with httpx.Client(base_url=url, timeout=60, trust_env=False) as client:
            yield client, process, example
    finally:
        process.terminate()
        process.wait(timeout=30)


@pytest.fixture(scope="module")
def reference(single, tmp_path_factory):
    """bertcls.shipping.predict's output for the check rows, on the folder the server serves."""
    run, onnx_dir = single
    with open(run / "recipe.json") as f:
        rows = json.load(f)["test_file"]
    target = tmp_path_factory.mktemp("predict") / "predictions.csv"
    predict.main(["--model_name_or_path", str(onnx_dir), "--input_file", rows, "--output_file", str(target)])
    return pd.read_csv(target, dtype={"prediction": str}, keep_default_na=False)


def assert_same(predictions: list[dict], frame: pd.DataFrame) -> None:
    assert [p["label"] for p in predictions] == frame["prediction"].tolist()
    assert np.allclose([p["score"] for p in predictions], frame["score"], atol=2e-6)
    for name in ("0", "1"):
        assert np.allclose([p["probabilities"][name] for p in predictions], frame[f"prob_{name}"], atol=2e-6)


def test_startup_prints_url_and_example(server):
    client, _, example = server
    assert example.startswith(f"try: curl -s {client.base_url}/predict") and '{"texts": [' in example
    assert client.get("/health").json()["status"] == "ok"
    assert client.get("/labels").json() == {"labels": ["0", "1"], "multi_label": False, "input": "texts"}


def test_predictions_equal_bertcls_predict(server, reference):
    client, _, _ = server
    texts = reference["text_a"].tolist()[:24]
    predictions = []
    for start in range(0, len(texts), MAX_ITEMS):
        response = client.post("/predict", json={"texts": texts[start : start + MAX_ITEMS]})
        assert response.status_code == 200, response.text
        predictions += response.json()["predictions"]
    assert_same(predictions, reference.iloc[:24])


def test_concurrent_requests_are_micro_batched_and_answered_in_order(server, reference):
    client, _, _ = server
    texts = reference["text_a"].tolist()[:16]
    before = client.get("/health").json()
    results, start = [None] * 16, threading.Barrier(16)

    def ask(i):
        start.wait()
        results[i] = client.post("/predict", json={"texts": [texts[i]]})

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(r.status_code == 200 for r in results)
    assert_same([r.json()["predictions"][0] for r in results], reference.iloc[:16])
    after = client.get("/health").json()
    assert after["items"] - before["items"] == 16
    assert after["batches"] - before["batches"] < 16  # requests waiting together ran in shared batches


BAD = [
    (b'{"texts": ["a", ', 400, "not valid JSON"),
    (b'["a", "b"]', 400, "must be a JSON object"),
    (b'{"text": ["a"]}', 400, "unknown key 'text'"),
    (b'{"texts": []}', 422, '"texts" is empty'),
    (b'{"texts": ["ok", 3]}', 422, "texts[1] must be a string"),
    (b'{"texts": ["ok", "  "]}', 422, "texts[1] is empty"),
    (b'{"texts": "one text"}', 422, '"texts" must be a list'),
    (json.dumps({"texts": ["x"] * (MAX_ITEMS + 1)}).encode(), 413, f"over the limit of {MAX_ITEMS} per request"),
    (json.dumps({"texts": ["好" * 2000]}).encode(), 413, f"over the limit of {MAX_BODY} bytes"),
    (b'{"pairs": [["a", "b"]]}', 422, "this model classifies single texts"),
]


def test_bad_requests_get_a_4xx_and_the_server_keeps_serving(server, reference):
    client, process, _ = server
    for body, status, message in BAD:
        response = client.post("/predict", content=body, headers={"Content-Type": "application/json"})
        assert response.status_code == status, (body[:40], response.text)
        assert message in response.json()["error"], (body[:40], response.text)
    chunked = client.post("/predict", content=iter([b'{"texts": ["', "好".encode() * 2000, b'"]}']))
    assert chunked.status_code == 413  # no Content-Length: counted while reading
    assert client.get("/predict").status_code == 405
    good = client.post("/predict", json={"texts": reference["text_a"].tolist()[:3]})
    assert good.status_code == 200
    assert_same(good.json()["predictions"], reference.iloc[:3])
    assert process.poll() is None


def test_taken_port_is_one_clear_error(single, capsys):
    with serve.listen("127.0.0.1", 0) as taken:
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(SystemExit) as exit_info:
            serve.main(["--model_name_or_path", str(single[1]), "--port", str(port)])
    assert exit_info.value.code == 2
    assert f"cannot listen on 127.0.0.1:{port}" in capsys.readouterr().err


@pytest.mark.parametrize("kind", ["pair", "custom"])
def test_pair_and_window_models_answer_as_predict_does(kind, tiny_model, tmp_path_factory, tmp_path):
    """The same app in process: a pair model on the torch backend, a sliding-window custom head exported."""
    run = fine_tuned(kind, tiny_model, tmp_path_factory)
    folder = run if kind == "pair" else exported(run, tmp_path_factory)
    with open(run / "recipe.json") as f:
        rows = json.load(f)["test_file"]
    predict.main(["--model_name_or_path", str(folder), "--input_file", rows, "--output_file", str(tmp_path / "p.csv")])
    frame = pd.read_csv(tmp_path / "p.csv", dtype={"prediction": str}, keep_default_na=False).iloc[:MAX_ITEMS]
    args = serve.ServeArguments(model_name_or_path=str(folder), max_items=MAX_ITEMS)
    app = serve.build_app(TrainedClassifier.load(str(folder)), args)
    with TestClient(app) as client:
        if kind == "pair":
            body = {"pairs": [[a, b] for a, b in zip(frame["text_a"], frame["text_b"])]}
            wrong = client.post("/predict", json={"texts": ["a"]})
            assert wrong.status_code == 422 and "this model classifies sentence pairs" in wrong.json()["error"]
            assert client.get("/labels").json()["input"] == "pairs"
        else:
            body = {"texts": frame["text_a"].tolist()}
        response = client.post("/predict", json=body)
    assert response.status_code == 200, response.text
    assert_same(response.json()["predictions"], frame)
