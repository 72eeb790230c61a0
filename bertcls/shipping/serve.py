"""An HTTP JSON service for a fine-tuned folder or an export folder, with concurrent requests micro-batched.

    python -m bertcls serve --model_name_or_path outputs/my-task-onnx [--backend onnx] [--host 127.0.0.1] [--port 8000]

    POST /predict  {"texts": ["...", ...]} or, for a sentence-pair model, {"pairs": [["...", "..."], ...]}
                   -> {"predictions": [{"label": ..., "score": ..., "probabilities": {label: p, ...}}, ...]}
                   in input order (multi-label models: "labels", every label at or above the threshold, no score)
    GET  /labels   -> the model's labels, whether it is multi-label, and which input it takes
    GET  /health   -> {"status": "ok", ...} with counts of requests, items and batches served

Inputs are built exactly as in training (TrainedClassifier.predict_texts: the stored max_seq_length, truncation,
head_tail and sliding windows). Requests that arrive while the model is busy, or within --max_wait_ms of the first
one, are run together in one batch of up to --max_batch_size texts. A bad request gets a 4xx status and
{"error": "one line saying what is wrong"}; the server keeps serving.

FastAPI + uvicorn with a small asyncio micro-batcher, rather than LitServe: a request here carries a list of
texts, and batching must be by texts (a request of 30 texts and two of 1 make one batch of 32), where LitServe
batches whole requests; LitServe also runs the model in separate worker processes (one more copy of the model and
a pyzmq hop per request) and has no body-size limit of its own.
"""

import asyncio
import json
import logging
import socket
import sys
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import numpy as np
from transformers import HfArgumentParser

from bertcls.errors import UserError, exit_on_user_error
from bertcls.logs import setup_logging
from bertcls.model.classifier import BACKENDS, TrainedClassifier

logger = logging.getLogger(__name__)


@dataclass
class ServeArguments:
    model_name_or_path: str = field(
        metadata={
            "help": "A model folder written by run_classification.py, or an export folder (bertcls.shipping.export)."
        }
    )
    backend: str | None = field(
        default=None,
        metadata={
            "help": "torch or onnx (default: the one the folder holds weights for).",
            "choices": list(BACKENDS),
        },
    )
    host: str = field(default="127.0.0.1", metadata={"help": "Address to listen on (0.0.0.0: every interface)."})
    port: int = field(default=8000, metadata={"help": "Port to listen on; 0 picks a free one (printed)."})
    max_batch_size: int = field(default=32, metadata={"help": "Most texts run in one forward pass."})
    max_wait_ms: float = field(
        default=5.0, metadata={"help": "How long the first request of a batch waits for others to join it."}
    )
    max_items: int = field(default=64, metadata={"help": "Most texts (or pairs) one request may send."})
    max_body_bytes: int = field(default=1_000_000, metadata={"help": "Largest request body accepted, in bytes."})
    threads: int | None = field(
        default=None, metadata={"help": "CPU threads for the model (default: torch's / ONNX Runtime's own)."}
    )
    device: str | None = field(default=None, metadata={"help": "torch backend: cpu, cuda ... (default: cuda if any)."})
    access_log: bool = field(default=False, metadata={"help": "Log every request (uvicorn's access log)."})


