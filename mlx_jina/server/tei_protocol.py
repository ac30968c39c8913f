"""Hugging Face text-embeddings-inference (TEI)'s API: its request bodies and its errors.

TEI's bodies become the server's own EmbeddingRequest, so they share its worker, batching,
limits and prompts. Its errors are `{"error": "...", "error_type": "..."}` with TEI's
statuses: 400 for an empty input or batch ("Empty") and for a body that is not JSON, 422
for every other bad input ("Validation": wrong types, unknown prompt, too long with
truncate false, too many inputs), 424 when the model fails to load or run ("Backend"),
429 or 503 when the queue is full or the models are busy ("Overloaded"). Statuses TEI
answers without a JSON body (401, 408, 413, 415) or never (504) keep the server's;
error_type is always one of TEI's.
"""

from __future__ import annotations

import json
from typing import Any

from starlette.responses import JSONResponse

from ..encoding.texts import text_problem
from .protocol import ApiError, EmbeddingRequest, is_a

EMPTY = "empty"  # ApiError.code of an empty input or batch
NOT_JSON = "not_json"  # ApiError.code of a body that is not JSON
# ApiError.code -> TEI's (status, error_type), where the status does not tell
CODES = {EMPTY: (400, "Empty"), NOT_JSON: (400, "Validation")}
# TEI's spelling first; its server takes the lower-case one too.
DIRECTIONS = {"Right": "right", "Left": "left", "right": "right", "left": "left"}
# the server's status -> TEI's, where they differ: a bad body is TEI's 422; a model that
# fails to load or run is its 424
STATUSES = {400: 422, 500: 424}


def tei_error(e: ApiError) -> JSONResponse:
    """An ApiError in TEI's shape and with TEI's status."""
    status = STATUSES.get(e.status, e.status)
    status, kind = CODES.get(e.code or "") or (status, error_type(status))
    return JSONResponse({"error": e.message, "error_type": kind}, status, headers=e.headers)


def error_type(status: int) -> str:
    if status in (429, 503):  # the queue is full, or every loaded model is busy
        return "Overloaded"
    return "Backend" if status >= 424 else "Validation"


def invalid(message: str) -> ApiError:
    return ApiError(422, message)


def empty(message: str) -> ApiError:
    return ApiError(400, message, code=EMPTY)


# ---------------------------------------------------------------------------
# fields


def body_object(body: Any, what: str) -> dict:
    if not isinstance(body, dict):
        raise invalid(f"The request body must be a JSON object with {what}, got {kind(body)}.")
    return body


def kind(value: Any) -> str:
    return "null" if value is None else json.dumps(value)[:60]


def option(body: dict, key: str, json_type: type, default: Any, where: str = "") -> Any:
    """body[key] checked for its JSON type; missing or null gives `default`."""
    value = body.get(key)
    if value is None:
        return default
    if not is_a(value, json_type):
        names = {bool: "true or false", int: "an integer", str: "a string"}
        raise invalid(f"'{where}{key}' must be {names[json_type]}, got {kind(value)}.")
    return value


def direction(body: dict, where: str = "") -> str:
    value = option(body, "truncation_direction", str, "Right", where)
    if value not in DIRECTIONS:
        raise invalid(
            f"'{where}truncation_direction' is {value!r}; use \"Right\" (cut the end of a long "
            'input, the default) or "Left" (cut its start; the prompt is kept).'
        )
    return DIRECTIONS[value]


def texts(value: Any, key: str, max_inputs: int) -> list[str]:
    """A string or a list of strings, each with content, at most `max_inputs`."""
    single = isinstance(value, str)
    items = [value] if single else value
    if not isinstance(items, list) or not all(isinstance(t, str) for t in items):
        raise invalid(f"'{key}' must be a string or a list of strings, got {kind(value)}.")
    check_batch(items, key, max_inputs)
    for i, text in enumerate(items):
        if problem := text_problem(text):
            where = key if single else f"{key}[{i}]"
            if not text.strip():
                raise empty(f"'{where}' {problem}; every input needs some text.")
            raise invalid(f"'{where}' {problem}.")
    return items


