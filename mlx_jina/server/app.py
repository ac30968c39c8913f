"""The ASGI app (routes, auth, metrics) around a started Worker, and `serve()`."""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import time
import warnings
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from concurrent.futures import Future
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from ..encoding.embedder import Embedder
from ..tasks import API_TASKS, MIN_DIM
from .protocol import (
    EMBEDDING_TYPES,
    ApiError,
    EmbeddingRequest,
    Limits,
    encode_vector,
    parse_request,
)
from .connections import guarded_protocol
from .guards import LOOPBACK_HOSTS, RequestGuard, default_allowed_hosts, is_loopback
from .worker import DeadlineExceeded, Job, QueueFull, Worker

CLIENT_CLOSED = 499  # nginx's status for a request whose client went away


def model_info(model_name: str, model: Embedder, created: int) -> dict:
    return {
        "id": model_name,
        "object": "model",
        "created": created,
        "owned_by": "jinaai",
        "tasks": [t for t, (adapter, _) in API_TASKS.items() if serves(model, adapter)],
        "dimensions": model.dim,
        "max_input_tokens": model.max_length,
    }


def serves(model: Embedder, adapter: str) -> bool:
    # A merged model whose task we can't tell (task None) takes every task's prompts.
    return adapter in model.tasks if model.multitask else model.task in (adapter, None)


class EmbeddingService:
    """Turns a parsed request into a worker job and the job's result into a response."""

    def __init__(self, worker: Worker, model_name: str, split_special_tokens: bool = False):
        self.worker, self.model_name = worker, model_name
        self.split_special_tokens = split_special_tokens
        # A repo id "org/name" is also asked for by its name alone.
        self.model_names = {model_name, model_name.rsplit("/", 1)[-1]}
        self.model = worker.model
        # Requests without a task use the loaded (or --task) adapter, else the first one.
        self.default_task = self.model.task or (self.model.tasks or (None,))[0]

    def pick_task(self, adapter: str | None) -> str | None:
        if adapter is None:
            return self.default_task
        if serves(self.model, adapter):
            return adapter
        loaded = self.model.tasks if self.model.multitask else (self.model.task,)
        accepted = [t for t, (a, _) in API_TASKS.items() if a in loaded]
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
            split = req.split_special_tokens
            split = self.split_special_tokens if split is None else split
            return model.tokenize([prompt + t for t in req.texts], None, req.truncate, split)
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

    def check_model(self, name: str | None) -> None:
        if name is not None and name not in self.model_names:
            raise ApiError(
                404,
                f"The model {name!r} does not exist on this server; it serves "
                f"{self.model_name!r}. Send that name (see GET /v1/models).",
                param="model",
                code="model_not_found",
            )

    async def embed(
        self,
        body: Any,
        *,
        disconnected: Callable[[], Awaitable[None]] | None = None,
        deadline: float | None = None,
    ) -> dict:
        """Answer one request body. `disconnected` returns when the client goes away; its
        remaining work is then dropped. `deadline` (time.monotonic()) bounds the work."""
        req = parse_request(body, self.worker.limits.max_inputs)
        self.check_model(req.model)
        task = self.pick_task(req.adapter)
        self.check_dimensions(req)
        if self.worker.full():  # refuse before paying for tokenization
            raise _queue_full()
        rows = await run_in_threadpool(self.tokenize, req, task)
        job = Job(
            task, rows, req.truncate_dim, req.normalized, EMBEDDING_TYPES[req.output],
            deadline=deadline,
        )
        try:
            future = self.worker.submit(job)
        except QueueFull:
            raise _queue_full() from None
        try:
            vectors = await wait_for_job(job, future, disconnected)
        except ValueError as e:
            raise ApiError(400, str(e)) from None
        except DeadlineExceeded as e:
            raise ApiError(504, str(e), code="deadline_exceeded") from None
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


class ClientGone(Exception):
    """The client went away before its answer was ready."""


