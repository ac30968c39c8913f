"""The ASGI app around a started Worker: routes, auth, error handlers and metrics."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hmac
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from typing import Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from .connections import guarded_protocol
from .guards import LOOPBACK_HOSTS, RequestGuard
from .durations import FOREVER
from .limits import Limits
from .metrics import Metrics, RequestMetrics
from .prompts import QUERY_SUFFIX, split_model_id
from .protocol import ApiError, ClientGone, parse_request
from .registry import ModelRegistry, ModelSpec
from .service import PROMPTED_HEADER, TRUNCATED_HEADER, EmbeddingService, wait_for_disconnect
from .worker import Worker

CLIENT_CLOSED = 499  # nginx's status for a request whose client went away
# The model's content identity on every embeddings response (and in GET /v1/models), so a
# client can tell that vectors it stored came from the same model, whatever its path.
FINGERPRINT_HEADER = "X-Model-Fingerprint"

Endpoint = Callable[[Request], Awaitable[Response]]


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


def authorized(endpoint: Endpoint) -> Endpoint:
    """The endpoint, behind the app's API key."""

    @functools.wraps(endpoint)
    async def checked(request: Request) -> Response:
        key = request.app.state.api_key
        if key is not None and not key_matches(request.headers.get("authorization", ""), key):
            raise ApiError(
                401,
                "Missing or wrong API key; send the header 'Authorization: Bearer <key>'.",
                code="invalid_api_key",
                headers={"WWW-Authenticate": "Bearer"},
            )
        return await endpoint(request)

    return checked


# ---------------------------------------------------------------------------
# the request body


async def read_json(request: Request, limits: Limits) -> Any:
    """The body as JSON: a JSON content type, at most --max-body-bytes, within --read-timeout."""
    # A page in a browser may POST text/plain anywhere without asking; JSON it may not.
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind != "application/json" and not (kind.startswith("application/") and kind.endswith("+json")):
        raise ApiError(
            415,
            f"Content-Type {kind or '(none)'!r} is not JSON; send the body as JSON with the "
            "header 'Content-Type: application/json'.",
            code="unsupported_media_type",
        )
    try:
        raw = await read_body(request, limits.max_body_bytes, limits.read_timeout)
    except ApiError as e:
        if e.status == 408:
            request.app.state.metrics.refused("body_timeout")
        raise
    try:
        return json.loads(raw)
    except ValueError as e:  # UnicodeDecodeError included
        raise ApiError(400, f"The request body is not valid JSON ({e}).") from None
    except RecursionError:
        raise ApiError(400, "The request body is JSON nested too deeply.") from None


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


# ---------------------------------------------------------------------------
# routes


def request_deadline(request: Request) -> float | None:
    """When the request's work must end (time.monotonic()), from --request-timeout."""
    timeout = request.app.state.limits.request_timeout
    return None if timeout is None else time.monotonic() + timeout


def fingerprint_header(service: EmbeddingService) -> dict[str, str]:
    identity = service.model.identity
    return {FINGERPRINT_HEADER: identity} if identity else {}


@authorized
async def embeddings(request: Request) -> Response:
    registry: ModelRegistry = request.app.state.models
    deadline = request_deadline(request)
    body = await read_json(request, registry.limits)
    req = parse_request(body, registry.limits.max_inputs)  # a bad body is a 400 first
    base = split_model_id(req.model)[0] if req.model is not None else None
    async with registry.use(base, deadline=deadline) as used:
        result = await used.service.embed_request(
            req, disconnected=lambda: wait_for_disconnect(request.receive), deadline=deadline
        )
        headers = {**fingerprint_header(used.service), **result.headers()}
        return JSONResponse(result.body, headers=headers)


@authorized
async def models_route(request: Request) -> Response:
    registry: ModelRegistry = request.app.state.models
    listed = []
    for slot in registry.slots:
        if slot.service is not None:
            listed += [{**m, "loaded": True} for m in slot.service.model_info()]
        else:  # what loading would tell is not known yet
            for suffix, kind in (("", "document"), (QUERY_SUFFIX, "query")):
                listed.append(
                    {"id": slot.spec.name + suffix, "object": "model", "owned_by": "jinaai",
                     "input_type": kind, "loaded": False}  # fmt: skip
                )
    return JSONResponse({"object": "list", "data": listed})


async def health(request: Request) -> Response:
    registry: ModelRegistry = request.app.state.models
    loaded = [s.service for s in registry.loaded()]
    ok = all(service.worker.alive for service in loaded)
    return JSONResponse(
        {
            "status": "ok" if ok else "worker stopped",
            "model": registry.default.spec.name,
            "loaded": [service.model_name for service in loaded],
            "queue_depth": queue_depth(registry),
        },
        200 if ok else 503,
    )


def queue_depth(registry: ModelRegistry) -> int:
    return sum(slot.service.worker.queue_depth for slot in registry.loaded())


@authorized
async def prometheus(request: Request) -> Response:
    registry: ModelRegistry = request.app.state.models
    return PlainTextResponse(
        registry.metrics.render(queue_depth(registry)), media_type="text/plain; version=0.0.4"
    )


# ---------------------------------------------------------------------------
# errors


async def api_error(request: Request, e: ApiError) -> Response:
    return e.response()


