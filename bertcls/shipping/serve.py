"""An HTTP server for a fine-tuned folder (torch) or an export folder (ONNX), with micro-batching.

    python -m bertcls serve --model_name_or_path outputs/my-task-onnx --port 8000

    POST /predict  {"texts": ["...", ...]} or, for a sentence-pair model, {"pairs": [["...", "..."], ...]}
                   -> {"predictions": [{"label": ..., "score": ..., "probabilities": {label: p, ...}}, ...]}
                   in input order (multi-label models: "labels", every label at or above the threshold, no score)
    POST /         the Hugging Face Inference API's text-classification shapes (also at POST /models/<any name>):
                   {"inputs": "..." | ["...", ...], "parameters": {"top_k": k, "function_to_apply": "softmax"}}
                   -> [[{"label": ..., "score": ...}, ...], ...], one list per input, highest score first, so
                   huggingface_hub.InferenceClient(model="http://HOST:PORT").text_classification(text) works
    GET  /labels   -> the model's labels, whether it is multi-label, and which input it takes
    GET  /health   -> alive: {"status": "alive", ...} with counts of requests, items and batches served
    GET  /ready    -> 200 once the model is loaded and one warm-up forward pass has run, else 503
    GET  /docs     -> the OpenAPI page, with the request and response schemas

Inputs are built exactly as in training (Classifier.encode_texts: the stored max_seq_length, truncation,
head_tail and sliding windows). Every text is checked and tokenized on its own request before it is batched, so
an unencodable text (a lone surrogate a JavaScript client made by slicing an emoji) is a 422 naming that item, and
its neighbours never see it. Requests that arrive while the model is busy, or within --max_wait_ms of the first,
run together in one forward pass of up to --max_batch_size model inputs (texts, or windows of long texts); should
a batch fail anyway, its requests are run again one by one, so only the culprit fails. Bounds: --max_body_bytes,
--max_items texts and --max_request_tokens model-input tokens (windows included) per request (413), at most
--max_queue model inputs waiting (503 with Retry-After), --request_timeout_s per request (504). Every 4xx/5xx
body is {"error": "one line"}; a 500 says only "internal error" and a request id, whose details are in the log
(stderr).

FastAPI + uvicorn with a small asyncio micro-batcher, rather than LitServe: a request here carries a list of
texts, and batching must be by model inputs (a request of 30 texts and two of 1 make one batch of 32), where
LitServe batches whole requests; LitServe also runs the model in separate worker processes (one more copy of the
model and a pyzmq hop per request) and has no body-size limit of its own. The listening socket is made with
IPPROTO_TCP, so asyncio sets TCP_NODELAY on every connection (with proto 0 it does not, and a keep-alive client
waits 40-50 ms per request for Nagle's algorithm and delayed ACKs).
"""

import asyncio
import json
import logging
import socket
import sys
import uuid
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from pydantic import BaseModel, Field

from bertcls.errors import UserError, exit_on_user_error
from bertcls.model.runtime import AUTO, BACKEND_CHOICES, Classifier, folder_backend

logger = logging.getLogger(__name__)

HF_FUNCTIONS = ("softmax", "sigmoid", "none")


@dataclass
class ServeArguments:
    model_name_or_path: str = field(
        metadata={"help": "A model folder written by run_classification.py, or an export folder (bertcls export)."}
    )
    backend: str | None = field(
        default=None,
        metadata={
            "help": "torch, torch_bf16 (bf16 autocast: fastest on CPUs with AVX512-BF16 or AMX), onnx, or auto: on a "
            "run's folder the faster of torch and torch_bf16 on the run's own test rows, bf16 only where it chooses "
            "fp32's label on 99%% of them (logged with the figures). Default: the one the folder holds weights for.",
            "choices": list(BACKEND_CHOICES),
        },
    )
    host: str = field(default="127.0.0.1", metadata={"help": "Address to listen on (0.0.0.0: every interface)."})
    port: int = field(default=8000, metadata={"help": "Port to listen on, 0 to 65535; 0 picks a free one (printed)."})
    max_batch_size: int = field(
        default=32, metadata={"help": "Most model inputs (texts or windows) per forward pass."}
    )
    max_wait_ms: float = field(
        default=5.0, metadata={"help": "How long the first request of a batch waits for others to join it."}
    )
    max_items: int = field(default=64, metadata={"help": "Most texts (or pairs) one request may send."})
    max_body_bytes: int = field(default=1_000_000, metadata={"help": "Largest request body accepted, in bytes."})
    max_request_tokens: int = field(
        default=16384,
        metadata={
            "help": "Most model-input tokens one request may make, every window of a long text counted (413 over it)."
        },
    )
    max_queue: int = field(
        default=512,
        metadata={"help": "Most model inputs waiting for the model; a request beyond that gets 503 with Retry-After."},
    )
    request_timeout_s: float = field(
        default=30.0, metadata={"help": "A request not answered within this many seconds gets 504."}
    )
    threads: int | None = field(
        default=None, metadata={"help": "CPU threads for the model (default: torch's / ONNX Runtime's own)."}
    )
    device: str | None = field(default=None, metadata={"help": "torch backend: cpu, cuda ... (default: cuda if any)."})
    access_log: bool = field(default=False, metadata={"help": "Log every request (uvicorn's access log)."})