async def wait_for_job(
    job: Job, future: Future, disconnected: Callable[[], Awaitable[None]] | None
) -> Any:
    """The job's result; if the client disconnects first, cancel the job's remaining work."""
    result = asyncio.wrap_future(future)
    watcher = asyncio.ensure_future(disconnected()) if disconnected else None
    try:
        waiting = {result} if watcher is None else {result, watcher}
        done, _ = await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
    except asyncio.CancelledError:  # the server is shutting down
        job.cancel()
        raise
    finally:
        if watcher is not None:
            watcher.cancel()
    if result in done:
        return result.result()
    job.cancel()
    raise ClientGone


async def wait_for_disconnect(receive: Callable[[], Awaitable[dict]]) -> None:
    """Return when the client closes the connection (its body has been read already)."""
    while (await receive())["type"] != "http.disconnect":
        pass


def _queue_full() -> ApiError:
    return ApiError(
        429,
        "The server's queue is full (--max-queue); retry after a second.",
        code="queue_full",
        headers={"Retry-After": "1"},
    )


def check_json_content_type(request: Request) -> None:
    # A page in a browser may POST text/plain anywhere without asking; JSON it may not.
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind != "application/json" and not (kind.startswith("application/") and kind.endswith("+json")):
        raise ApiError(
            415,
            f"Content-Type {kind or '(none)'!r} is not JSON; send the body as JSON with the "
            "header 'Content-Type: application/json'.",
            code="unsupported_media_type",
        )


async def read_body(request: Request, limit: int, timeout: float) -> bytes:
    """The whole body, at most `limit` bytes, within `timeout` seconds."""
    too_big = ApiError(
        413,
        f"The request body is over the limit of {limit} bytes (--max-body-bytes). "
        "Send fewer or shorter inputs per request.",
        code="body_too_large",
    )
    length = request.headers.get("content-length", "")
    if length.isdigit() and int(length) > limit:
        raise too_big

    async def read() -> bytes:
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise too_big
            chunks.append(chunk)
        return b"".join(chunks)

    try:
        return await asyncio.wait_for(read(), timeout)
    except asyncio.TimeoutError:
        raise ApiError(
            408,
            f"The request body did not arrive within {timeout:g} s (--read-timeout); a "
            "Content-Length larger than the body also ends here.",
            code="request_timeout",
            headers={"Connection": "close"},
        ) from None
    except ClientDisconnect:
        raise ClientGone from None