async def client_gone(request: Request, e: ClientGone) -> Response:
    return Response(status_code=CLIENT_CLOSED)  # nobody to answer; counted apart from errors


async def internal_error(request: Request, e: Exception) -> Response:
    return ApiError(500, f"Internal error: {type(e).__name__}: {e}").response()


@contextlib.asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[None]:
    app.state.models.start()
    yield
    await app.state.models.close()


def middleware(
    metrics: Metrics,
    allowed_hosts: tuple[str, ...],
    cors_origins: tuple[str, ...],
    shapes: list[tuple[list[Route], Callable[[ApiError], Response]]] = (),
) -> list[Middleware]:
    """The guards (Host, Origin), CORS where asked for, and request metrics, outermost first.
    `shapes`: routes whose refusals are answered in another API's error shape."""

    def shape_for(scope) -> Callable[[ApiError], Response] | None:
        method = "GET" if scope.get("method") == "HEAD" else scope.get("method")
        for routes, shape in shapes:
            if any(r.path == scope["path"] and method in (r.methods or ()) for r in routes):
                return shape
        return None

    stack = [
        Middleware(
            RequestGuard,
            allowed_hosts=allowed_hosts,
            cors_origins=cors_origins,
            on_refused=metrics.request,
            shape_for=shape_for,
        )
    ]
    if cors_origins:
        stack.append(
            Middleware(
                CORSMiddleware,
                allow_origins=list(cors_origins),
                allow_methods=["GET", "POST"],
                allow_headers=["Authorization", "Content-Type"],
                expose_headers=[FINGERPRINT_HEADER, TRUNCATED_HEADER, PROMPTED_HEADER],
            )
        )
    stack.append(Middleware(RequestMetrics, metrics=metrics, timed_path="/v1/embeddings"))
    return stack


def create_app(
    models: Worker | ModelRegistry,
    *,
    model_name: str | None = None,
    api_key: str | None = None,
    allowed_hosts: Iterable[str] = LOOPBACK_HOSTS,
    cors_origins: Iterable[str] = (),
    split_special_tokens: bool = False,
    accept_token_ids: bool = False,
) -> Starlette:
    """The ASGI app around a started `Worker` (one model, kept loaded) or a
    `ModelRegistry` (models loaded on demand); stopping the app stops every worker.

    Args:
        model_name: The served name of a Worker's model (a registry names its own).
        api_key: Require `Authorization: Bearer <api_key>` (None: no key; "" is refused).
        allowed_hosts: Host header names accepted ("*": any). The default, loopback names
            only, shuts out DNS rebinding for a server bound to 127.0.0.1.
        cors_origins: Web origins allowed to call the API from a browser ("*": any).
        split_special_tokens: Default for requests without "split_special_tokens": tokenize
            special-token strings in the input ("<|endoftext|>") as plain text. For a
            Worker; a registry has its own.
        accept_token_ids: Embed token-id inputs as this model's ids. Off by default: OpenAI
            clients (LangChain) send tiktoken ids, which would give wrong vectors. For a
            Worker; a registry has its own.
    """
    key = check_api_key(api_key)
    registry = models if isinstance(models, ModelRegistry) else single_model(
        models, model_name, split_special_tokens, accept_token_ids
    )
    from .ollama import ollama_routes  # it builds on this module's auth and body reading
    from .ollama_protocol import error_response as ollama_error
    from .tei import tei_routes  # tei.py builds on this module's helpers
    from .tei_protocol import tei_error

    routes = [
        Route("/v1/embeddings", embeddings, methods=["POST"]),
        Route("/v1/models", models_route, methods=["GET"]),
        Route("/health", health, methods=["GET"]),  # open, for load balancers
        Route("/metrics", prometheus, methods=["GET"]),
    ]
    ollama, tei = ollama_routes(), tei_routes()
    routes += ollama + tei
    shapes = [(ollama, ollama_error), (tei, tei_error)]  # for the guards' refusals too
    app = Starlette(
        routes=routes,
        middleware=middleware(
            registry.metrics, tuple(allowed_hosts), tuple(cors_origins), shapes
        ),
        # Exception's handler answers any other error: a request never kills the server.
        exception_handlers={ApiError: api_error, ClientGone: client_gone, Exception: internal_error},
        lifespan=lifespan,
    )
    app.state.api_key = key
    app.state.models, app.state.metrics, app.state.limits = (
        registry, registry.metrics, registry.limits,
    )  # fmt: skip
    return app


def single_model(
    worker: Worker, model_name: str | None, split_special_tokens: bool, accept_token_ids: bool
) -> ModelRegistry:
    """A registry of one started worker's model, kept loaded for as long as the app runs."""
    if worker.model is None:
        raise ValueError("Start the worker (Worker.start()) before creating the app.")
    if not model_name:
        raise ValueError("create_app(worker) needs model_name= (the model's served name).")
    spec = ModelSpec(model_name, worker._load_model, source=model_name, keep_alive=FOREVER)
    registry = ModelRegistry(
        [spec],
        limits=worker.limits,
        metrics=worker.metrics,
        split_special_tokens=split_special_tokens,
        accept_token_ids=accept_token_ids,
    )
    registry.adopt(worker)
    return registry


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
        http=guarded_protocol(limits, app.state.metrics.refused),
        timeout_keep_alive=5,
        server_header=False,
    )