RANGES = {
    "port": (0, 65535, True, True),
    "max_batch_size": (1, None, True, True),
    "max_wait_ms": (0, None, True, True),
    "max_items": (1, None, True, True),
    "max_body_bytes": (1, None, True, True),
    "max_request_tokens": (1, None, True, True),
    "max_queue": (1, None, True, True),
    "request_timeout_s": (0, None, False, True),
    "threads": (1, None, True, True),
}


# -- the schema (OpenAPI) ----------------------------------------------------------------------------------------


class PredictRequest(BaseModel):
    texts: list[str] | None = Field(None, description="Single-text models: the texts to classify.")
    pairs: list[list[str]] | None = Field(None, description="Sentence-pair models: [text, text_pair] items.")


class Prediction(BaseModel):
    label: str | None = Field(None, description="The predicted label (single-label models).")
    score: float | None = Field(None, description="Its probability (single-label); the predicted value (regression).")
    labels: list[str] | None = Field(None, description="Multi-label models: every label at or above its threshold.")
    probabilities: dict[str, float] | None = Field(None, description="Every label's probability (not regression).")


class PredictResponse(BaseModel):
    predictions: list[Prediction]


class InferenceRequest(BaseModel):
    """The Hugging Face Inference API's text-classification request."""

    inputs: str | list[str] | dict[str, str] | list[dict[str, str]] = Field(
        description='A text or a list of texts; sentence-pair models: {"text": ..., "text_pair": ...} or a list.'
    )
    parameters: dict[str, Any] | None = Field(
        None, description='{"top_k": int (default: every label), "function_to_apply": "softmax" | "sigmoid" | "none"}'
    )


class LabelScore(BaseModel):
    label: str
    score: float


class ErrorBody(BaseModel):
    error: str
    request_id: str | None = None


ERRORS = {status: {"model": ErrorBody} for status in (400, 413, 415, 422, 500, 503, 504)}


def request_schema(model: type[BaseModel]) -> dict:
    """An OpenAPI requestBody for a body the route reads itself (to bound its size before parsing it)."""
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": model.model_json_schema()}}}}


# -- requests ------------------------------------------------------------------------------------------------------