def parse_json(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except ValueError as e:  # UnicodeDecodeError included
        raise ApiError(400, f"The request body is not valid JSON ({e}).") from None
    except RecursionError:
        raise ApiError(400, "The request body is JSON nested too deeply.") from None


def check_api_key(api_key: str | None) -> bytes | None:
    """The key as UTF-8 bytes; refuse keys that let everyone in or that no client can send."""
    if api_key is None:
        return None
    if not isinstance(api_key, str) or not api_key.strip():
        raise ValueError(
            "The API key is empty, which would let every client in. Pass a non-empty "
            "--api-key (or MLX_JINA_API_KEY), or leave both unset for no key."
        )
    if api_key != api_key.strip() or any(ord(c) < 32 or ord(c) == 127 for c in api_key):
        raise ValueError(
            "The API key starts or ends with whitespace or holds control characters, "
            "which an HTTP header can't carry. Use printable characters only."
        )
    return api_key.encode("utf-8")


def key_matches(authorization: str, key: bytes) -> bool:
    scheme, _, token = authorization.partition(" ")
    # Starlette decodes header bytes as latin-1; encoding back gives the bytes sent.
    sent = token.strip().encode("latin-1")
    return hmac.compare_digest(sent, key) and scheme.lower() == "bearer"


def create_app(
    worker: Worker,
    *,
    model_name: str,
    api_key: str | None = None,
    allowed_hosts: Iterable[str] = LOOPBACK_HOSTS,
    cors_origins: Iterable[str] = (),
    split_special_tokens: bool = False,
) -> Starlette:
    """The ASGI app around a started `Worker`; stopping the app stops the worker.

    Args:
        api_key: Require `Authorization: Bearer <api_key>` (None: no key; "" is refused).
        allowed_hosts: Host header names accepted ("*": any). The default, loopback names
            only, shuts out DNS rebinding for a server bound to 127.0.0.1.
        cors_origins: Web origins allowed to call the API from a browser ("*": any).
        split_special_tokens: Default for requests without "split_special_tokens": tokenize
            special-token strings in the input ("<|endoftext|>") as plain text.
    """
    if worker.model is None:
        raise ValueError("Start the worker (Worker.start()) before creating the app.")
    key = check_api_key(api_key)
    service = EmbeddingService(worker, model_name, split_special_tokens)
    metrics, limits, created = worker.metrics, worker.limits, int(time.time())

    def check_key(request: Request) -> None:
        if key is not None and not key_matches(request.headers.get("authorization", ""), key):
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
            except ClientGone:  # nobody to answer; counted apart from errors
                response = Response(status_code=CLIENT_CLOSED)
            except Exception as e:  # never let a request kill the server
                response = ApiError(500, f"Internal error: {type(e).__name__}: {e}").response()
            timed = path == "/v1/embeddings" and response.status_code == 200
            metrics.request(
                path, response.status_code, time.perf_counter() - start if timed else None
            )
            return response

        return Route(path, endpoint, methods=[method])

    async def embeddings(request: Request) -> Response:
        deadline = None
        if limits.request_timeout is not None:
            deadline = time.monotonic() + limits.request_timeout
        check_json_content_type(request)
        raw = await read_body(request, limits.max_body_bytes, limits.read_timeout)
        body = parse_json(raw)
        result = await service.embed(
            body,
            disconnected=lambda: wait_for_disconnect(request.receive),
            deadline=deadline,
        )
        return JSONResponse(result)

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

    cors_origins = tuple(cors_origins)
    middleware = [
        Middleware(
            RequestGuard,
            allowed_hosts=tuple(allowed_hosts),
            cors_origins=cors_origins,
            on_refused=metrics.request,
        )
    ]
    if cors_origins:
        middleware.append(
            Middleware(
                CORSMiddleware,
                allow_origins=list(cors_origins),
                allow_methods=["GET", "POST"],
                allow_headers=["Authorization", "Content-Type"],
            )
        )
    return Starlette(
        routes=[
            route("/v1/embeddings", embeddings, "POST"),
            route("/v1/models", models, "GET"),
            route("/health", health, "GET", auth=False),
            route("/metrics", prometheus, "GET"),
        ],
        middleware=middleware,
        lifespan=lifespan,
    )


def served_name(source: str) -> str:
    path = Path(source).expanduser()
    return path.resolve().name if path.exists() else str(source)


def uvicorn_config(app: Starlette, *, host: str, port: int, limits: Limits, log_level: str):
    """uvicorn settings with our connection limits; tests run the app with these too."""
    import uvicorn

    return uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level=log_level,
        lifespan="on",
        # h11 always: its parser is strict, and our connection limits extend it.
        http=guarded_protocol(limits.read_timeout, limits.max_connections),
        timeout_keep_alive=5,
        server_header=False,
    )


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
    allowed_hosts: Iterable[str] | None = None,
    cors_origins: Iterable[str] = (),
    split_special_tokens: bool = False,
    log_level: str = "info",
) -> None:
    """Load `source` on a worker thread and serve it with uvicorn until interrupted.

    `allowed_hosts=None` accepts loopback names when bound to loopback, any host otherwise.
    """
    import uvicorn

    check_api_key(api_key)  # before the model loads: a bad key is a start-up error
    if not is_loopback(host) and api_key is None:
        warnings.warn(
            f"Serving on {host} without --api-key: anyone who can reach it can use it.",
            stacklevel=2,
        )
    from ..checkpoint.loader import load

    limits = limits or Limits()
    worker = Worker(
        lambda: load(
            source, task=task, multitask=multitask, bits=bits, dtype=dtype, revision=revision
        ),
        limits=limits,
    ).start()
    app = create_app(
        worker,
        model_name=model_name or served_name(source),
        api_key=api_key,
        allowed_hosts=default_allowed_hosts(host) if allowed_hosts is None else allowed_hosts,
        cors_origins=cors_origins,
        split_special_tokens=split_special_tokens,
    )
    server = uvicorn.Server(
        uvicorn_config(app, host=host, port=port, limits=limits, log_level=log_level)
    )
    with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C is how a server is stopped
        server.run()
