"""bertcls.shipping.serve: a real server process on 127.0.0.1, called over HTTP, answers what bertcls.shipping.predict
answers, batches concurrent requests, refuses bad ones with a 4xx and one message, keeps one bad request from harming
any other, and answers the Hugging Face Inference API's own client."""

import asyncio
import json
import logging
import os
import queue
import socket
import subprocess
import sys
import threading
import time

import httpx
import numpy as np
import pandas as pd
import pytest
import tokenizers
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


MAX_TOKENS = 200  # the single model cuts at 32 tokens: 6 full texts fit, 7 do not


@pytest.fixture(scope="module")
def server(single, tmp_path_factory):
    _, onnx_dir = single
    command = [sys.executable, "-m", "bertcls", "serve", "--model_name_or_path", str(onnx_dir), "--port", "0"]
    command += ["--max_items", str(MAX_ITEMS), "--max_body_bytes", str(MAX_BODY), "--max_batch_size", "16"]
    command += ["--max_wait_ms", "300", "--threads", "1", "--max_request_tokens", str(MAX_TOKENS)]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO)}
    log = tmp_path_factory.mktemp("server") / "stderr.log"
    with open(log, "w") as stderr:
        process = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=stderr, text=True)
    try:
        url, example = read_banner(process)
        with httpx.Client(base_url=url, timeout=60, trust_env=False) as client:
            yield client, process, example, log
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
    client, _, example, _ = server
    assert example.startswith(f"try: curl -s {client.base_url}/predict") and '{"texts": [' in example
    assert client.get("/health").json()["status"] == "alive"
    assert client.head("/health").status_code == 200 and client.head("/health").content == b""
    for _ in range(300):  # ready once the warm-up forward pass has run
        ready = client.get("/ready")
        if ready.status_code == 200:
            break
        assert ready.status_code == 503 and "warming up" in ready.json()["error"]
        assert ready.headers["retry-after"] == "1"
        time.sleep(0.1)
    assert ready.json() == {"status": "ready"} and client.head("/ready").status_code == 200
    assert client.get("/health").json()["ready"] is True
    assert client.get("/labels").json() == {"labels": ["0", "1"], "multi_label": False, "input": "texts"}


def test_predictions_equal_bertcls_predict(server, reference):
    client, _, _, _ = server
    texts = reference["text_a"].tolist()[:24]
    predictions = []
    for start in range(0, len(texts), 6):  # 6 texts of at most 32 tokens: within the token budget
        response = client.post("/predict", json={"texts": texts[start : start + 6]})
        assert response.status_code == 200, response.text
        predictions += response.json()["predictions"]
    assert_same(predictions, reference.iloc[:24])


def test_concurrent_requests_are_micro_batched_and_answered_in_order(server, reference):
    client, _, _, _ = server
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
    (b"[" * 1500 + b"]" * 1500, 400, "nested too deeply"),
    (b'["a", "b"]', 400, "must be a JSON object"),
    (b'{"text": ["a"]}', 400, "unknown key 'text'"),
    (b'{"texts": []}', 422, '"texts" is empty'),
    (b'{"texts": ["ok", 3]}', 422, "texts[1] must be a string"),
    (b'{"texts": ["ok", "  "]}', 422, "texts[1] is empty"),
    (b'{"texts": ["ok", "\\ud83d"]}', 422, "texts[1] is not valid Unicode: a lone surrogate '\\ud83d'"),
    (b'{"texts": "one text"}', 422, '"texts" must be a list'),
    (json.dumps({"texts": ["x"] * (MAX_ITEMS + 1)}).encode(), 413, f"over the limit of {MAX_ITEMS} per request"),
    (json.dumps({"texts": ["好" * 2000]}).encode(), 413, f"over the limit of {MAX_BODY} bytes"),
    (
        json.dumps({"texts": ["好" * 40] * 7}).encode(),
        413,
        f"makes 224 model-input tokens, over the limit of {MAX_TOKENS}",
    ),
    (b'{"pairs": [["a", "b"]]}', 422, "this model classifies single texts"),
]


