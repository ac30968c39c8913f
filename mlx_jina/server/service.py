"""EmbeddingService: a parsed request becomes a worker job, and the job's vectors a response."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

from starlette.concurrency import run_in_threadpool

from ..encoding.embedder import Embedder
from ..tasks import MIN_DIM, TASK_NAMES, parse_task
from .prompts import QUERY_SUFFIX, requested_prompt, split_model_id
from .protocol import (
    EMBEDDING_TYPES,
    ApiError,
    ClientGone,
    EmbeddingRequest,
    embedding_response,
    parse_request,
)
from .worker import DeadlineExceeded, Job, QueueFull, Worker


log = logging.getLogger("mlx_jina.server")
# Responses whose inputs were cut to the context say how many in this header.
TRUNCATED_HEADER = "X-Truncated-Inputs"
# ... and how many inputs came with a prompt already, embedded as sent (Ollama's routes).
PROMPTED_HEADER = "X-Inputs-Already-Prompted"


@dataclass(frozen=True)
class Embedded:
    """A response body in OpenAI's shape, the inputs cut to the context, tokens, and the
    inputs that came with one of the model's prompts (embedded as sent)."""

    body: dict
    truncated: int
    tokens: int
    prompted: int = 0

    def headers(self) -> dict[str, str]:
        counts = {TRUNCATED_HEADER: self.truncated, PROMPTED_HEADER: self.prompted}
        return {name: str(n) for name, n in counts.items() if n}


def serves(model: Embedder, adapter: str) -> bool:
    # A merged model whose task we can't tell (task None) takes every task's prompts.
    return adapter in model.tasks if model.multitask else model.task in (adapter, None)


