"""Ollama's embedding API on the same server: the same models, worker, batching, limits
and guards as /v1/embeddings, in Ollama's request and response shapes.

`<name>:query` embeds with the query prompt; `<name>`, `<name>:latest` and
`<name>:document` with the document prompt. An input that already starts with one of the
model's prompts ("Query: ", "Document: ", as an app's query_instruction may add) is
embedded as sent: a prompt is never doubled (the X-Inputs-Already-Prompted header and
the log count them). Errors are `{"error": "..."}` with Ollama's statuses.

GET /, HEAD / and GET /api/version are open, as /health is: Ollama's apps probe them
before they send any key, and they tell nothing but that the server runs. Every other
route takes the API key.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from .app import Endpoint, authorized, fingerprint_header, read_json, request_deadline
from .durations import FOREVER
from .error_shapes import errors_shaped
from .ollama_models import ps_entry, show_body, tags_entries
from .ollama_protocol import (
    OLLAMA_VERSION,
    RUNNING,
    EmbedBody,
    ModelName,
    check_tag,
    error_response,
    nanoseconds,
    parse_embed,
    parse_legacy,
    show_name,
)
from .protocol import ApiError, EmbeddingRequest
from .registry import ModelRegistry, Slot, UnknownModel
from .service import Embedded, wait_for_disconnect



def ollama_routes() -> list[Route]:
    """The routes of Ollama's embedding API, for create_app."""
    return [
        Route("/", running, methods=["GET"]),  # GET routes answer HEAD too
        Route("/api/version", version, methods=["GET"]),
        Route("/api/embed", embed, methods=["POST"]),
        Route("/api/embeddings", embeddings_legacy, methods=["POST"]),
        Route("/api/tags", tags, methods=["GET"]),
        Route("/api/ps", ps, methods=["GET"]),
        Route("/api/show", show, methods=["POST"]),
    ]


def ollama_shaped(endpoint: Endpoint) -> Endpoint:
    """The endpoint, its errors answered in Ollama's shape; with `authorized` inside, a
    missing key is one of them."""
    return errors_shaped(endpoint, error_response)


def find(registry: ModelRegistry, name: ModelName) -> Slot:
    """The slot serving `name` (a served name, a repo id's name alone; any tag)."""
    try:
        return registry.find(name.sent)  # a served name that holds a ':' itself
    except UnknownModel:
        pass
    try:
        slot = registry.find(name.base)
    except UnknownModel:
        offered = [f'"{s.spec.name}"' for s in registry.slots[:10]]
        more = f" and {len(registry.slots) - 10} more" if len(registry.slots) > 10 else ""
        raise ApiError(
            404,
            f'model "{name.sent}" not found; this server offers {", ".join(offered)}{more}, '
            'each also as "<name>:query" for queries (GET /api/tags). Models are not pulled: '
            "start the server with -m FOLDER_OR_REPO_ID to serve another.",
        ) from None
    check_tag(name)
    return slot


# ---------------------------------------------------------------------------
# embedding


@dataclass(frozen=True)
class Outcome:
    result: Embedded | None  # None: nothing to embed (the model was only loaded)
    load_seconds: float
    headers: dict[str, str]


async def run_embed(request: Request, parsed: EmbedBody) -> Outcome:
    """Embed `parsed.texts` (none: only load the model), then keep the model for the
    request's keep_alive; 0 unloads it before the answer goes out."""
    registry: ModelRegistry = request.app.state.models
    slot = find(registry, parsed.model)
    if not parsed.texts and parsed.keep_alive == 0:  # Ollama's way to unload a model
        await registry.unload(slot.spec.name)
        return Outcome(None, 0.0, {})
    deadline = request_deadline(request)
    req = EmbeddingRequest(
        parsed.texts, None, input_type="query" if parsed.model.query else "document",
        truncate_dim=parsed.dimensions, truncate=parsed.truncate, skip_prompted=True,
    )  # fmt: skip
    result = None
    async with registry.use(slot.spec.name, parsed.keep_alive, deadline) as used:
        if parsed.texts:
            try:
                result = await used.service.embed_request(
                    req, disconnected=lambda: wait_for_disconnect(request.receive),
                    deadline=deadline,
                )  # fmt: skip
            except ApiError as e:
                raise ollama_worded(e) from None
        elif parsed.dimensions is not None:
            used.service.check_dimensions(req)
        headers = {**fingerprint_header(used.service), **(result.headers() if result else {})}
    if parsed.keep_alive == 0:  # gone before the answer, so /api/ps agrees at once
        await registry.unload(slot.spec.name)
    return Outcome(result, used.load_seconds, headers)


def ollama_worded(e: ApiError) -> ApiError:
    """Ollama's words where a client may look for them."""
    if e.code == "context_length_exceeded":
        message = f"the input length exceeds the context length: {e.message}"
        return ApiError(e.status, message, code=e.code, headers=e.headers)
    return e


@ollama_shaped
@authorized
async def embed(request: Request) -> Response:
    started = time.monotonic()
    registry: ModelRegistry = request.app.state.models
    parsed = parse_embed(await read_json(request, registry.limits), registry.limits.max_inputs)
    done = await run_embed(request, parsed)
    result = done.result
    body = {
        "model": parsed.model.sent,
        "embeddings": [d["embedding"] for d in result.body["data"]] if result else [],
        "total_duration": nanoseconds(time.monotonic() - started),
        "load_duration": nanoseconds(done.load_seconds),
        "prompt_eval_count": result.tokens if result else 0,
    }
    return JSONResponse(body, headers=done.headers)


@ollama_shaped
@authorized
async def embeddings_legacy(request: Request) -> Response:
    """The older single-prompt route; an empty prompt only loads the model and gets
    `{"embedding": []}`, as Ollama answers."""
    registry: ModelRegistry = request.app.state.models
    parsed = parse_legacy(await read_json(request, registry.limits))
    done = await run_embed(request, parsed)
    vector = done.result.body["data"][0]["embedding"] if done.result else []
    return JSONResponse({"embedding": vector}, headers=done.headers)


# ---------------------------------------------------------------------------
# listings


@ollama_shaped
async def running(request: Request) -> Response:
    return PlainTextResponse(RUNNING)


@ollama_shaped
async def version(request: Request) -> Response:
    return JSONResponse({"version": OLLAMA_VERSION})


@ollama_shaped
@authorized
async def tags(request: Request) -> Response:
    registry: ModelRegistry = request.app.state.models
    return JSONResponse({"models": [e for slot in registry.slots for e in tags_entries(slot)]})


@ollama_shaped
@authorized
async def ps(request: Request) -> Response:
    """Loaded models, the one kept longest first, as Ollama sorts them."""
    import mlx.core as mx

    registry: ModelRegistry = request.app.state.models
    gpu = mx.default_device().type == mx.DeviceType.gpu
    loaded = sorted(registry.loaded(), key=lambda s: s.expires_at or FOREVER, reverse=True)
    return JSONResponse({"models": [ps_entry(slot, gpu) for slot in loaded]})


@ollama_shaped
@authorized
async def show(request: Request) -> Response:
    registry: ModelRegistry = request.app.state.models
    name = show_name(await read_json(request, registry.limits))
    return JSONResponse(show_body(find(registry, name)))