class BadRequest(Exception):
    """A request the server refuses, with its HTTP status and one line saying why."""

    def __init__(self, status: int, message: str, headers: dict | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers


def parse_json(body: bytes):
    try:
        return json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise BadRequest(400, f"the request body is not valid JSON: {e}") from None
    except RecursionError:
        raise BadRequest(400, "the request body is JSON nested too deeply to read") from None


def parse_request(body: bytes, is_pair: bool, max_items: int) -> tuple[list[str], list[str] | None]:
    """(texts, pairs or None) of a /predict body, or BadRequest saying what is wrong with it."""
    data = parse_json(body)
    wanted = '{"pairs": [[text, text_pair], ...]}' if is_pair else '{"texts": [text, ...]}'
    if not isinstance(data, dict):
        raise BadRequest(400, f"the request body must be a JSON object, {wanted}; got a {type(data).__name__}")
    unknown = sorted(set(data) - {"texts", "pairs"})
    if unknown:
        raise BadRequest(400, f"unknown key {unknown[0]!r} in the request; send {wanted}")
    key = "pairs" if is_pair else "texts"
    if key not in data:
        other = "texts" if is_pair else "pairs"
        if other in data:
            kind = "sentence pairs" if is_pair else "single texts"
            raise BadRequest(422, f'this model classifies {kind}, but the request sends "{other}"; send {wanted}')
        raise BadRequest(400, f'the request has no "{key}"; send {wanted}')
    if len(data) > 1:
        raise BadRequest(400, f'send either "texts" or "pairs", not both; this model takes {wanted}')
    items = data[key]
    if not isinstance(items, list):
        raise BadRequest(422, f'"{key}" must be a list, got a {type(items).__name__}')
    check_count(key, items, max_items)
    if is_pair:
        for i, item in enumerate(items):
            if not (isinstance(item, list) and len(item) == 2):
                raise BadRequest(422, f"pairs[{i}] must be a list of two strings, [text, text_pair]")
            for j, text in enumerate(item):
                check_text(text, f"pairs[{i}][{j}]")
        return [a for a, _ in items], [b for _, b in items]
    for i, text in enumerate(items):
        check_text(text, f"texts[{i}]")
    return items, None


def parse_inference_request(body: bytes, is_pair: bool, max_items: int):
    """(texts, pairs or None, top_k, function_to_apply, whether one input came as a bare value) of a Hugging Face
    Inference API text-classification body."""
    data = parse_json(body)
    if not isinstance(data, dict) or "inputs" not in data:
        raise BadRequest(400, 'send {"inputs": "text" | ["text", ...], "parameters": {...}} (the Inference API shape)')
    unknown = sorted(set(data) - {"inputs", "parameters", "options"})
    if unknown:
        raise BadRequest(400, f"unknown key {unknown[0]!r} in the request")
    inputs = data["inputs"]
    single = not isinstance(inputs, list)
    items = [inputs] if single else inputs
    check_count("inputs", items, max_items)
    texts, pairs = [], [] if is_pair else None
    for i, item in enumerate(items):
        where = "inputs" if single else f"inputs[{i}]"
        if is_pair:
            if not (isinstance(item, dict) and set(item) == {"text", "text_pair"}):
                raise BadRequest(
                    422, f'{where} must be {{"text": ..., "text_pair": ...}}: this model classifies pairs'
                )
            check_text(item["text"], f"{where}.text")
            check_text(item["text_pair"], f"{where}.text_pair")
            texts.append(item["text"])
            pairs.append(item["text_pair"])
        else:
            check_text(item, where)
            texts.append(item)
    parameters = data.get("parameters") or {}
    if not isinstance(parameters, dict):
        raise BadRequest(422, f'"parameters" must be an object, got a {type(parameters).__name__}')
    unknown = sorted(set(parameters) - {"top_k", "function_to_apply"})
    if unknown:
        raise BadRequest(
            422, f"unknown parameter {unknown[0]!r}; text classification takes top_k and function_to_apply"
        )
    top_k = parameters.get("top_k")
    if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1):
        raise BadRequest(422, f'"top_k" must be a whole number of at least 1, got {json.dumps(top_k)}')
    function = parameters.get("function_to_apply")
    if function is not None and function not in HF_FUNCTIONS:
        raise BadRequest(422, f'"function_to_apply" must be one of {", ".join(HF_FUNCTIONS)}, got {function!r}')
    return texts, pairs, top_k, function, single


def check_count(key: str, items: list, max_items: int) -> None:
    if not items:
        raise BadRequest(422, f'"{key}" is empty: send at least one item')
    if len(items) > max_items:
        raise BadRequest(
            413, f'"{key}" holds {len(items)} items, over the limit of {max_items} per request: split it up'
        )


def check_text(text, where: str) -> None:
    """A text the tokenizer can take, or a 422 naming the item."""
    if not isinstance(text, str):
        raise BadRequest(422, f"{where} must be a string, got {json.dumps(text, ensure_ascii=False)[:40]}")
    if not text.strip():
        raise BadRequest(422, f"{where} is empty: there is nothing to classify")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as e:
        raise BadRequest(
            422,
            f"{where} is not valid Unicode: a lone surrogate {ascii(text[e.start])} at character {e.start} (half of a "
            "character cut in two, e.g. by slicing a JavaScript string through an emoji)",
        ) from None


async def read_body(request, limit: int) -> bytes:
    """The request body, refused once it grows over `limit` bytes (Content-Length is checked before reading)."""
    declared = request.headers.get("content-length")
    too_big = f"the request body is over the limit of {limit} bytes (--max_body_bytes): send fewer or shorter texts"
    if declared and declared.isdigit() and int(declared) > limit:
        raise BadRequest(413, too_big)
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise BadRequest(413, too_big)
    return bytes(body)


