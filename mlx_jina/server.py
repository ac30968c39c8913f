"""An OpenAI- and Jina-compatible embedding server (`mlx-jina serve`).

MLX arrays belong to the thread that created them, so one worker thread loads and runs
the model. Request handlers validate and tokenize, then enqueue; the worker takes every
queued request up to a token budget and embeds them together, so concurrent clients
share forward passes. Needs the `server` extra (starlette, uvicorn).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hmac
import json
import queue
import threading
import time
import warnings
from collections.abc import AsyncIterator, Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import mlx.core as mx
import numpy as np
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from .embedder import MIN_DIM, Embedder
from .metrics import Metrics

# Jina API task -> (adapter, prompt name); only retrieval tells queries from documents.
JINA_TASKS = {
    "retrieval.query": ("retrieval", "query"),
    "retrieval.passage": ("retrieval", "document"),
    "text-matching": ("text-matching", "document"),
    "classification": ("classification", "document"),
    "clustering": ("clustering", "document"),
}
# embedding_type / encoding_format -> Embedder precision.
EMBEDDING_TYPES = {
    "float": "float32",
    "base64": "float32",
    "binary": "binary",
    "ubinary": "ubinary",
    "int8": "int8",
}
ENCODING_FORMATS = ("float", "base64")


@dataclass
class Limits:
    """Per-request limits and the worker's batching budget."""

    max_inputs: int = 2048  # OpenAI's limit on inputs per request
    max_body_bytes: int = 16 * 2**20
    max_queue: int = 256  # requests waiting for the worker; more get 429
    max_batch_tokens: int = 16384  # tokens gathered per worker batch and per forward pass


