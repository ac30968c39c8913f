"""Hugging Face text-embeddings-inference (TEI)'s API, on the same server and worker.

POST /embed (and POST /, its alias), /similarity and /tokenize, and GET /info, with TEI's
bodies, responses and errors (tei_protocol.py), behind the same API key, Host allowlist,
body limits and queue as /v1/embeddings. TEI names no model: every route serves the
registry's default model (the first -m). /similarity embeds with the TEXT_MATCHING
adapter (tasks.py) where the server has it (Jina's advice for symmetric similarity), else
the server's task; POST / with a similarity body ({"inputs": {"source_sentence", ...}}) is
/similarity, as huggingface_hub's InferenceClient sends both kinds there.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

import anyio.to_thread
import numpy as np
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from tokenizers import Encoding

from .._version import __version__
from ..tasks import TEXT_MATCHING
from .app import Endpoint, authorized, fingerprint_header, read_json, request_deadline
from .error_shapes import errors_shaped
from .protocol import ApiError, EmbeddingRequest
from .registry import ModelRegistry
from .service import Embedded, EmbeddingService, serves, wait_for_disconnect
from .tei_protocol import (
    NOT_JSON,
    embed_request,
    is_similarity,
    similarity_request,
    tei_error,
    tokenize_request,
)

POOLING_NAMES = {"last": "last_token"}  # the backbone's pooling -> TEI's name for it


def tei_endpoint(endpoint: Endpoint) -> Endpoint:
    """The endpoint behind the API key, its errors in TEI's shape."""
    return errors_shaped(authorized(endpoint), tei_error)


async def tei_body(request: Request) -> Any:
    """read_json's body; a body that is not JSON is TEI's 400."""
    try:
        return await read_json(request, request.app.state.limits)
    except ApiError as e:
        if e.status == 400:
            raise ApiError(400, e.message, code=NOT_JSON) from None
        raise


async def run(
    request: Request, req: EmbeddingRequest, matching: bool = False
) -> tuple[Embedded, EmbeddingService]:
    """(Embedded, the service) of `req` on the default model; `matching`: with the
    TEXT_MATCHING adapter where the server has it."""
    registry: ModelRegistry = request.app.state.models
    deadline = request_deadline(request)
    async with registry.use(None, deadline=deadline) as used:
        if matching and serves(used.service.model, TEXT_MATCHING):
            req.task = TEXT_MATCHING
        result = await used.service.embed_request(
            req, disconnected=lambda: wait_for_disconnect(request.receive), deadline=deadline
        )
        return result, used.service


def vectors(result: Embedded) -> list[list[float]]:
    return [d["embedding"] for d in result.body["data"]]


def headers(
    service: EmbeddingService, result: Embedded, req: EmbeddingRequest, started: float
) -> dict[str, str]:
    """TEI's x-compute-* headers, the model's fingerprint and X-Truncated-Inputs."""
    chars = sum(map(len, req.texts)) if req.texts is not None else sum(map(len, req.ids or []))
    ms = str(int((time.monotonic() - started) * 1000))
    return {
        "x-compute-characters": str(chars),
        "x-compute-tokens": str(result.tokens),
        "x-compute-time": ms,
        "x-total-time": ms,
        **fingerprint_header(service),
        **result.headers(),
    }


async def embed_answer(request: Request, body: Any, started: float) -> Response:
    req = embed_request(body, request.app.state.limits.max_inputs)
    result, service = await run(request, req)
    return JSONResponse(vectors(result), headers=headers(service, result, req, started))


async def similarity_answer(request: Request, body: Any, started: float) -> Response:
    req = similarity_request(body, request.app.state.limits.max_inputs)
    result, service = await run(request, req, matching=True)
    v = np.asarray(vectors(result), dtype=np.float64)
    cosines = v[1:] @ v[0] / (np.linalg.norm(v[1:], axis=1) * np.linalg.norm(v[0]))
    return JSONResponse(cosines.tolist(), headers=headers(service, result, req, started))


Answer = Callable[[Request, Any, float], Awaitable[Response]]