def check_content_type(request) -> None:
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind != "application/json" and not kind.endswith("+json"):
        raise BadRequest(
            415, f"the request body must be JSON (Content-Type: application/json), got {kind or 'no Content-Type'}"
        )


# -- batching ------------------------------------------------------------------------------------------------------


@dataclass
class Job:
    """One request's model inputs (encode_texts' columns) and the future its logits go to."""

    encoded: dict
    future: asyncio.Future
    request_id: str

    @property
    def rows(self) -> int:
        return len(self.encoded["length"])


class MicroBatcher:
    """Runs the model inputs of concurrent requests together: each request's inputs go in a queue; one task takes
    what is queued (and what arrives within `max_wait` of it) up to `max_batch_size` inputs, runs them in one call of
    `forward(encoded)` on the model's thread (the event loop keeps accepting requests meanwhile), and hands each
    request its own rows of logits. A request larger than `max_batch_size` runs alone. Should a batch fail, its
    requests run again one by one, so that only the one that fails alone gets the error."""

    def __init__(self, forward, max_batch_size: int, max_wait: float):
        self.forward = forward
        self.max_batch_size = max_batch_size
        self.max_wait = max_wait
        self.queue: asyncio.Queue = asyncio.Queue()
        self.held: Job | None = None  # a request that did not fit into the last batch: it starts the next one
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="model")
        self.batches = 0
        self.items = 0
        self.pending = 0  # model inputs queued or running

    async def submit(self, job: Job) -> None:
        self.pending += job.rows
        await self.queue.put(job)

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            jobs = [self.held if self.held else await self.queue.get()]
            self.held = None
            size = jobs[0].rows
            deadline = loop.time() + self.max_wait
            while size < self.max_batch_size:
                try:
                    job = self.queue.get_nowait()  # queued while the model was busy: no waiting
                except asyncio.QueueEmpty:
                    remaining = deadline - loop.time()
                    if remaining <= 0:
                        break
                    try:
                        job = await asyncio.wait_for(self.queue.get(), remaining)
                    except asyncio.TimeoutError:
                        break
                if size + job.rows > self.max_batch_size:
                    self.held = job
                    break
                jobs.append(job)
                size += job.rows
            await self._run_batch(loop, jobs)

    async def _run_batch(self, loop, jobs: list[Job]) -> None:
        for job in jobs:
            self.pending -= job.rows
        live = [job for job in jobs if not job.future.done()]  # timed-out or gone clients leave done futures
        if not live:
            return
        try:
            logits = await loop.run_in_executor(self.executor, self.forward, merge([j.encoded for j in live]))
        except Exception:
            if len(live) == 1:
                logger.exception("request %s: prediction failed", live[0].request_id)
                _settle(live[0].future, exception=InternalError(live[0].request_id))
                return
            ids = ", ".join(j.request_id for j in live)
            logger.exception("a batch of requests %s failed; running them one by one", ids)
            for job in live:
                await self._run_batch(loop, [job])
            return
        self.batches += 1
        self.items += sum(job.rows for job in live)
        start = 0
        for job in live:
            _settle(job.future, result=logits[start : start + job.rows])
            start += job.rows

    def close(self) -> None:
        self.executor.shutdown(wait=False, cancel_futures=True)


class InternalError(Exception):
    def __init__(self, request_id: str):
        super().__init__(request_id)
        self.request_id = request_id


def _settle(future: asyncio.Future, result=None, exception=None) -> None:
    if future.done():
        return
    if exception is not None:
        future.set_exception(exception)
    else:
        future.set_result(result)


def merge(parts: list[dict]) -> dict:
    """One encode_texts result from several: rows concatenated, windows' `row` shifted to the merged text index."""
    merged: dict = {}
    shift = 0
    for part in parts:
        for key, values in part.items():
            if key == "texts":
                continue
            if key == "row":
                values = [r + shift for r in values]
            merged.setdefault(key, []).extend(values)
        shift += part["texts"]
    merged["texts"] = shift
    return merged


# -- answers -------------------------------------------------------------------------------------------------------


