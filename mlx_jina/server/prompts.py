"""Which prompt a request asks for: its `task`, its `input_type`, or a `<name>:query` model id.

OpenAI-compatible clients (LangChain, LlamaIndex, Chroma) send the same request for a
query as for a document; all they can vary is the model id. So each served model is
also listed as `<name>:query`, which asks for the query prompt of the request's task.
Voyage's and Cohere's clients send `input_type`; Jina's send an API task name. Two of
these that disagree are a 400 naming both, never a silent pick.
"""

from __future__ import annotations

from .protocol import INPUT_TYPES, ApiError, EmbeddingRequest

QUERY_SUFFIX = ":query"


def split_model_id(name: str) -> tuple[str, bool]:
    """`<name>:query` -> (name, True); any other id -> (id, False)."""
    if name.endswith(QUERY_SUFFIX):
        return name[: -len(QUERY_SUFFIX)], True
    return name, False


def requested_prompt(req: EmbeddingRequest, query_model: bool) -> str | None:
    """The prompt name the request asks for ("query" or "document"), or None: the default.

    A bare adapter name as `task` asks for none; a Jina API task name may.
    """
    asks: list[tuple[str, str, str]] = []  # (prompt name, what said so, its field)
    if req.prompt_name is not None:
        asks.append((req.prompt_name, f"task={req.task!r}", "task"))
    if req.named_prompt is not None:
        asks.append((req.named_prompt, f"prompt_name={req.named_prompt!r}", "prompt_name"))
    if req.input_type is not None:
        asks.append((INPUT_TYPES[req.input_type], f"input_type={req.input_type!r}", "input_type"))
    if query_model:
        asks.append(("query", f"model={req.model!r}", "model"))
    for name, said, param in asks[1:]:
        first_name, first_said, _ = asks[0]
        if name != first_name:
            raise ApiError(
                400,
                f"{first_said} asks for the {first_name} prompt but {said} for the {name} "
                "prompt; send only one of them.",
                param=param,
            )
    return asks[0][0] if asks else None