class ApiError(Exception):
    """An error answered as JSON in OpenAI's shape (plus Jina's `detail`)."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ):
        super().__init__(message)
        self.status, self.message, self.param, self.code = status, message, param, code
        self.headers = headers or {}

    def response(self) -> JSONResponse:
        kind = {401: "authentication_error", 429: "rate_limit_error"}.get(
            self.status, "invalid_request_error" if self.status < 500 else "server_error"
        )
        error = {"message": self.message, "type": kind, "param": self.param, "code": self.code}
        return JSONResponse(
            {"error": error, "detail": self.message}, self.status, headers=self.headers
        )


# ---------------------------------------------------------------------------
# requests


@dataclass
class EmbeddingRequest:
    """A validated /v1/embeddings body; `texts` or `ids` is set."""

    texts: list[str] | None
    ids: list[list[int]] | None
    adapter: str | None  # None: the server's default task
    prompt_name: str | None
    truncate_dim: int | None
    normalized: bool
    truncate: bool
    output: str  # float | base64 | binary | ubinary | int8


def _field(body: dict, name: str, kind: type, what: str) -> Any:
    value = body.get(name)
    if value is None:
        return None
    # bool is an int in Python, but JSON true is not a number.
    ok = (
        isinstance(value, bool)
        if kind is bool
        else (isinstance(value, kind) and not isinstance(value, bool))
    )
    if not ok:
        raise ApiError(400, f"'{name}' must be {what}, got {json.dumps(value)[:60]}.", param=name)
    return value


def _is_int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def parse_input(value: Any, max_inputs: int) -> tuple[list[str] | None, list[list[int]] | None]:
    """OpenAI `input`: a string, a list of strings, a token id list, or a list of those."""
    if isinstance(value, str):
        value = [value]
    elif value is None:
        raise ApiError(400, "'input' is required: a string or a list of strings.", param="input")
    elif not isinstance(value, list):
        raise ApiError(
            400,
            f"'input' must be a string, a list of strings or a list of token id lists, "
            f"got {type(value).__name__}.",
            param="input",
        )
    if not value:
        raise ApiError(400, "'input' is an empty list; send at least one text.", param="input")
    if all(_is_int(x) for x in value):
        value = [value]  # one pre-tokenized input
    if len(value) > max_inputs:
        raise ApiError(
            400,
            f"'input' has {len(value)} items; this server takes at most {max_inputs} per "
            "request (--max-inputs). Split the request.",
            param="input",
            code="too_many_inputs",
        )
    # Jina's API also accepts {"text": ...} objects.
    value = [
        x["text"] if isinstance(x, dict) and isinstance(x.get("text"), str) else x for x in value
    ]
    if all(isinstance(x, str) for x in value):
        if empty := [i for i, x in enumerate(value) if not x]:
            raise ApiError(400, f"input[{empty[0]}] is an empty string.", param="input")
        return value, None
    if all(isinstance(x, list) for x in value):
        for i, row in enumerate(value):
            if not row or not all(_is_int(t) for t in row):
                raise ApiError(
                    400, f"input[{i}] must be a non-empty list of integer token ids.", param="input"
                )
        return None, value
    kinds = [type(x).__name__ for x in value]
    bad = next((i for i, k in enumerate(kinds) if k not in ("str", "list")), None)
    where = (
        f"input[{bad}] is {kinds[bad]}" if bad is not None else "'input' mixes strings and lists"
    )
    raise ApiError(
        400, f"{where}; 'input' must be all strings or all token id lists.", param="input"
    )


def parse_request(body: Any, max_inputs: int) -> EmbeddingRequest:
    if not isinstance(body, dict):
        raise ApiError(400, "The request body must be a JSON object.")
    texts, ids = parse_input(body.get("input"), max_inputs)
    _field(body, "model", str, "a string")
    _field(body, "user", str, "a string")
    task = _field(body, "task", str, "a string")
    if task is not None and task not in JINA_TASKS:
        raise ApiError(
            400, f"Unknown task {task!r}. Valid tasks: {', '.join(JINA_TASKS)}.", param="task"
        )
    dims = _field(body, "dimensions", int, "an integer")
    fmt = _field(body, "encoding_format", str, "a string")
    if fmt is not None and fmt not in ENCODING_FORMATS:
        raise ApiError(
            400,
            f"encoding_format={fmt!r}; use {' or '.join(ENCODING_FORMATS)}.",
            param="encoding_format",
        )
    kind = _field(body, "embedding_type", str, "a string")
    if kind is not None and kind not in EMBEDDING_TYPES:
        raise ApiError(
            400,
            f"embedding_type={kind!r}; use one of {', '.join(EMBEDDING_TYPES)}.",
            param="embedding_type",
        )
    normalized = _field(body, "normalized", bool, "true or false")
    truncate = _field(body, "truncate", bool, "true or false")
    adapter, prompt_name = JINA_TASKS[task] if task else (None, None)
    return EmbeddingRequest(
        texts=texts,
        ids=ids,
        adapter=adapter,
        prompt_name=prompt_name,
        truncate_dim=dims,
        normalized=True if normalized is None else normalized,
        # Jina's API and OpenAI's refuse over-long inputs unless told to cut them.
        truncate=bool(truncate),
        # The OpenAI SDK always sends encoding_format, so Jina's embedding_type wins.
        output=kind or fmt or "float",
    )


# ---------------------------------------------------------------------------
# worker


@dataclass
class Job:
    """Token ids of one request, embedded with one set of output options."""

    adapter: str | None
    rows: list[list[int]]
    truncate_dim: int | None
    normalized: bool
    precision: str
    future: Future = field(default_factory=Future)

    @property
    def tokens(self) -> int:
        return sum(len(r) for r in self.rows)

    @property
    def options(self) -> tuple:
        return (self.adapter, self.truncate_dim, self.normalized, self.precision)


class QueueFull(Exception):
    pass


class Worker:
    """One thread that loads the model and embeds queued jobs in shared batches.

    `load_model` runs on the worker thread, so every MLX array lives there.
    """

    def __init__(
        self,
        load_model: Callable[[], Embedder],
        *,
        limits: Limits | None = None,
        metrics: Metrics | None = None,
    ):
        self.limits = limits or Limits()
        self.metrics = metrics or Metrics()
        self._load_model = load_model
        self._jobs: queue.Queue[Job | None] = queue.Queue(maxsize=self.limits.max_queue)
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="mlx-jina-worker", daemon=True)
        self.model: Embedder | None = None

    def start(self) -> Worker:
        """Start the thread and wait for the model; a load error is raised here."""
        self._thread.start()
        self._ready.wait()
        if self._error is not None:
            raise self._error
        return self

    def stop(self, timeout: float = 10.0) -> None:
        if self._thread.is_alive():
            self._jobs.put(None)  # blocks only while the queue is full; the worker drains it
            self._thread.join(timeout)

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    @property
    def queue_depth(self) -> int:
        return self._jobs.qsize()

    def full(self) -> bool:
        return self._jobs.full()

    def submit(self, job: Job) -> Future:
        if not self.alive:
            raise RuntimeError("The embedding worker is not running.")
        try:
            self._jobs.put_nowait(job)
        except queue.Full:
            raise QueueFull from None
        return job.future

    def _run(self) -> None:
        try:
            self.model = self._load_model()
        except BaseException as e:  # handed to start()'s caller
            self._error = e
            return
        finally:
            self._ready.set()
        stopping = False
        while not stopping:
            job = self._jobs.get()
            if job is None:
                break
            jobs, tokens = [job], job.tokens
            # Take whatever else is waiting, up to the token budget.
            while tokens < self.limits.max_batch_tokens:
                try:
                    job = self._jobs.get_nowait()
                except queue.Empty:
                    break
                if job is None:
                    stopping = True
                    break
                jobs.append(job)
                tokens += job.tokens
            self.metrics.batch(len(jobs), tokens)
            self._embed(jobs)
            if self._jobs.empty():
                # MLX keeps freed buffers per size; each new padded length adds more. Free
                # them when idle so a long-running server does not grow.
                mx.clear_cache()

    def _embed(self, jobs: list[Job]) -> None:
        groups: dict[tuple, list[Job]] = {}
        for job in jobs:
            groups.setdefault(job.options, []).append(job)
        for (adapter, truncate_dim, normalized, precision), group in groups.items():
            rows = [row for job in group for row in job.rows]
            try:
                out = self.model.encode_ids(
                    rows,
                    task=adapter if self.model.multitask else None,
                    batch_size=len(rows),  # the token budget bounds each forward pass
                    truncate_dim=truncate_dim,
                    normalize_embeddings=normalized,
                    precision=precision,
                    show_progress_bar=False,
                    max_batch_tokens=self.limits.max_batch_tokens,
                )
            except Exception as e:
                for job in group:
                    job.future.set_exception(e)
                continue
            start = 0
            for job in group:
                job.future.set_result(out[start : start + len(job.rows)])
                start += len(job.rows)


# ---------------------------------------------------------------------------
# the app


def encode_vector(vec: np.ndarray, output: str) -> list | str:
    if output == "base64":
        # Little-endian float32, as the OpenAI SDK decodes it.
        return base64.b64encode(np.asarray(vec, dtype="<f4").tobytes()).decode("ascii")
    return vec.tolist()


def model_info(model_name: str, model: Embedder, created: int) -> dict:
    return {
        "id": model_name,
        "object": "model",
        "created": created,
        "owned_by": "jinaai",
        "tasks": [t for t, (adapter, _) in JINA_TASKS.items() if serves(model, adapter)],
        "dimensions": model.dim,
        "max_input_tokens": model.max_length,
    }


def serves(model: Embedder, adapter: str) -> bool:
    # A merged model whose task we can't tell (task None) takes every task's prompts.
    return adapter in model.tasks if model.multitask else model.task in (adapter, None)


class EmbeddingService:
    """Turns a parsed request into a worker job and the job's result into a response."""

    def __init__(self, worker: Worker, model_name: str):
        self.worker, self.model_name = worker, model_name
        self.model = worker.model
        # Requests without a task use the loaded (or --task) adapter, else the first one.
        self.default_task = self.model.task or (self.model.tasks or (None,))[0]

    def pick_task(self, adapter: str | None) -> str | None:
        if adapter is None:
            return self.default_task
        if serves(self.model, adapter):
            return adapter
        loaded = self.model.tasks if self.model.multitask else (self.model.task,)
        accepted = [t for t, (a, _) in JINA_TASKS.items() if a in loaded]
        raise ApiError(
            400,
            f"This server runs the {', '.join(map(repr, loaded))} adapter, not {adapter!r}. "
            f"Tasks it accepts: {', '.join(accepted)}. Start it with --multitask or "
            f"--task {adapter} to serve that task.",
            param="task",
        )

    def tokenize(self, req: EmbeddingRequest, task: str | None) -> list[list[int]]:
        model = self.model
        limit = model.max_length
        if req.ids is not None:
            vocab = model.model.args.vocab_size
            rows = []
            for i, row in enumerate(req.ids):
                if bad := [t for t in row if not 0 <= t < vocab]:
                    raise ApiError(
                        400,
                        f"input[{i}] holds token id {bad[0]}; valid ids are 0 to {vocab - 1}.",
                        param="input",
                    )
                if len(row) > limit and not req.truncate:
                    raise ApiError(
                        400,
                        f"input[{i}] has {len(row)} tokens, over the limit of {limit} (the "
                        'model\'s context). Shorten it, or send "truncate": true to cut it.',
                        param="input",
                        code="context_length_exceeded",
                    )
                rows.append(row[:limit])  # ids are embedded as sent: no prompt, no specials
            return rows
        prompt = model.resolve_prompt(req.prompt_name, None, task)
        try:
            return model.tokenize([prompt + t for t in req.texts], None, req.truncate)
        except ValueError as e:
            raise ApiError(
                400,
                f"{e} Over the limit of {limit} tokens per input (the model's context, "
                'prompt included); send "truncate": true to cut them instead.',
                param="input",
                code="context_length_exceeded",
            ) from None

    def check_dimensions(self, req: EmbeddingRequest) -> None:
        dim = self.model.dim
        if req.truncate_dim is not None and not MIN_DIM <= req.truncate_dim <= dim:
            raise ApiError(
                400,
                f"dimensions={req.truncate_dim}; use an integer from {MIN_DIM} to {dim}.",
                param="dimensions",
            )

    async def embed(self, body: Any) -> dict:
        req = parse_request(body, self.worker.limits.max_inputs)
        task = self.pick_task(req.adapter)
        self.check_dimensions(req)
        if self.worker.full():  # refuse before paying for tokenization
            raise _queue_full()
        rows = await run_in_threadpool(self.tokenize, req, task)
        job = Job(task, rows, req.truncate_dim, req.normalized, EMBEDDING_TYPES[req.output])
        try:
            future = self.worker.submit(job)
        except QueueFull:
            raise _queue_full() from None
        try:
            vectors = await asyncio.wrap_future(future)
        except ValueError as e:
            raise ApiError(400, str(e)) from None
        tokens = job.tokens
        self.worker.metrics.embedded(len(rows), tokens)
        return {
            "object": "list",
            "data": [
                {"object": "embedding", "index": i, "embedding": encode_vector(v, req.output)}
                for i, v in enumerate(vectors)
            ],
            "model": self.model_name,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }


def _queue_full() -> ApiError:
    return ApiError(
        429,
        "The server's queue is full (--max-queue); retry after a second.",
        code="queue_full",
        headers={"Retry-After": "1"},
    )


async def read_body(request: Request, limit: int) -> bytes:
    too_big = ApiError(
        413,
        f"The request body is over the limit of {limit} bytes (--max-body-bytes). "
        "Send fewer or shorter inputs per request.",
        code="body_too_large",
    )
    length = request.headers.get("content-length", "")
    if length.isdigit() and int(length) > limit:
        raise too_big
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise too_big
        chunks.append(chunk)
    return b"".join(chunks)


def create_app(
    worker: Worker,
    *,
    model_name: str,
    api_key: str | None = None,
) -> Starlette:
    """The ASGI app around a started `Worker`; stopping the app stops the worker."""
    if worker.model is None:
        raise ValueError("Start the worker (Worker.start()) before creating the app.")
    service = EmbeddingService(worker, model_name)
    metrics, created = worker.metrics, int(time.time())

    def check_key(request: Request) -> None:
        if api_key is None:
            return
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip(), api_key):
            raise ApiError(
                401,
                "Missing or wrong API key; send the header 'Authorization: Bearer <key>'.",
                code="invalid_api_key",
                headers={"WWW-Authenticate": "Bearer"},
            )

    def route(path: str, handler: Callable, method: str, auth: bool = True) -> Route:
        async def endpoint(request: Request) -> Response:
            start = time.perf_counter()
            try:
                if auth:
                    check_key(request)
                response = await handler(request)
            except ApiError as e:
                response = e.response()
            except Exception as e:  # never let a request kill the server
                response = ApiError(500, f"Internal error: {type(e).__name__}: {e}").response()
            timed = path == "/v1/embeddings" and response.status_code == 200
            metrics.request(
                path, response.status_code, time.perf_counter() - start if timed else None
            )
            return response

        return Route(path, endpoint, methods=[method])

    async def embeddings(request: Request) -> Response:
        raw = await read_body(request, worker.limits.max_body_bytes)
        try:
            body = json.loads(raw)
        except ValueError as e:
            raise ApiError(400, f"The request body is not valid JSON ({e}).") from None
        return JSONResponse(await service.embed(body))

    async def models(request: Request) -> Response:
        return JSONResponse(
            {"object": "list", "data": [model_info(model_name, worker.model, created)]}
        )

    async def health(request: Request) -> Response:
        ok = worker.alive
        return JSONResponse(
            {
                "status": "ok" if ok else "worker stopped",
                "model": model_name,
                "queue_depth": worker.queue_depth,
            },
            200 if ok else 503,
        )

    async def prometheus(request: Request) -> Response:
        return PlainTextResponse(
            metrics.render(worker.queue_depth), media_type="text/plain; version=0.0.4"
        )

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        await run_in_threadpool(worker.stop)

    return Starlette(
        routes=[
            route("/v1/embeddings", embeddings, "POST"),
            route("/v1/models", models, "GET"),
            route("/health", health, "GET", auth=False),
            route("/metrics", prometheus, "GET"),
        ],
        lifespan=lifespan,
    )


# ---------------------------------------------------------------------------
# entry point


def served_name(source: str) -> str:
    path = Path(source).expanduser()
    return path.resolve().name if path.exists() else str(source)


def serve(
    source: str,
    *,
    task: str | None = None,
    multitask: bool = False,
    bits: int | None = None,
    dtype: str | None = None,
    revision: str | None = None,
    host: str = "127.0.0.1",
    port: int = 8080,
    api_key: str | None = None,
    model_name: str | None = None,
    limits: Limits | None = None,
    log_level: str = "info",
) -> None:
    """Load `source` on a worker thread and serve it with uvicorn until interrupted."""
    import uvicorn

    if host not in ("127.0.0.1", "localhost", "::1") and api_key is None:
        warnings.warn(
            f"Serving on {host} without --api-key: anyone who can reach it can use it.",
            stacklevel=2,
        )
    from .loader import load

    worker = Worker(
        lambda: load(
            source, task=task, multitask=multitask, bits=bits, dtype=dtype, revision=revision
        ),
        limits=limits,
    ).start()
    app = create_app(worker, model_name=model_name or served_name(source), api_key=api_key)
    uvicorn.run(app, host=host, port=port, log_level=log_level)