def answered_by(pick: Callable[[Any], Answer]) -> Endpoint:
    """A route that reads TEI's body and answers it with `pick(body)`; the time it reports
    starts before the body is read."""

    async def endpoint(request: Request) -> Response:
        started = time.monotonic()
        body = await tei_body(request)
        return await pick(body)(request, body, started)

    return tei_endpoint(endpoint)


embed = answered_by(lambda body: embed_answer)
similarity = answered_by(lambda body: similarity_answer)
# POST /: /embed, or /similarity for a similarity body
root = answered_by(lambda body: similarity_answer if is_similarity(body) else embed_answer)


@tei_endpoint
async def tokenize(request: Request) -> Response:
    """Each input's tokens as TEI lists them, the prompt /embed would use included."""
    registry: ModelRegistry = request.app.state.models
    body = await tei_body(request)
    texts, special, prompt_name = tokenize_request(body, registry.limits.max_inputs)
    async with registry.use(None, deadline=request_deadline(request)) as used:
        service = used.service
        req = EmbeddingRequest(texts, None, named_prompt=prompt_name)
        prompt = service.prompt(req, False, service.pick_task(None))
        texts = [prompt + t for t in texts]
        split = service.split_special_tokens
        found = await run_in_threadpool(service.model.encodings, texts, special, split)
    return JSONResponse([token_list(enc, text) for enc, text in zip(found, texts, strict=True)])


def token_list(enc: Encoding, text: str) -> list[dict]:
    """TEI's tokens: id, text, special, and UTF-8 byte offsets into prompt + input (null
    for special tokens)."""
    listed, char, byte = [], 0, 0
    for token_id, token, special, (start, stop) in zip(
        enc.ids, enc.tokens, enc.special_tokens_mask, enc.offsets, strict=True
    ):
        if special:
            listed.append({"id": token_id, "text": token, "special": True,
                           "start": None, "stop": None})  # fmt: skip
            continue
        if start < char:  # offsets only grow, but two tokens may share one character
            char, byte = 0, 0
        first = byte + len(text[char:start].encode("utf-8"))
        last = first + len(text[start:stop].encode("utf-8"))
        char, byte = start, first
        listed.append({"id": token_id, "text": text[start:stop], "special": False,
                       "start": first, "stop": last})  # fmt: skip
    return listed


@tei_endpoint
async def info(request: Request) -> Response:
    """TEI's /info for the default model (loaded for it, if it was not)."""
    registry: ModelRegistry = request.app.state.models
    limits = registry.limits
    async with registry.use(None, deadline=request_deadline(request)) as used:
        service = used.service
    model = service.model
    return JSONResponse(
        {
            "model_id": service.model_name,
            "model_sha": model.revision,
            "model_dtype": str(model.model.norm.weight.dtype).rsplit(".", 1)[-1],
            "served_model_name": service.model_name,
            "model_type": {"embedding": {"pooling": pooling(service)}},
            "max_concurrent_requests": limits.max_queue,
            "max_input_length": model.max_length,
            "max_batch_tokens": limits.max_batch_tokens,
            "max_batch_requests": None,
            "max_client_batch_size": limits.max_inputs,
            "auto_truncate": False,
            "tokenization_workers": anyio.to_thread.current_default_thread_limiter().total_tokens,
            "version": __version__,
            "sha": None,
            "docker_label": None,
            # not TEI's: what a client of this server may want to know
            "dimensions": model.dim,
            "fingerprint": model.identity,
        }
    )


def pooling(service: EmbeddingService) -> str:
    name = service.model.model.backbone.pooling
    return POOLING_NAMES.get(name, name)


def tei_routes() -> list[Route]:
    """TEI's routes. "/" is POST only: GET and HEAD / are other routes' (Starlette picks
    the route whose methods match, so both live side by side)."""
    return [
        Route("/embed", embed, methods=["POST"]),
        Route("/", root, methods=["POST"]),
        Route("/similarity", similarity, methods=["POST"]),
        Route("/tokenize", tokenize, methods=["POST"]),
        Route("/info", info, methods=["GET"]),
    ]