def check_batch(items: list, key: str, max_inputs: int) -> None:
    if not items:
        raise empty(f"'{key}' is an empty list; send at least one input.")
    if len(items) > max_inputs:
        raise invalid(
            f"batch size {len(items)} > maximum allowed batch size {max_inputs} (--max-inputs); "
            "split the request."
        )


def token_ids(value: Any, max_inputs: int) -> list[list[int]] | None:
    """TEI's pre-tokenized inputs (a list of ids, or a list of those), else None."""
    if not isinstance(value, list) or not value:
        return None
    rows = [value] if all(is_a(t, int) for t in value) else value
    if not all(isinstance(row, list) and row and all(is_a(t, int) for t in row) for row in rows):
        return None
    check_batch(rows, "inputs", max_inputs)
    return rows


# ---------------------------------------------------------------------------
# bodies


def embed_request(body: Any, max_inputs: int) -> EmbeddingRequest:
    """POST /embed: inputs, normalize, truncate, truncation_direction, prompt_name,
    dimensions (other keys are ignored, as TEI ignores them)."""
    body = body_object(body, '"inputs"')
    if "inputs" not in body:
        raise invalid("missing field 'inputs': send a string or a list of strings.")
    ids = token_ids(body["inputs"], max_inputs)
    return EmbeddingRequest(
        None if ids else texts(body["inputs"], "inputs", max_inputs),
        ids,
        normalized=option(body, "normalize", bool, True),
        truncate=option(body, "truncate", bool, False),
        truncation_direction=direction(body),
        named_prompt=option(body, "prompt_name", str, None),
        truncate_dim=option(body, "dimensions", int, None),
    )


def similarity_request(body: Any, max_inputs: int) -> EmbeddingRequest:
    """{"inputs": {"source_sentence", "sentences"}, "parameters": {truncate,
    truncation_direction, prompt_name}}: one request of the source, then the sentences."""
    body = body_object(body, '"inputs": {"source_sentence", "sentences"}')
    inputs = body.get("inputs")
    if not isinstance(inputs, dict):
        raise invalid(
            "'inputs' must be an object {\"source_sentence\": string, \"sentences\": [strings]}, "
            f"got {kind(inputs)}."
        )
    params = {} if body.get("parameters") is None else body["parameters"]
    if not isinstance(params, dict):
        raise invalid(f"'parameters' must be an object, got {kind(params)}.")
    source = inputs.get("source_sentence")
    if not isinstance(source, str):
        raise invalid(f"'inputs.source_sentence' must be a string, got {kind(source)}.")
    sentences = inputs.get("sentences")
    if isinstance(sentences, list) and not sentences:
        raise empty("'inputs.sentences' is an empty list; send at least one sentence.")
    if not isinstance(sentences, list):
        raise invalid(f"'inputs.sentences' must be a list of strings, got {kind(sentences)}.")
    check_batch([source, *sentences], "inputs", max_inputs)  # TEI counts the source too
    source = texts(source, "inputs.source_sentence", 1)
    return EmbeddingRequest(
        source + texts(sentences, "inputs.sentences", max_inputs),
        None,
        truncate=option(params, "truncate", bool, False, "parameters."),
        truncation_direction=direction(params, "parameters."),
        named_prompt=option(params, "prompt_name", str, None, "parameters."),
    )


def tokenize_request(body: Any, max_inputs: int) -> tuple[list[str], bool, str | None]:
    """POST /tokenize: (texts, add_special_tokens, prompt_name)."""
    body = body_object(body, '"inputs"')
    if "inputs" not in body:
        raise invalid("missing field 'inputs': send a string or a list of strings.")
    return (
        texts(body["inputs"], "inputs", max_inputs),
        option(body, "add_special_tokens", bool, True),
        option(body, "prompt_name", str, None),
    )


def is_similarity(body: Any) -> bool:
    """Whether a body sent to POST / is TEI's similarity one (inputs is an object)."""
    return isinstance(body, dict) and isinstance(body.get("inputs"), dict)