def test_bad_requests_get_a_4xx_and_the_server_keeps_serving(server, reference):
    client, process, _, log = server
    for body, status, message in BAD:
        response = client.post("/predict", content=body, headers={"Content-Type": "application/json"})
        assert response.status_code == status, (body[:40], response.text)
        assert message in response.json()["error"], (body[:40], response.text)
    assert client.post("/predict", json={"texts": ["好" * 40] * 6}).status_code == 200  # 6 x 32 tokens: within
    chunked = client.post(
        "/predict",
        content=iter([b'{"texts": ["', "好".encode() * 2000, b'"]}']),
        headers={"Content-Type": "application/json"},
    )
    assert chunked.status_code == 413  # no Content-Length: counted while reading
    plain = client.post("/predict", content=b'{"texts": ["a"]}', headers={"Content-Type": "text/plain"})
    assert plain.status_code == 415 and "must be JSON" in plain.json()["error"]
    missing = client.get("/nothing-here")
    assert missing.status_code == 404 and "no such route: GET /nothing-here" in missing.json()["error"]
    wrong = client.get("/predict")
    assert wrong.status_code == 405 and "GET is not allowed on /predict" in wrong.json()["error"]
    good = client.post("/predict", json={"texts": reference["text_a"].tolist()[:3]})
    assert good.status_code == 200
    assert_same(good.json()["predictions"], reference.iloc[:3])
    assert process.poll() is None
    text = log.read_text()
    assert "Traceback" not in text and "%|" not in text and "it/s" not in text, text[-2000:]  # no bars, no crashes


def test_a_poisoned_request_among_concurrent_good_ones_fails_alone(server, reference):
    """A lone surrogate (what a JavaScript client sends after slicing an emoji) among 10 concurrent good requests."""
    client, _, _, _ = server
    texts = reference["text_a"].tolist()[:10]
    bodies = [json.dumps({"texts": [t]}).encode() for t in texts] + [b'{"texts": ["\\ud83d"]}']
    results, start = [None] * len(bodies), threading.Barrier(len(bodies))

    def ask(i):
        start.wait()
        results[i] = client.post("/predict", content=bodies[i], headers={"Content-Type": "application/json"})

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(len(bodies))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    poisoned = results[-1]
    assert poisoned.status_code == 422 and "texts[0] is not valid Unicode" in poisoned.json()["error"]
    assert [r.status_code for r in results[:-1]] == [200] * 10
    assert_same([r.json()["predictions"][0] for r in results[:-1]], reference.iloc[:10])


HF_CLIENT = """
import json, sys
from huggingface_hub import InferenceClient
url, text = sys.argv[1], sys.argv[2]
answers = {
    "all": InferenceClient(model=url).text_classification(text),
    "top_1": InferenceClient(model=url).text_classification(text, top_k=1),
    "named": InferenceClient(model=url + "/models/my-model").text_classification(text, function_to_apply="none"),
}
print(json.dumps({k: [{"label": e.label, "score": e.score} for e in v] for k, v in answers.items()}))
"""


def test_huggingface_inference_client_works_unchanged(server, single, reference):
    """huggingface_hub's own InferenceClient, pointed at the server's URL, as a user of the Inference API has it."""
    client, _, _, _ = server
    text = reference["text_a"][0]
    env = {k: v for k, v in os.environ.items() if k != "HF_HUB_OFFLINE"}  # offline mode refuses even loopback
    done = subprocess.run(
        [sys.executable, "-c", HF_CLIENT, str(client.base_url), text], env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-3000:]
    answers = json.loads(done.stdout)
    expected = reference.iloc[0]
    by_score = sorted(("0", "1"), key=lambda name: -expected[f"prob_{name}"])
    assert [e["label"] for e in answers["all"]] == by_score
    assert np.allclose([e["score"] for e in answers["all"]], [expected[f"prob_{n}"] for n in by_score], atol=2e-6)
    assert answers["top_1"] == answers["all"][:1] and answers["top_1"][0]["label"] == expected["prediction"]
    # function_to_apply none: the logits themselves, whose softmax is the probabilities
    logits = np.array([e["score"] for e in answers["named"]])
    softmax = np.exp(logits - logits.max()) / np.exp(logits - logits.max()).sum()
    assert np.allclose(softmax, [expected[f"prob_{e['label']}"] for e in answers["named"]], atol=2e-6)
    batch = client.post("/", json={"inputs": [text, reference["text_a"][1]], "parameters": {"top_k": 1}})
    assert [a[0]["label"] for a in batch.json()] == reference["prediction"].tolist()[:2]
    wrong = client.post("/", json={"inputs": text, "parameters": {"top_k": 0}})
    assert wrong.status_code == 422 and '"top_k" must be' in wrong.json()["error"]


