"""The HTTP protocol of the server: request schema and limits, errors, response encoding.

OpenAI's /v1/embeddings request plus Jina's fields; errors in OpenAI's JSON shape.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from typing import Any

import numpy as np
from starlette.responses import JSONResponse

from ..tasks import API_TASKS

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
    request_timeout: float | None = 300.0  # seconds a request may take; then its work is dropped
    cache_limit: int = 256 * 2**20  # bytes of freed buffers MLX may keep for reuse
    read_timeout: float = 30.0  # seconds to receive a request's headers, and again its body
    max_connections: int = 128  # open sockets; more get 503 (macOS allows 256 files by default)


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
    model: str | None = None
    split_special_tokens: bool | None = None  # None: the server's default


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
        for i, text in enumerate(value):
            try:
                text.encode("utf-8")
            except UnicodeEncodeError as e:  # JSON may escape lone surrogates; text can't hold them
                raise ApiError(
                    400,
                    f"input[{i}] is not valid text: character {e.start} is a lone surrogate "
                    f"({text[e.start]!r}). Send UTF-8 text.",
                    param="input",
                ) from None
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
    model = _field(body, "model", str, "a string")
    _field(body, "user", str, "a string")
    task = _field(body, "task", str, "a string")
    if task is not None and task not in API_TASKS:
        raise ApiError(
            400, f"Unknown task {task!r}. Valid tasks: {', '.join(API_TASKS)}.", param="task"
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
    split = _field(body, "split_special_tokens", bool, "true or false")
    truncate = _field(body, "truncate", bool, "true or false")
    adapter, prompt_name = API_TASKS[task] if task else (None, None)
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
        model=model,
        split_special_tokens=split,
    )


def encode_vector(vec: np.ndarray, output: str) -> list | str:
    if output == "base64":
        # Little-endian float32, as the OpenAI SDK decodes it.
        return base64.b64encode(np.asarray(vec, dtype="<f4").tobytes()).decode("ascii")
    return vec.tolist()
