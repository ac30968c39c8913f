"""The HTTP protocol of the server: errors, the request schema, response encoding.

OpenAI's /v1/embeddings request plus Jina's fields (and Voyage's and Cohere's
`input_type`); errors in OpenAI's JSON shape.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Collection
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np
from starlette.responses import JSONResponse

from ..encoding.texts import check_texts as the_rule
from ..retrieval.precision import TABLE as PRECISION_TABLE
from ..tasks import TASK_NAMES, parse_task

# embedding_type / encoding_format -> Embedder precision, from the one Precision table.
EMBEDDING_TYPES = {api: p.name for p in PRECISION_TABLE.values() for api in p.api_names}
ENCODING_FORMATS = PRECISION_TABLE["float32"].api_names  # float vectors, as JSON or base64
# input_type -> prompt name: Voyage's spelling, then Cohere's search ones.
INPUT_TYPES = {
    "query": "query",
    "document": "document",
    "search_query": "query",
    "search_document": "document",
}


def error_body(message: str, kind: str, param: str | None = None, code: str | None = None) -> dict:
    """An error in OpenAI's JSON shape, plus Jina's `detail`."""
    error = {"message": message, "type": kind, "param": param, "code": code}
    return {"error": error, "detail": message}


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
        body = error_body(self.message, kind, self.param, self.code)
        return JSONResponse(body, self.status, headers=self.headers)


class ClientGone(Exception):
    """The client went away before its answer was ready."""


# ---------------------------------------------------------------------------
# the request schema

JSON_TYPES = {str: "a string", int: "an integer", bool: "true or false"}


@dataclass(frozen=True)
class BodyKey:
    """How a field of EmbeddingRequest is read from the JSON body."""

    kind: type  # a key of JSON_TYPES
    key: str | None = None  # the JSON key, where it is not the field's name
    aliases: tuple[str, ...] = ()  # other keys for the same value; they must agree
    choices: Collection[str] = ()  # the values accepted, if not all of `kind`
    refusal: str = ""  # the error for a value not in `choices`; {value!r} shows it


def body_field(kind: type, default: Any = None, **how: Any) -> Any:
    return field(default=default, metadata={"body": BodyKey(kind, **how)})


@dataclass
class EmbeddingRequest:
    """A validated /v1/embeddings body, and the schema of the body's fields.

    `input` is parsed apart (parse_input) into `texts` or `ids`. Each other field is read
    from its JSON key, in this order, checked for its JSON type and `choices`, and takes
    its default when missing or null. A new request field is one line here.
    """

    texts: list[str] | None
    ids: list[list[int]] | None
    model: str | None = body_field(str)
    user: str | None = body_field(str)  # accepted, unused
    task: str | None = body_field(
        str,
        choices=TASK_NAMES,
        refusal=f"Unknown task {{value!r}}. Valid tasks: {', '.join(TASK_NAMES)}.",
    )
    # Voyage's and Cohere's field for the prompt; see prompts.py.
    input_type: str | None = body_field(
        str,
        choices=INPUT_TYPES,
        refusal=f"input_type={{value!r}}; use one of {', '.join(INPUT_TYPES)}.",
    )
    # OpenAI's name, and the Python API's (Jina's API also says dimensions).
    truncate_dim: int | None = body_field(int, key="dimensions", aliases=("truncate_dim",))
    encoding_format: str | None = body_field(
        str,
        choices=ENCODING_FORMATS,
        refusal=f"encoding_format={{value!r}}; use {' or '.join(ENCODING_FORMATS)}.",
    )
    embedding_type: str | None = body_field(
        str,
        choices=EMBEDDING_TYPES,
        refusal=f"embedding_type={{value!r}}; use one of {', '.join(EMBEDDING_TYPES)}.",
    )
    normalized: bool = body_field(bool, True)
    split_special_tokens: bool | None = body_field(bool)  # None: the server's default
    # Jina's API and OpenAI's refuse over-long inputs unless told to cut them.
    truncate: bool = body_field(bool, False)
    # Not a body field: Ollama's routes set it. Inputs that already start with one of the
    # model's prompts ("Query: ", "Document: ") are embedded as sent, so an app that adds
    # the prompt itself never gets it twice. OpenAI's route adds its prompt to every input.
    skip_prompted: bool = False
    # Set by other APIs' bodies (TEI's), never read from this one: which end a cut keeps
    # ("right" cuts the end; "left" the start, after the prompt), and a prompt by name.
    truncation_direction: str = "right"
    named_prompt: str | None = None

    @property
    def adapter(self) -> str | None:
        """The task's adapter; None: the server's default task."""
        return parse_task(self.task)[0] if self.task else None

    @property
    def prompt_name(self) -> str | None:
        """The prompt the task names (None for a bare adapter name, or no task)."""
        return parse_task(self.task)[1] if self.task else None

    @property
    def output(self) -> str:
        """float | base64 | binary | ubinary | int8"""
        # The OpenAI SDK always sends encoding_format, so Jina's embedding_type wins.
        return self.embedding_type or self.encoding_format or "float"


def is_a(value: Any, kind: type) -> bool:
    # bool is an int in Python, but JSON true is not a number.
    return isinstance(value, kind) and (kind is bool or not isinstance(value, bool))


def read_field(body: dict, name: str, default: Any, spec: BodyKey) -> Any:
    sent = {k: body[k] for k in (spec.key or name, *spec.aliases) if body.get(k) is not None}
    if not sent:
        return default
    if len({json.dumps(v) for v in sent.values()}) > 1:
        said = " and ".join(f"{k!r}={json.dumps(v)[:20]}" for k, v in sent.items())
        raise ApiError(400, f"{said} disagree; send one of them.", param=next(iter(sent)))
    name, value = next(iter(sent.items()))
    if not is_a(value, spec.kind):
        raise ApiError(
            400,
            f"'{name}' must be {JSON_TYPES[spec.kind]}, got {json.dumps(value)[:60]}.",
            param=name,
        )
    if spec.choices and value not in spec.choices:
        raise ApiError(400, spec.refusal.format(value=value), param=name)
    return value


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
    if all(is_a(x, int) for x in value):
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
        return check_texts(value), None
    if all(isinstance(x, list) for x in value):
        for i, row in enumerate(value):
            if not row or not all(is_a(t, int) for t in row):
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


def check_texts(texts: list[str]) -> list[str]:
    """The one rule for texts (encoding/texts.py), and its words, as in Python and the CLI."""
    try:
        the_rule(texts, "input")
    except ValueError as e:
        raise ApiError(400, str(e), param="input") from None
    return texts


def parse_request(body: Any, max_inputs: int) -> EmbeddingRequest:
    if not isinstance(body, dict):
        raise ApiError(400, "The request body must be a JSON object.")
    texts, ids = parse_input(body.get("input"), max_inputs)
    values = {
        f.name: read_field(body, f.name, f.default, f.metadata["body"])
        for f in fields(EmbeddingRequest)
        if "body" in f.metadata
    }
    return EmbeddingRequest(texts, ids, **values)


# ---------------------------------------------------------------------------
# the response


def embedding_response(vectors: np.ndarray, output: str, model: str, tokens: int) -> dict:
    return {
        "object": "list",
        "data": [
            {"object": "embedding", "index": i, "embedding": encode_vector(v, output)}
            for i, v in enumerate(vectors)
        ],
        "model": model,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }


def encode_vector(vec: np.ndarray, output: str) -> list | str:
    if output == "base64":
        # Little-endian float32, as the OpenAI SDK decodes it.
        return base64.b64encode(np.asarray(vec, dtype="<f4").tobytes()).decode("ascii")
    return vec.tolist()