def test_openapi_schema_names_requests_and_responses(server):
    client, _, _, _ = server
    schema = client.get("/openapi.json").json()
    predict_route = schema["paths"]["/predict"]["post"]
    body = predict_route["requestBody"]["content"]["application/json"]["schema"]
    assert set(body["properties"]) == {"texts", "pairs"}
    ok = predict_route["responses"]["200"]["content"]["application/json"]["schema"]
    assert ok["$ref"].endswith("/PredictResponse")
    assert predict_route["responses"]["413"]["content"]["application/json"]["schema"]["$ref"].endswith("/ErrorBody")
    assert {"PredictResponse", "Prediction", "LabelScore", "ErrorBody"} <= set(schema["components"]["schemas"])
    inference = schema["paths"]["/"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert set(inference["properties"]) == {"inputs", "parameters"}


def test_listening_socket_gives_every_connection_tcp_nodelay():
    """uvicorn serves on our socket through asyncio's create_server, which sets TCP_NODELAY only on connections of
    a socket made with proto IPPROTO_TCP (with proto 0, Nagle's algorithm stalls each keep-alive response)."""
    seen = []

    async def main():
        sock = serve.listen("127.0.0.1", 0)

        class Probe(asyncio.Protocol):
            def connection_made(self, transport):
                conn = transport.get_extra_info("socket")
                seen.append(conn.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
                transport.close()

        server = await asyncio.get_running_loop().create_server(Probe, sock=sock)
        port = sock.getsockname()[1]
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        await reader.read()
        writer.close()
        server.close()

    asyncio.run(main())
    assert seen and seen[0] != 0


def test_taken_port_is_one_clear_error(single, capsys, monkeypatch):
    monkeypatch.delenv("TQDM_DISABLE", raising=False)
    with serve.listen("127.0.0.1", 0) as taken:
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(SystemExit) as exit_info:
            serve.main(["--model_name_or_path", str(single[1]), "--port", str(port)])
    assert exit_info.value.code == 2
    assert f"cannot listen on 127.0.0.1:{port}" in capsys.readouterr().err
    # Serving in-process leaves the environment alone: processes started afterwards keep their progress bars.
    assert "TQDM_DISABLE" not in os.environ


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


def in_process(folder, **settings):
    args = serve.ServeArguments(model_name_or_path=str(folder), max_items=MAX_ITEMS, **settings)
    classifier = TrainedClassifier.load(str(folder))
    return classifier, args


def concurrently(client, bodies: list[dict]) -> list:
    results, start = [None] * len(bodies), threading.Barrier(len(bodies))

    def ask(i):
        start.wait()
        results[i] = client.post("/predict", json=bodies[i])

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(len(bodies))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


def test_a_batch_that_fails_is_retried_one_by_one_so_only_the_culprit_fails(single, reference, caplog):
    """A text that passes every check but breaks the model (here: the forward pass refuses the token of 毒) shares
    a micro-batch with good requests: they are answered, it gets a 500 with a request id and no internals."""
    _, onnx_dir = single
    classifier, args = in_process(onnx_dir, max_wait_ms=500, max_batch_size=32)
    poison = tokenizers.Tokenizer.from_file(str(onnx_dir / "tokenizer.json")).token_to_id("毒")
    forward = classifier.forward_features

    def fragile(encoded, *a, **k):
        if any(poison in ids for ids in encoded["input_ids"]):
            raise ValueError("secret internals: token 毒 broke the kernel")
        return forward(encoded, *a, **k)

    classifier.forward_features = fragile
    texts = reference["text_a"].tolist()[:6]
    with TestClient(serve.build_app(classifier, args)) as client, caplog.at_level(logging.ERROR):
        results = concurrently(client, [{"texts": [t]} for t in texts] + [{"texts": ["有毒的评论"]}])
        health = client.get("/health").json()
    assert [r.status_code for r in results[:-1]] == [200] * 6
    assert_same([r.json()["predictions"][0] for r in results[:-1]], reference.iloc[:6])
    failed = results[-1]
    assert failed.status_code == 500
    body = failed.json()
    assert body["error"] == "internal error" and len(body["request_id"]) == 16 and "secret" not in failed.text
    assert health["failed"] == 1 and health["batches"] < 7  # the good ones did share a batch with the culprit
    logged = caplog.text
    assert body["request_id"] in logged and "secret internals" in logged


def test_queue_limit_gives_503_with_retry_after_and_timeout_504(single):
    _, onnx_dir = single
    classifier, args = in_process(onnx_dir, max_wait_ms=0, max_batch_size=1, max_queue=2)
    forward = classifier.forward_features
    classifier.forward_features = lambda *a, **k: (time.sleep(0.6), forward(*a, **k))[1]  # a busy model
    with TestClient(serve.build_app(classifier, args)) as client:
        results = concurrently(client, [{"texts": ["好"]}] * 6)
    codes = sorted(r.status_code for r in results)
    assert 200 in codes and 503 in codes and set(codes) == {200, 503}, codes
    busy = next(r for r in results if r.status_code == 503)
    assert busy.headers["retry-after"] == "1" and "the server is busy" in busy.json()["error"]

    classifier, args = in_process(onnx_dir, request_timeout_s=0.2)
    forward = classifier.forward_features
    classifier.forward_features = lambda *a, **k: (time.sleep(1.0), forward(*a, **k))[1]
    with TestClient(serve.build_app(classifier, args)) as client:
        late = client.post("/predict", json={"texts": ["好"]})
        assert late.status_code == 504 and "no answer within 0.2 s" in late.json()["error"]


def test_token_budget_counts_every_window(tiny_model, tmp_path_factory, capfd):
    """A sliding-window model: one long text is many windows; the budget counts them all, and the server draws no
    progress bars however many forward passes a request takes."""
    run = fine_tuned("custom", tiny_model, tmp_path_factory)
    folder = exported(run, tmp_path_factory)
    classifier, args = in_process(folder, max_request_tokens=300, max_batch_size=2)
    tokenizer = classifier.tokenizer

    def window_tokens(text):  # the tokenizer's own overflow windows, as training cut them (max 32, stride 8)
        enc = tokenizer(text, truncation=True, max_length=32, stride=8, return_overflowing_tokens=True)
        return sum(len(ids) for ids in enc["input_ids"]), len(enc["input_ids"])

    short = "".join(chr(0x4E00 + i) for i in range(150))
    long = "".join(chr(0x4E00 + i) for i in range(400))
    assert window_tokens(short)[0] <= 300 < window_tokens(long)[0]
    capfd.readouterr()
    with TestClient(serve.build_app(classifier, args)) as client:
        fits = client.post("/predict", json={"texts": [short]})
        refused = client.post("/predict", json={"texts": [long]})
    assert fits.status_code == 200
    tokens, windows = window_tokens(long)
    assert refused.status_code == 413
    assert f"makes {tokens} model-input tokens in {windows} windows, over the limit of 300" in refused.json()["error"]
    assert "Predicting" not in capfd.readouterr().err  # 7 windows in batches of 2: four passes, no bar


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--port", "99999"], "--port must be in [0, 65535], got 99999"),
        (["--max_item", "5"], "unknown argument(s) --max_item 5"),
        (["--max_wait_ms", "-1"], "--max_wait_ms must be at least 0"),
        (["--request_timeout_s", "0"], "--request_timeout_s must be above 0"),
        (["--backend", "tensorrt"], "invalid choice: 'tensorrt'"),
    ],
)
def test_flag_errors_are_one_line(flags, message, single, capsys):
    with pytest.raises(SystemExit) as exit_info:
        serve.main(["--model_name_or_path", str(single[1]), *flags])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and err.count("\n") == 2, err


def test_inference_api_scores_follow_the_pipelines_functions():
    """Scores by hand for logits [0, 2, 1]: softmax e^x / (1 + e^2 + e), sigmoid 1 / (1 + e^-x), none the logits;
    labels highest first, top_k the first k."""
    logits = np.array([[0.0, 2.0, 1.0]])
    e = np.e
    total = 1 + e**2 + e
    softmax = serve.inference_answers(logits, ["a", "b", "c"], False, None, None)
    assert [x["label"] for x in softmax[0]] == ["b", "c", "a"]
    assert np.allclose([x["score"] for x in softmax[0]], [e**2 / total, e / total, 1 / total])
    sigmoid = serve.inference_answers(logits, ["a", "b", "c"], True, 2, None)  # multi-label default: sigmoid
    assert [x["label"] for x in sigmoid[0]] == ["b", "c"]
    assert np.allclose([x["score"] for x in sigmoid[0]], [1 / (1 + e**-2), 1 / (1 + e**-1)])
    raw = serve.inference_answers(logits, ["a", "b", "c"], False, 1, "none")
    assert raw == [[{"label": "b", "score": 2.0}]]