def answers(probs: np.ndarray, classifier, decision) -> list[dict]:
    """One prediction per row: the label and its probability (multi-label: every label at or above its threshold)
    and every label's probability, decided as the model's stored decision says (classifier.decision)."""
    labels = classifier.labels
    names = list(labels.names)
    decided = decision(probs)
    out = []
    for row, choice in zip(probs, decided):
        probabilities = {name: float(p) for name, p in zip(names, row)}
        if labels.regression:  # as pipeline() answers for a regression model: the value as the score
            out.append({"label": names[0], "score": float(choice)})
        elif labels.multi_label:
            out.append({"labels": [n for n, on in zip(names, choice) if on], "probabilities": probabilities})
        else:
            out.append({"label": names[choice], "score": float(row[choice]), "probabilities": probabilities})
    return out


def inference_answers(logits: np.ndarray, names: list[str], multi_label: bool, top_k, function) -> list[list[dict]]:
    """The Inference API's answer: per input, labels with scores, highest first; `function` as transformers'
    text-classification pipeline applies it (default: sigmoid for multi-label models, else softmax)."""
    function = function or ("sigmoid" if multi_label else "softmax")
    logits = logits.astype(np.float64)
    if function == "softmax":
        shifted = np.exp(logits - logits.max(axis=-1, keepdims=True))
        scores = shifted / shifted.sum(axis=-1, keepdims=True)
    elif function == "sigmoid":
        scores = 1 / (1 + np.exp(-logits))
    else:
        scores = logits
    out = []
    for row in scores:
        order = np.argsort(-row, kind="stable")[: top_k or len(names)]
        out.append([{"label": names[i], "score": float(row[i])} for i in order])
    return out


# -- the application -----------------------------------------------------------------------------------------------


