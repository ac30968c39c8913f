"""Ollama's embedding API, the parsing half: request bodies, model names and tags, and the
small shapes of its answers (times, details, errors).

Field names, types and statuses follow Ollama's api/types.go and server/routes.go: unknown
fields are ignored, `options` is accepted and ignored, `truncate` defaults to true, and
an empty `input` (or `prompt`) only loads the model. Errors are `{"error": "..."}`.
"""

from __future__ import annotations

import datetime
import json
import time
from dataclasses import dataclass
from typing import Any

from starlette.responses import JSONResponse

from .durations import FOREVER, keep_alive_seconds
from .protocol import ApiError, check_texts, is_a

# What GET /api/version answers. A plain "X.Y.Z": Open WebUI parses it as a tuple of ints
# and VS Code's Copilot compares it part by part (it wants 0.6.4 or later). 0.12.5 is the
# first Ollama release whose /api/embed behaves as this one does (`dimensions`, and
# `"truncate": false` refused with a 400), so a client that gates embedding features on
# a version finds them all, and none that this server lacks is claimed by a later number.
OLLAMA_VERSION = "0.12.5"
RUNNING = "Ollama is running"  # GET / and HEAD /, which Ollama's apps probe
# The tags a served model answers to: the document prompt, or the query prompt.
DOCUMENT_TAGS = ("latest", "document")
QUERY_TAG = "query"
# Go's time.Now().Add(math.MaxInt64): Ollama's expires_at for a model kept for good.
FOREVER_SECONDS = (2**63 - 1) / 1e9
NANOSECONDS = 1_000_000_000


def error_response(e: ApiError) -> JSONResponse:
    """An ApiError in Ollama's shape: {"error": message}, its status and headers."""
    return JSONResponse({"error": e.message}, e.status, headers=e.headers)


@dataclass(frozen=True)
class ModelName:
    """A `model` as sent, split into the served name and the prompt its tag asks for."""

    sent: str
    base: str
    tag: str | None  # None: no tag (the document prompt)

    @property
    def query(self) -> bool:
        return self.tag == QUERY_TAG


def split_tag(name: str) -> ModelName:
    """`org/name:tag` -> base `org/name`, tag `tag` (lower case, as Ollama's are)."""
    head, slash, last = name.rpartition("/")
    if ":" not in last:
        return ModelName(name, name, None)
    base, tag = last.rsplit(":", 1)
    return ModelName(name, head + slash + base, tag.lower())


def check_tag(name: ModelName) -> None:
    """A tag other than latest, document or query names no model here: Ollama's 404."""
    if name.tag is not None and name.tag not in (*DOCUMENT_TAGS, QUERY_TAG):
        raise ApiError(
            404,
            f'model "{name.sent}" not found: the tag {name.tag!r} is not served. Use '
            f'"{name.base}" (or :latest, :document) for documents and "{name.base}:query" '
            "for queries.",
        )


def model_field(body: dict, *, required: bool) -> str | None:
    """The body's `model` (Ollama's older `name` too); a missing one is a 400 if required."""
    value = body.get("model") or body.get("name")
    if value is None or value == "":
        if required:
            raise ApiError(
                400, "model is required: send \"model\": a name from GET /api/tags, with "
                ":query for queries.",
            )  # fmt: skip
        return None
    if not isinstance(value, str):
        raise ApiError(400, f"'model' must be a string, got {shown(value)}.")
    return value


def shown(value: Any) -> str:
    return json.dumps(value)[:60]


def typed(body: dict, key: str, kind: type, default: Any) -> Any:
    """`body[key]` checked for its JSON type; `default` when missing or null."""
    value = body.get(key)
    if value is None:
        return default
    if not is_a(value, kind):
        what = {bool: "true or false", int: "an integer", str: "a string", dict: "an object"}
        raise ApiError(400, f"'{key}' must be {what[kind]}, got {shown(value)}.")
    return value