class BadRequest(Exception):
    """A request the server refuses, with its HTTP status and one line saying why."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


class MicroBatcher:
    """Runs the items of concurrent requests together: each request's items go in a queue; one task takes what is
    queued (and what arrives within `max_wait` of it) up to `max_batch_size` items, runs them in one call of
    `predict(texts, pairs)` on a worker thread (the event loop keeps accepting requests meanwhile), and hands
    each request its own rows. A request larger than `max_batch_size` runs alone."""

    def __init__(self, predict, max_batch_size: int, max_wait: float):
        self.predict = predict
        self.max_batch_size = max_batch_size
        self.max_wait = max_wait
        self.queue: asyncio.Queue = asyncio.Queue()
        self.held = None  # a request that did not fit into the last batch: it starts the next one
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="model")
        self.batches = 0
        self.items = 0

    async def submit(self, texts: list[str], pairs: list[str] | None) -> np.ndarray:
        future = asyncio.get_running_loop().create_future()
        await self.queue.put((texts, pairs, future))
        return await future

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            jobs = [self.held if self.held else await self.queue.get()]
            self.held = None
            size = len(jobs[0][0])
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
                if size + len(job[0]) > self.max_batch_size:
                    self.held = job
                    break
                jobs.append(job)
                size += len(job[0])
            await self._run_batch(loop, jobs)

    async def _run_batch(self, loop, jobs) -> None:
        texts = [t for job in jobs for t in job[0]]
        pairs = [p for job in jobs for p in job[1]] if jobs[0][1] is not None else None
        try:
            probs = await loop.run_in_executor(self.executor, self.predict, texts, pairs)
        except Exception as e:  # answer every waiting request; the loop goes on with the next batch
            logger.exception("prediction failed")
            for *_, future in jobs:
                if not future.done():
                    future.set_exception(e)
            return
        self.batches += 1
        self.items += len(texts)
        start = 0
        for job_texts, _, future in jobs:
            if not future.done():  # a client that went away leaves a cancelled future
                future.set_result(probs[start : start + len(job_texts)])
            start += len(job_texts)

    def close(self) -> None:
        self.executor.shutdown(wait=False, cancel_futures=True)


def parse_request(body: bytes, is_pair: bool, max_items: int) -> tuple[list[str], list[str] | None]:
    """(texts, pairs or None) of a /predict body, or BadRequest saying what is wrong with it."""
    try:
        data = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise BadRequest(400, f"the request body is not valid JSON: {e}") from None
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
    if not items:
        raise BadRequest(422, f'"{key}" is empty: send at least one item')
    if len(items) > max_items:
        raise BadRequest(
            413, f'"{key}" holds {len(items)} items, over the limit of {max_items} per request: split it up'
        )
    if is_pair:
        for i, item in enumerate(items):
            if not (isinstance(item, list) and len(item) == 2):
                raise BadRequest(422, f"pairs[{i}] must be a list of two strings, [text, text_pair]")
            for j, text in enumerate(item):
                _check_text(text, f"pairs[{i}][{j}]")
        return [a for a, _ in items], [b for _, b in items]
    for i, text in enumerate(items):
        _check_text(text, f"texts[{i}]")
    return items, None


def _check_text(text, where: str) -> None:
    if not isinstance(text, str):
        raise BadRequest(422, f"{where} must be a string, got {json.dumps(text, ensure_ascii=False)[:40]}")
    if not text.strip():
        raise BadRequest(422, f"{where} is empty: there is nothing to classify")


def answers(probs: np.ndarray, classifier: TrainedClassifier, decision) -> list[dict]:
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


def build_app(classifier: TrainedClassifier, args: ServeArguments):
    """The FastAPI application serving `classifier`."""
    from fastapi import FastAPI, Request
    from fastapi.responses import JSONResponse

    data_args = classifier.data_args()
    is_pair = bool(data_args.text_pair_column)
    decision = classifier.decision(data_args)
    batch_size = args.max_batch_size

    def predict(texts, pairs):
        return classifier.predict_texts(texts, pairs, data_args, batch_size=batch_size)

    batcher = MicroBatcher(predict, args.max_batch_size, args.max_wait_ms / 1000)
    stats = {"requests": 0, "refused": 0}

    @asynccontextmanager
    async def lifespan(app):
        task = asyncio.create_task(batcher.run())
        yield
        task.cancel()
        batcher.close()

    app = FastAPI(title="bertcls", lifespan=lifespan)
    app.state.batcher = batcher

    @app.post("/predict")
    async def predict_route(request: Request):
        try:
            body = await read_body(request, args.max_body_bytes)
            texts, pairs = parse_request(body, is_pair, args.max_items)
        except BadRequest as e:
            stats["refused"] += 1
            return JSONResponse({"error": e.message}, status_code=e.status)
        stats["requests"] += 1
        try:
            probs = await batcher.submit(texts, pairs)
        except Exception as e:
            return JSONResponse({"error": f"prediction failed: {type(e).__name__}: {e}"}, status_code=500)
        return {"predictions": answers(probs, classifier, decision)}

    @app.get("/labels")
    async def labels_route():
        return {
            "labels": list(classifier.labels.names),
            "multi_label": classifier.labels.multi_label,
            "input": "pairs" if is_pair else "texts",
        }

    @app.get("/health")
    async def health_route():
        return {
            "status": "ok",
            "model": classifier.path,
            "backend": classifier.backend.name,
            "requests": stats["requests"],
            "refused": stats["refused"],
            "items": batcher.items,
            "batches": batcher.batches,
        }

    return app


def listen(host: str, port: int) -> socket.socket:
    """A bound socket, so a taken port is one clear error and port 0 gets a free port we can print."""
    try:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
    except OSError as e:
        raise UserError(
            f"cannot listen on {host}:{port}: {e.strerror or e}", fix="pass another --port (0 picks a free one)"
        ) from None
    return sock


def check_arguments(args: ServeArguments) -> None:
    for name in ("max_batch_size", "max_items", "max_body_bytes"):
        if getattr(args, name) < 1:
            raise UserError(f"--{name} must be at least 1, got {getattr(args, name)}")
    if args.max_wait_ms < 0:
        raise UserError(f"--max_wait_ms must be 0 or more, got {args.max_wait_ms}")


@exit_on_user_error
def main(argv=None) -> None:
    import uvicorn

    setup_logging()
    (args,) = HfArgumentParser(ServeArguments).parse_args_into_dataclasses(args=argv)
    check_arguments(args)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    classifier = TrainedClassifier.load(args.model_name_or_path, args.device, args.backend, args.threads)
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
    config = uvicorn.Config(app, log_level="warning", access_log=args.access_log)
    uvicorn.Server(config).run(sockets=[sock])


if __name__ == "__main__":
    main(sys.argv[1:])