def build_app(classifier, args: ServeArguments):
    """The FastAPI application serving `classifier` (runtime.Classifier, or TrainedClassifier on torch)."""
    from fastapi import FastAPI, Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse
    from starlette.exceptions import HTTPException

    data_args = classifier.data_args()
    is_pair = bool(data_args.text_pair_column)
    decision = classifier.decision(data_args)
    names = list(classifier.labels.names)
    encoder = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tokenizer")

    def forward(encoded):
        return classifier.forward_features(encoded, args.max_batch_size, progress=False)

    batcher = MicroBatcher(forward, args.max_batch_size, args.max_wait_ms / 1000)
    stats = {"requests": 0, "refused": 0, "failed": 0, "ready": False}

    async def warm_up():
        text = "这家酒店的服务很好"
        encoded = classifier.encode_texts([text], [text] if is_pair else None, data_args)
        await asyncio.get_running_loop().run_in_executor(batcher.executor, forward, encoded)
        stats["ready"] = True
        logger.info("ready: the warm-up forward pass ran")

    @asynccontextmanager
    async def lifespan(app):
        tasks = [asyncio.create_task(batcher.run()), asyncio.create_task(warm_up())]
        yield
        for task in tasks:
            task.cancel()
        batcher.close()
        encoder.shutdown(wait=False, cancel_futures=True)

    app = FastAPI(
        title="bertcls",
        lifespan=lifespan,
        description="Text classification with a fine-tuned BERT-family model (bertcls serve).",
    )
    app.state.batcher = batcher

    def error(status: int, message: str, request_id: str | None = None, headers=None) -> JSONResponse:
        body = {"error": message} if request_id is None else {"error": message, "request_id": request_id}
        return JSONResponse(body, status_code=status, headers=headers)

    @app.exception_handler(HTTPException)
    async def http_error(request, e):
        if e.status_code == 404:
            message = f"no such route: {request.method} {request.url.path}; see /docs for the routes"
        elif e.status_code == 405:
            message = f"{request.method} is not allowed on {request.url.path} (allowed: {e.headers.get('Allow')})"
        else:
            message = str(e.detail)
        return error(e.status_code, message, headers=e.headers)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request, e):
        first = e.errors()[0] if e.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()))
        return error(422, f"{where}: {first.get('msg', 'invalid request')}")

    @app.exception_handler(Exception)
    async def internal_error(request, e):
        request_id = uuid.uuid4().hex[:16]
        logger.error("request %s: %s %s failed", request_id, request.method, request.url.path, exc_info=e)
        return error(500, "internal error", request_id)

    async def logits_of(request, texts, pairs, request_id) -> np.ndarray:
        """The logits of a request's texts, one row per text; BadRequest for what the request itself got wrong."""
        loop = asyncio.get_running_loop()
        try:
            encoded = await loop.run_in_executor(encoder, classifier.encode_texts, texts, pairs, data_args)
        except Exception:
            logger.exception("request %s: tokenizing failed", request_id)
            raise BadRequest(422, f"the texts could not be tokenized (request id {request_id})") from None
        tokens = sum(encoded["length"])
        if tokens > args.max_request_tokens:
            windows = f" in {len(encoded['length'])} windows" if data_args.sliding_window else ""
            raise BadRequest(
                413,
                f"the request makes {tokens} model-input tokens{windows}, over the limit of {args.max_request_tokens} "
                "(--max_request_tokens): send fewer or shorter texts",
            )
        job = Job(encoded, loop.create_future(), request_id)
        if batcher.pending and batcher.pending + job.rows > args.max_queue:
            raise BadRequest(
                503,
                f"the server is busy: {batcher.pending} model inputs are waiting (--max_queue {args.max_queue}); "
                "retry shortly",
                headers={"Retry-After": "1"},
            )
        await batcher.submit(job)
        try:
            logits = await asyncio.wait_for(job.future, args.request_timeout_s)
        except asyncio.TimeoutError:
            raise BadRequest(
                504, f"no answer within {args.request_timeout_s:g} s (--request_timeout_s); retry later"
            ) from None
        return classifier.combine(logits, encoded, data_args)

    async def handle(request, parse, answer):
        request_id = uuid.uuid4().hex[:16]
        try:
            check_content_type(request)
            body = await read_body(request, args.max_body_bytes)
            parsed = parse(body)
            stats["requests"] += 1
            logits = await logits_of(request, parsed[0], parsed[1], request_id)
        except BadRequest as e:
            stats["refused"] += 1
            return error(e.status, e.message, headers=e.headers)
        except InternalError:
            stats["failed"] += 1
            return error(500, "internal error", request_id)
        return answer(logits, parsed)

    @app.post(
        "/predict",
        response_model=PredictResponse,
        response_model_exclude_none=True,
        responses=ERRORS,
        openapi_extra=request_schema(PredictRequest),
        summary="Classify texts (or sentence pairs)",
    )
    async def predict_route(request: Request):
        return await handle(
            request,
            lambda body: parse_request(body, is_pair, args.max_items),
            lambda logits, _: {"predictions": answers(classifier.probabilities(logits), classifier, decision)},
        )

    def inference_route(request: Request):
        def answer(logits, parsed):
            _, _, top_k, function, _ = parsed
            if classifier.labels.regression:  # pipeline() applies nothing to a regression model's value
                function = function or "none"
            return inference_answers(logits, names, classifier.labels.multi_label, top_k, function)

        return handle(request, lambda body: parse_inference_request(body, is_pair, args.max_items), answer)

    inference = {
        "response_model": list[list[LabelScore]],
        "responses": ERRORS,
        "openapi_extra": request_schema(InferenceRequest),
        "summary": "Classify texts: the Hugging Face Inference API's text-classification shapes",
    }

    @app.post("/", **inference)
    async def root_route(request: Request):
        return await inference_route(request)

    @app.post("/models/{model_id:path}", **inference)
    async def models_route(model_id: str, request: Request):
        return await inference_route(request)

    @app.get("/labels")
    async def labels_route():
        return {
            "labels": names,
            "multi_label": classifier.labels.multi_label,
            "input": "pairs" if is_pair else "texts",
        }

    @app.api_route("/health", methods=["GET", "HEAD"])
    async def health_route():
        return {
            "status": "alive",
            "ready": stats["ready"],
            "model": classifier.path,
            "backend": classifier.backend.name,
            "requests": stats["requests"],
            "refused": stats["refused"],
            "failed": stats["failed"],
            "items": batcher.items,
            "batches": batcher.batches,
            "queued": batcher.pending,
        }

    @app.api_route("/ready", methods=["GET", "HEAD"])
    async def ready_route():
        if not stats["ready"]:
            return error(503, "warming up: the first forward pass has not run yet", headers={"Retry-After": "1"})
        return {"status": "ready"}

    return app


LISTEN_BACKLOG = 2048  # uvicorn's default