def keep_alive_field(body: dict) -> float | None:
    """`keep_alive` in seconds (FOREVER, 0), or None for the model's default."""
    if body.get("keep_alive") is None:
        return None
    try:
        return keep_alive_seconds(body["keep_alive"])
    except ValueError as e:
        raise ApiError(400, str(e)) from None


@dataclass(frozen=True)
class EmbedBody:
    """A parsed /api/embed or /api/embeddings body."""

    model: ModelName
    texts: list[str]  # empty: only load (or, with keep_alive 0, unload) the model
    truncate: bool
    dimensions: int | None
    keep_alive: float | None


def request_body(body: Any) -> dict:
    if not isinstance(body, dict):
        raise ApiError(400, f"The request body must be a JSON object, got {shown(body)}.")
    typed(body, "options", dict, None)  # accepted and ignored, as model settings
    return body


def parse_embed(body: Any, max_inputs: int) -> EmbedBody:
    """POST /api/embed: `input` a string or a list of strings."""
    body = request_body(body)
    name = split_tag(model_field(body, required=True))
    texts = body.get("input")
    if texts is None or texts == "":
        texts = []
    elif isinstance(texts, str):
        texts = [texts]
    elif not isinstance(texts, list) or not all(isinstance(t, str) for t in texts):
        raise ApiError(
            400, f"invalid input type: 'input' must be a string or a list of strings, got "
            f"{shown(texts)}.",
        )  # fmt: skip
    if len(texts) > max_inputs:
        raise ApiError(
            400,
            f"'input' has {len(texts)} items; this server takes at most {max_inputs} per "
            "request (--max-inputs). Split the request.",
        )
    dimensions = typed(body, "dimensions", int, 0)
    if dimensions < 0:
        raise ApiError(400, f"dimensions={dimensions}; use a positive integer (or 0: all).")
    return EmbedBody(
        name, check_texts(texts) if texts else [], typed(body, "truncate", bool, True),
        dimensions or None, keep_alive_field(body),
    )  # fmt: skip


def parse_legacy(body: Any) -> EmbedBody:
    """POST /api/embeddings: one `prompt`; cut to the context, as /api/embed by default."""
    body = request_body(body)
    name = split_tag(model_field(body, required=True))
    prompt = typed(body, "prompt", str, "")
    texts = check_texts([prompt]) if prompt else []
    return EmbedBody(name, texts, True, None, keep_alive_field(body))


def show_name(body: Any) -> ModelName:
    """POST /api/show: the model asked about."""
    return split_tag(model_field(request_body(body), required=True))


# ---------------------------------------------------------------------------
# the answers' small shapes


def nanoseconds(seconds: float) -> int:
    return int(seconds * NANOSECONDS)


def rfc3339(seconds: float) -> str:
    """A time.time() as Go writes a time.Time: RFC 3339, local offset."""
    return datetime.datetime.fromtimestamp(seconds).astimezone().isoformat()


def expires_at(expires: float | None, keep_alive: float) -> str:
    """When a loaded model goes: its timer's time, else now plus its keep-alive, else (kept
    for good) Ollama's far-future date."""
    if expires is None:
        seconds = FOREVER_SECONDS if keep_alive == FOREVER else keep_alive
        expires = time.time() + seconds
    return rfc3339(expires)


def human_number(n: int) -> str:
    """A parameter count as Ollama writes it: 596.05M, 1.5B, 677M."""
    for scale, unit, places in ((1e9, "B", 1), (1e6, "M", 2)):
        if n >= scale:
            value = n / scale
            return f"{value:.0f}{unit}" if value == int(value) else f"{value:.{places}f}{unit}"
    return f"{n / 1e3:.0f}K" if n >= 1e3 else str(n)


def details(family: str, parameters: int, quantization: str) -> dict:
    """Ollama's ModelDetails for a model in safetensors files."""
    return {
        "parent_model": "",
        "format": "safetensors",
        "family": family,
        "families": [family] if family else [],
        "parameter_size": human_number(parameters) if parameters else "",
        "quantization_level": quantization,
    }
