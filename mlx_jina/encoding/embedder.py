"""Embedder: the user's API. Prompts and tasks, tokenization, then the engine (engine.py)."""

import inspect
import warnings
from itertools import islice
from typing import Iterable, Iterator

import mlx.core as mx
import numpy as np
from tokenizers import Encoding, Tokenizer

from ..models.decoder import Model
from .batching import EncodeStats, plan_batches
from .engine import Engine, InputTypeError
from .inputs import as_texts
from .progress import progress_bar
from .st_compat import STHabits, check_keywords, check_output_value, device_context
from .task_choice import TaskChoice
from .texts import check_texts
from .tokenizing import TextTokenizer


def as_output(emb: mx.array, single: bool, tensor: bool) -> np.ndarray | mx.array:
    """`finish`'s evaluated (n, dim) vectors as `encode` returns them: numpy takes one
    copy to the host and no further sync; a single text's is row 0."""
    if not tensor:
        out = np.array(emb)
        return out[0] if single else out
    emb = emb[0] if single else emb
    mx.eval(emb)
    return emb


class Embedder(TaskChoice, STHabits):
    """A loaded jina-embeddings-v5-text model. Build it with `mlx_jina.load`."""

    def __init__(
        self,
        model: Model,
        tokenizer: Tokenizer,
        *,
        task: str | None,
        tasks: tuple[str, ...],
        prompts: dict[str, str],
        default_prompt_name: str,
        max_length: int,
        source: str,
        multitask: bool = False,
        revision: str | None = None,
        truncate_dim: int | None = None,
        identity: str | None = None,
        identity_parts: dict[str, str] | None = None,
    ):
        self.model = model
        self.engine = Engine(model, max_length)
        self.tokenizer = tokenizer
        self.source = source
        self.revision = revision  # the Hub commit, when known; embedding fingerprints record it
        # What the model computes, by content (checkpoint/identity.py): compared wherever two
        # runs, ranks, files or collections must agree; the source is only for people.
        self.identity = identity
        self.identity_parts = identity_parts  # a digest per part: says where two differ
        self._task, self._tasks = task, tuple(tasks)
        # Multitask: adapters unmerged, `task` is only the default for encode(task=...).
        self.multitask = multitask
        self._prompts, self.default_prompt_name = dict(prompts), default_prompt_name
        self._max_length = max_length
        self._text_tokenizer = TextTokenizer(tokenizer)  # its own copies: `tokenizer` is not changed
        # Batches, tokens, padding and time of the latest encode call (any thread's).
        self.last_stats: EncodeStats | None = None
        self.truncate_dim = truncate_dim  # checked: 32 to dim, or None

    @property
    def dim(self) -> int:
        return self.model.args.hidden_size

    @property
    def max_length(self) -> int:
        """The model's context in tokens, the default for `encode(max_length=)`."""
        return self._max_length

    @property
    def task(self) -> str | None:
        return self._task

    @property
    def tasks(self) -> tuple[str, ...]:
        return self._tasks

    def __repr__(self) -> str:
        return (
            f"Embedder(source={self.source!r}, task={self._task!r}, dim={self.dim}, "
            f"max_length={self._max_length}, dtype={self.model.norm.weight.dtype})"
        )

    def tokenize(
        self,
        texts: list[str],
        max_length: int | None = None,
        truncate: bool = True,
        split_special_tokens: bool = False,
    ) -> list[list[int]]:
        """Token ids per text, special tokens as tokenizer.json's post-processor adds them.

        Inputs over `max_length` tokens are cut (keeping the special tokens) with a warning
        that counts them, or raise when `truncate=False`. With `split_special_tokens`, a
        special token's text inside an input ("<|endoftext|>") is tokenized as plain text.
        """
        max_length = self._check_max_length(max_length)
        ids, cut = self.tokenize_and_cut(texts, max_length, split_special_tokens)
        if cut and not truncate:
            raise ValueError(
                f"{len(cut)} of {len(texts)} inputs are longer than max_length={max_length} "
                f"tokens (first: input {cut[0]}). Shorten or split them, or pass truncate=True."
            )
        if cut:
            warnings.warn(
                f"{len(cut)} of {len(texts)} inputs were longer than max_length={max_length} "
                f"tokens and were truncated (first: input {cut[0]}).",
                stacklevel=3,
            )
        if empty := [i for i, row in enumerate(ids) if not row]:
            raise ValueError(
                f"Input {empty[0]} has no tokens (empty text and no prompt). Pass non-empty text."
            )
        return ids

    def tokenize_and_cut(
        self,
        texts: list[str],
        max_length: int | None = None,
        split_special_tokens: bool = False,
        *,
        direction: str = "right",
        prompt_chars: int = 0,
    ) -> tuple[list[list[int]], list[int]]:
        """Token ids per text, cut to `max_length`, and the indices of the texts cut; no
        warning (the caller reports cuts). `direction` "left" keeps a long text's end, and
        still its first `prompt_chars` characters (the caller's prompt) and special tokens."""
        max_length = self._check_max_length(max_length)
        if not isinstance(split_special_tokens, bool):
            raise InputTypeError(
                f"split_special_tokens={split_special_tokens!r}; use True or False."
            )
        if direction not in ("right", "left") or type(prompt_chars) is not int or prompt_chars < 0:
            raise ValueError(f"direction={direction!r}, prompt_chars={prompt_chars!r}; use "
                             "'right' or 'left', and an integer >= 0.")  # fmt: skip
        # Tokenized by prefix and without a lock: a huge text costs what its cut keeps, and
        # does not hold up other threads' texts (tokenizing.py).
        return self._text_tokenizer.encode(
            texts, max_length, split_special_tokens, direction, prompt_chars
        )

    def encodings(self, texts: list[str], special: bool, split: bool) -> list[Encoding]:
        """Each text's whole Encoding; `special`: add special tokens; `split`: see tokenize."""
        return self._text_tokenizer.copy(split).encode_batch(texts, add_special_tokens=special)

    def _check_max_length(self, max_length: int | None) -> int:
        if max_length is None:
            return self.max_seq_length
        if (
            isinstance(max_length, bool)
            or not isinstance(max_length, int)
            or not 1 <= max_length <= self._max_length
        ):
            raise ValueError(
                f"max_length={max_length!r}; use an integer from 1 to the model's context "
                f"of {self._max_length} tokens."
            )
        return max_length

    def encode(
        self,
        sentences: str | list[str],
        *,
        prompt_name: str | None = None,
        prompt: str | None = None,
        batch_size: int = 32,
        truncate_dim: int | None = None,
        normalize_embeddings: bool = True,
        max_length: int | None = None,
        precision: str = "float32",
        show_progress_bar: bool | None = None,
        convert_to_numpy: bool = True,
        convert_to_tensor: bool = False,
        output_value: str | None = "sentence_embedding",
        device: str | None = None,
        max_batch_tokens: int = 8192,
        truncate: bool = True,
        task: str | None = None,
        split_special_tokens: bool = False,
        **unsupported,
    ) -> np.ndarray | mx.array | list:
        """Embed one text or a list of texts (each non-blank, valid Unicode); a tuple, a
        1-D numpy array of strings or a generator works as a list. See README.

        prompt_name: "query" or "document" (default: the model's); prompt: a literal prefix
        that wins. batch_size / max_batch_tokens: most inputs / padded tokens per forward
        pass. truncate_dim: Matryoshka size (default: the model's `truncate_dim`).
        max_length: tokens per input (default `max_seq_length`); truncate=False raises
        instead of cutting. precision: "float32", "float16", "int8", "uint8", "binary",
        "ubinary". show_progress_bar: True, False, None (a bar for large jobs on a
        terminal), or a function called with the count of each finished batch.
        convert_to_tensor=True (or convert_to_numpy=False): `mx.array`.
        output_value="token_embeddings": each text's final hidden states `(n_tokens,
        hidden)`, before pooling. device: None, "cpu", "gpu" (or "mps", "cuda").
        task: an adapter or Jina API task name (which picks the prompt too).

        Returns `(dim,)` for a string, `(n, dim)` for a list; `last_stats` describes the call.
        """
        check_keywords("encode", unsupported, self._encode_parameters)
        single, texts = as_texts(sentences)
        check_texts(texts)
        tokens = check_output_value(output_value) == "token_embeddings"
        tensor = convert_to_tensor or not convert_to_numpy
        with device_context(device):
            task, prompt_name = self.resolve_task_prompt(task, prompt_name, prompt)
            texts = [self.resolve_prompt(prompt_name, prompt, task) + t for t in texts]
            ids = self.tokenize(texts, max_length, truncate, split_special_tokens) if texts else []
            if tokens:
                rows = self.token_embeddings(ids, batch_size, max_batch_tokens, precision, task,
                                             show_progress_bar)  # fmt: skip
                rows = rows if tensor else [np.array(row) for row in rows]
                return rows[0] if single else rows
            emb = self.encode_ids(
                ids, batch_size=batch_size, truncate_dim=truncate_dim,
                normalize_embeddings=normalize_embeddings, precision=precision,
                show_progress_bar=show_progress_bar, convert_to_numpy=False,
                max_batch_tokens=max_batch_tokens, task=task,
            )  # fmt: skip
            return as_output(emb, single, tensor)

    def _encode_parameters(self) -> list[str]:
        return [p for p in inspect.signature(self.encode).parameters if p != "unsupported"]

    def token_embeddings(
        self,
        ids: list[list[int]],
        batch_size: int,
        max_batch_tokens: int,
        precision: str,
        task: str | None,
        show_progress_bar: bool | None = None,
    ) -> list[mx.array]:
        """Per-token final hidden states, float32, one `(len(row), hidden)` per row."""
        if precision != "float32":
            raise ValueError(
                f"precision={precision!r} applies to sentence embeddings; token embeddings "
                "are float32 hidden states."
            )
        self._check_batching(batch_size, max_batch_tokens)
        self.engine.check_ids(ids)
        if not ids:
            return []
        plan = plan_batches([len(row) for row in ids], batch_size, max_batch_tokens)
        out, self.last_stats = self.engine.run(ids, plan, task, show_progress_bar, tokens=True)
        return out

    @staticmethod
    def _check_batching(batch_size: int, max_batch_tokens: int) -> None:
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size={batch_size!r}; use a positive integer.")
        if not isinstance(max_batch_tokens, int) or max_batch_tokens < 1:
            raise ValueError(f"max_batch_tokens={max_batch_tokens!r}; use a positive integer.")

    def encode_ids(
        self,
        ids: list[list[int]],
        *,
        batch_size: int = 32,
        truncate_dim: int | None = None,
        normalize_embeddings: bool = True,
        precision: str = "float32",
        show_progress_bar: bool | None = None,
        convert_to_numpy: bool = True,
        max_batch_tokens: int = 8192,
        task: str | None = None,
    ) -> np.ndarray | mx.array:
        """Embed pre-tokenized inputs, each row fed as it is: no prompt, no special tokens.

        `encode` is `tokenize` plus this; the server uses it to batch across requests.
        Arguments as in `encode`. Returns `(len(ids), dim)` in input order.
        """
        self._check_batching(batch_size, max_batch_tokens)
        truncate_dim = self._dims(truncate_dim)
        task = self.validate(ids, task=task, truncate_dim=truncate_dim, precision=precision)
        if ids:
            plan = plan_batches([len(row) for row in ids], batch_size, max_batch_tokens)
            emb, self.last_stats = self.engine.run(ids, plan, task, show_progress_bar)
        else:
            emb = mx.zeros((0, self.dim), dtype=mx.float32)
        emb = self.finish(
            emb,
            truncate_dim=truncate_dim,
            normalize_embeddings=normalize_embeddings,
            precision=precision,
        )
        return np.array(emb) if convert_to_numpy else emb

    def _dims(self, truncate_dim: int | None) -> int | None:
        """The call's Matryoshka size: its own, else the model's default."""
        return self._truncate_dim if truncate_dim is None else truncate_dim

    def validate(
        self,
        ids: list[list[int]],
        *,
        task: str | None = None,
        truncate_dim: int | None = None,
        precision: str = "float32",
    ) -> str | None:
        """Check `encode_ids` arguments before any work; returns the task to run with."""
        self.engine.check(ids, self._dims(truncate_dim), precision)
        return self.resolve_task(task)

    def embed_batch(self, ids: list[list[int]], task: str | None = None) -> mx.array:
        """Pooled float32 vectors of ONE forward pass over `ids` (graph only). The server's
        worker gathers rows of several requests into one, then calls `finish` per request."""
        return self.engine.embed_batch(ids, task)

    def finish(self, emb: mx.array, **options) -> mx.array:
        """Pooled vectors to output (`truncate_dim`, default the model's; `normalize_embeddings`,
        `precision`)."""
        options["truncate_dim"] = self._dims(options.get("truncate_dim"))
        return self.engine.finish(emb, **options)

    def encode_iter(
        self, sentences: Iterable[str], *, chunk_size: int = 1024, **kwargs
    ) -> Iterator[np.ndarray | mx.array]:
        """Embed a stream of texts chunk by chunk, for corpora too big to hold at once.

        Args:
            sentences: Any iterable of strings (a list, a file's lines, a generator),
                read `chunk_size` texts at a time.
            chunk_size: Texts per chunk. Larger chunks batch more evenly.
            **kwargs: As in `encode` (`prompt_name`, `truncate_dim`, `task`, ...).

        Yields:
            One `(n, dim)` array per chunk, chunks and rows in input order; joined, they
            equal `encode(list(sentences), **kwargs)`.
        """
        if isinstance(sentences, str):
            raise InputTypeError("sentences must be an iterable of strings, not a str.")
        if not isinstance(chunk_size, int) or chunk_size < 1:
            raise ValueError(f"chunk_size={chunk_size!r}; use a positive integer.")
        show = kwargs.pop("show_progress_bar", None)
        total = len(sentences) if hasattr(sentences, "__len__") else None
        bar = progress_bar(total, show, total is None or total > chunk_size)
        it, start = iter(sentences), 0
        try:
            while chunk := list(islice(it, chunk_size)):
                as_texts(chunk, first=start)
                check_texts(chunk, first=start)  # the index in the whole stream
                yield self.encode(chunk, show_progress_bar=False, **kwargs)
                start += len(chunk)
                if bar is not None:
                    bar.update(len(chunk))
        finally:
            if bar is not None:
                bar.close()

    @staticmethod
    def set_cache_limit(limit_bytes: int) -> int:
        """Cap MLX's buffer cache, for the whole process; returns the previous limit.

        MLX keeps freed buffers for reuse. `encode` empties the cache after large jobs;
        a limit also bounds it between them (0 turns caching off).
        """
        if not isinstance(limit_bytes, int) or limit_bytes < 0:
            raise ValueError(f"limit_bytes={limit_bytes!r}; use an integer >= 0.")
        return mx.set_cache_limit(limit_bytes)

    def encode_query(
        self,
        sentences: str | list[str],
        *,
        prompt_name: str | None = None,
        prompt: str | None = None,
        **kwargs,
    ) -> np.ndarray | mx.array:
        """`encode` with the "query" prompt ("Query: " for retrieval); as in
        sentence-transformers, a `prompt_name` or `prompt` you pass wins."""
        return self._encode_with("query", sentences, prompt_name, prompt, kwargs)

    def encode_document(
        self,
        sentences: str | list[str],
        *,
        prompt_name: str | None = None,
        prompt: str | None = None,
        **kwargs,
    ) -> np.ndarray | mx.array:
        """`encode` with the "document" prompt ("Document: "); as in
        sentence-transformers, a `prompt_name` or `prompt` you pass wins."""
        return self._encode_with("document", sentences, prompt_name, prompt, kwargs)

    def _encode_with(self, default: str, sentences, prompt_name, prompt, kwargs: dict):
        if prompt_name is None and prompt is None:
            prompt_name = default
        return self.encode(sentences, prompt_name=prompt_name, prompt=prompt, **kwargs)