def listen(host: str, port: int) -> socket.socket:
    """A bound, listening TCP socket, so a taken port is one clear error and port 0 gets a free port we can print.
    Made with proto IPPROTO_TCP: asyncio sets TCP_NODELAY only on such sockets' connections. Listening from here on,
    a client that connects as soon as the banner is printed waits in the backlog until the model is warm, instead of
    being refused."""
    try:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
        sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.bind((host, port))
        sock.listen(LISTEN_BACKLOG)
    except OSError as e:
        raise UserError(
            f"cannot listen on {host}:{port}: {e.strerror or e}", fix="pass another --port (0 picks a free one)"
        ) from None
    return sock


def parse_arguments(argv) -> ServeArguments:
    """The flags, parsed as every bertcls tool parses them (one line per mistake, no abbreviations), range-checked.
    bertcls.config is imported only here: on an export folder nothing else needs what it imports."""
    from bertcls.config.arguments import check_ranges
    from bertcls.config.recipes import parse_args

    (args,) = parse_args(argv, (ServeArguments,))
    check_ranges(args, RANGES)
    return args


def setup_server_logging() -> None:
    """Logs on stderr (stdout holds the banner), bertcls at INFO; no progress bars."""
    logging.basicConfig(
        format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S", stream=sys.stderr
    )
    logging.getLogger("bertcls").setLevel(logging.INFO)


def load(args: ServeArguments):
    """The folder's classifier: an export folder on ONNX Runtime without torch (model/runtime.py: neither torch,
    transformers' models nor datasets is imported), a run's folder on torch (fp32, bf16, or --backend auto's pick)."""
    backend = None if args.backend == AUTO else args.backend
    if (backend or folder_backend(args.model_name_or_path)) == "onnx":
        return Classifier.load(args.model_name_or_path, args.device, "onnx", args.threads)
    import torch
    import transformers

    from bertcls.model.classifier import TrainedClassifier, pick_fastest

    # The weights' loading bar, through transformers' own switch: TQDM_DISABLE in os.environ would be handed by an
    # in-process caller (a test, a notebook) to every process it starts afterwards.
    transformers.utils.logging.disable_progress_bar()
    if args.threads:
        torch.set_num_threads(args.threads)
    classifier = TrainedClassifier.load(args.model_name_or_path, args.device, backend, args.threads)
    if args.backend == AUTO:
        texts, pairs = own_rows(classifier)
        classifier, _ = pick_fastest(classifier, texts, pairs)
    return classifier


AUTO_ROWS = 64


def own_rows(classifier) -> tuple[list, list | None]:
    """The first AUTO_ROWS texts of the run's own test (else validation) file, for --backend auto; none if the run
    names no file that exists (auto then keeps torch fp32, and says so)."""
    from bertcls.data.loading import read_file, standardize
    from bertcls.shipping.export import default_check_file

    data_args = classifier.data_args()
    try:
        path = default_check_file(classifier.path)
    except UserError as e:
        logger.warning("--backend auto: %s; serving torch fp32", e.message)
        return [], None
    raw, source = read_file(path, data_args)
    rows, _ = standardize(raw.select(range(min(AUTO_ROWS, len(raw)))), source, data_args, labels=None, split="test")
    return rows["text"], rows["text_pair"] if "text_pair" in rows.column_names else None


@exit_on_user_error
def main(argv=None) -> None:
    import uvicorn

    setup_server_logging()
    args = parse_arguments(argv)
    classifier = load(args)
    app = build_app(classifier, args)
    sock = listen(args.host, args.port)
    host, port = sock.getsockname()[:2]
    url = f"http://{f'[{host}]' if ':' in host else host}:{port}"
    is_pair = bool(classifier.preprocessing.get("text_pair_column"))
    example = {"pairs": [["今天天气很好", "适合出去玩"]]} if is_pair else {"texts": ["这家酒店的服务很好"]}
    print(
        f"serving {args.model_name_or_path} ({classifier.backend.name}, labels: {', '.join(classifier.labels.names)})"
        f" on {url}\ntry: curl -s {url}/predict -H 'Content-Type: application/json' "
        f"-d '{json.dumps(example, ensure_ascii=False)}'",
        flush=True,
    )
    # uvicorn's own handlers log to stderr; timeout_graceful_shutdown bounds the drain after SIGTERM.
    config = uvicorn.Config(
        app, log_level="warning", access_log=args.access_log, timeout_graceful_shutdown=args.request_timeout_s
    )
    uvicorn.Server(config).run(sockets=[sock])


if __name__ == "__main__":
    main(sys.argv[1:])
