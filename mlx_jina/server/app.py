"""The ASGI app (routes, auth, metrics) around a started Worker, and `serve()`."""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import time
import warnings
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from ..embedder import MIN_DIM, Embedder
from .protocol import (
    EMBEDDING_TYPES,
    JINA_TASKS,
    ApiError,
    EmbeddingRequest,
    Limits,
    encode_vector,
    parse_request,
)
from .worker import Job, QueueFull, Worker


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
    from ..loader import load

    worker = Worker(
        lambda: load(
            source, task=task, multitask=multitask, bits=bits, dtype=dtype, revision=revision
        ),
        limits=limits,
    ).start()
    app = create_app(worker, model_name=model_name or served_name(source), api_key=api_key)
    uvicorn.run(app, host=host, port=port, log_level=log_level)