class EmbeddingService:
    """Turns a parsed request into a worker job and the job's result into a response."""

    def __init__(
        self,
        worker: Worker,
        model_name: str,
        split_special_tokens: bool = False,
        accept_token_ids: bool = False,
    ):
        self.worker, self.model_name = worker, model_name
        self.split_special_tokens = split_special_tokens
        self.accept_token_ids = accept_token_ids
        # A repo id "org/name" is also asked for by its name alone.
        self.model_names = {model_name, model_name.rsplit("/", 1)[-1]}
        self.model = worker.model
        # Requests without a task use the loaded (or --task) adapter, else the first one.
        self.default_task = self.model.task or (self.model.tasks or (None,))[0]
        self.created = int(time.time())

    def model_info(self) -> list[dict]:
        """The model as GET /v1/models lists it: its name for documents and, where the
        default task has a query prompt of its own, `<name>:query` for queries."""
        facts = {
            "object": "model",
            "created": self.created,
            "owned_by": "jinaai",
            "tasks": [t for t in TASK_NAMES if serves(self.model, parse_task(t)[0])],
            "dimensions": self.model.dim,
            "max_input_tokens": self.model.max_length,
            "fingerprint": self.model.identity,  # the content identity, for clients to compare
        }
        listed = [{"id": self.model_name, **facts, "input_type": "document"}]
        if self.distinct_query_prompt():
            listed.append({"id": self.model_name + QUERY_SUFFIX, **facts, "input_type": "query"})
        return listed

    def distinct_query_prompt(self) -> bool:
        resolve = self.model.resolve_prompt
        try:
            return resolve("query", None, self.default_task) != resolve(
                "document", None, self.default_task
            )
        except ValueError:  # a folder's prompts without a query one
            return False

    def pick_task(self, adapter: str | None) -> str | None:
        if adapter is None:
            return self.default_task
        if serves(self.model, adapter):
            return adapter
        loaded = self.model.tasks if self.model.multitask else (self.model.task,)
        accepted = [t for t in TASK_NAMES if parse_task(t)[0] in loaded]
        raise ApiError(
            400,
            f"This server runs the {', '.join(map(repr, loaded))} adapter, not {adapter!r}. "
            f"Tasks it accepts: {', '.join(accepted)}. Start it with --multitask or "
            f"--task {adapter} to serve that task.",
            param="task",
        )

    def prompt(self, req: EmbeddingRequest, query_model: bool, task: str | None) -> str:
        """The prompt text for the request's texts: its task, input_type or model id."""
        name = requested_prompt(req, query_model)  # checks that the choices agree
        if req.ids is not None:
            asks = {"input_type": req.input_type, "prompt_name": req.named_prompt,
                    "model": query_model}  # fmt: skip
            if asked := [key for key, value in asks.items() if value]:  # they'd be ignored
                raise ApiError(
                    400,
                    "Token ids are embedded as sent, without a prompt, so neither input_type, "
                    f"prompt_name nor the {QUERY_SUFFIX!r} model id can pick one. Put the "
                    "prompt's tokens in the ids and drop them, or send text.",
                    param=asked[0],
                )
            return ""
        try:
            return self.model.resolve_prompt(name, None, task)
        except ValueError as e:
            raise ApiError(400, str(e), param="input_type") from None

    def token_rows(self, req: EmbeddingRequest, prompt: str) -> tuple[list[list[int]], int]:
        """The request's token ids, and how many inputs were cut to the context."""
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
                # ids are embedded as sent: no prompt, no specials
                rows.append(row[-limit:] if req.truncation_direction == "left" else row[:limit])
            return rows, sum(len(row) > limit for row in req.ids)
        split = req.split_special_tokens
        split = self.split_special_tokens if split is None else split
        sent = self.already_prompted(req)
        texts = [t if as_sent else prompt + t for t, as_sent in zip(req.texts, sent)]
        try:
            if not req.truncate:
                return model.tokenize(texts, None, False, split), 0
            rows, cut = model.tokenize_and_cut(
                texts, None, split, direction=req.truncation_direction, prompt_chars=len(prompt)
            )
        except ValueError as e:
            raise ApiError(
                400,
                f"{e} Over the limit of {limit} tokens per input (the model's context, "
                'prompt included); send "truncate": true to cut them instead.',
                param="input",
                code="context_length_exceeded",
            ) from None
        if empty := [i for i, row in enumerate(rows) if not row]:
            raise ApiError(400, f"input[{empty[0]}] has no tokens; send non-empty text.")
        if cut:  # never silent: the log says it, and the response's header
            log.warning(
                "%d of %d inputs were longer than %d tokens and were cut (first: input %d).",
                len(cut), len(texts), model.max_length, cut[0],
            )  # fmt: skip
        return rows, len(cut)

    def already_prompted(self, req: EmbeddingRequest) -> list[bool]:
        """Per text, whether it is embedded as sent because it starts with one of the
        model's prompts; only where the request asks (`skip_prompted`, Ollama's routes)."""
        if req.texts is None:
            return []
        prompts = tuple(p for p in self.model.prompts_for(None).values() if p)
        if not req.skip_prompted or not prompts:
            return [False] * len(req.texts)
        return [t.startswith(prompts) for t in req.texts]

    def check_dimensions(self, req: EmbeddingRequest) -> None:
        dim = self.model.dim
        if req.truncate_dim is not None and not MIN_DIM <= req.truncate_dim <= dim:
            raise ApiError(
                400,
                f"dimensions={req.truncate_dim}; use an integer from {MIN_DIM} to {dim}.",
                param="dimensions",
            )

    def check_model(self, name: str | None) -> bool:
        """Whether the model id asks for queries (`<name>:query`); other ids are a 404."""
        if name is None or name in self.model_names:
            return False
        base, query = split_model_id(name)
        if base in self.model_names:
            return query
        served = " and ".join(repr(m["id"]) for m in self.model_info())
        raise ApiError(
            404,
            f"The model {name!r} does not exist on this server; it serves {served}. "
            "Send one of those (see GET /v1/models).",
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
        return (await self.embed_request(req, disconnected=disconnected, deadline=deadline)).body

    async def embed_request(
        self,
        req: EmbeddingRequest,
        *,
        disconnected: Callable[[], Awaitable[None]] | None = None,
        deadline: float | None = None,
    ) -> Embedded:
        """embed() of a parsed request, with the count of inputs cut to the context."""
        if req.ids is not None and not self.accept_token_ids:
            raise token_ids_refused()
        query_model = self.check_model(req.model)
        task = self.pick_task(req.adapter)
        prompt = self.prompt(req, query_model, task)
        self.check_dimensions(req)
        if self.worker.full():  # refuse before paying for tokenization
            raise queue_full()
        rows, truncated = await run_in_threadpool(self.token_rows, req, prompt)
        job = Job(
            task, rows, req.truncate_dim, req.normalized, EMBEDDING_TYPES[req.output],
            deadline=deadline,
        )
        try:
            future = self.worker.submit(job)
        except QueueFull:
            raise queue_full() from None
        try:
            vectors = await wait_for_job(job, future, disconnected)
        except ValueError as e:
            raise ApiError(400, str(e)) from None
        except DeadlineExceeded as e:
            raise ApiError(504, str(e), code="deadline_exceeded") from None
        tokens = job.tokens
        self.worker.metrics.embedded(len(rows), tokens)
        name = self.model_name + (QUERY_SUFFIX if query_model else "")
        body = embedding_response(vectors, req.output, name, tokens)
        return Embedded(body, truncated, tokens, self.count_prompted(req))

    def count_prompted(self, req: EmbeddingRequest) -> int:
        if n := sum(self.already_prompted(req)):  # never silent: the log and a header say it
            log.info(
                "%d of %d inputs already start with one of the model's prompts; embedded "
                "as sent, without a second prompt.", n, len(req.texts),
            )  # fmt: skip
        return n


def token_ids_refused() -> ApiError:
    # OpenAI clients tokenize with tiktoken; those ids mean other words to this model.
    return ApiError(
        400,
        "'input' holds token ids, which this server refuses by default: OpenAI clients send "
        "OpenAI's tiktoken (cl100k) ids, which are other words to this model and give wrong "
        "vectors. Send the texts instead (LangChain's OpenAIEmbeddings: pass "
        "check_embedding_ctx_length=False). A client that sends this model's own token ids "
        "(from its tokenizer.json, prompt included) needs the server started with "
        "--accept-token-ids.",
        param="input",
        code="token_ids_refused",
    )


def queue_full() -> ApiError:
    return ApiError(
        429,
        "The server's queue is full (--max-queue); retry after a second.",
        code="queue_full",
        headers={"Retry-After": "1"},
    )


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
