"""Embedder: the user's API. Prompts and tasks, tokenization, then the engine (engine.py)."""

import atexit
import threading
import warnings
from itertools import islice
from typing import Iterable, Iterator

import mlx.core as mx
import numpy as np
from tokenizers import Tokenizer

from ..models.decoder import Model
from ..tasks import task_prompts
from .batching import EncodeStats, plan_batches
from ..retrieval.precision import normalize
from .engine import Engine, InputTypeError, progress_bar

# MLX used from a thread other than the main one (the server's worker, a thread pool)
# can abort the process at exit, "terminate called without an active exception"
# (ml-explore/mlx#3126, still seen with 0.32.4 on the CPU), unless the streams are
# synchronized before the interpreter tears down.
atexit.register(mx.synchronize)


def as_texts(sentences: str | list[str]) -> tuple[bool, list[str]]:
    """(whether one string was given, the texts), refusing anything but strings."""
    single = isinstance(sentences, str)
    texts = [sentences] if single else sentences
    if not isinstance(texts, (list, tuple)):
        raise InputTypeError(
            f"sentences must be a string or a list of strings, got {type(sentences).__name__}."
        )
    if bad := [i for i, t in enumerate(texts) if not isinstance(t, str)]:
        raise InputTypeError(f"sentences[{bad[0]}] is {type(texts[bad[0]]).__name__}, not a string.")
    return single, list(texts)


class Embedder:
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
    ):
        self.model = model
        self.engine = Engine(model, max_length)
        self.tokenizer = tokenizer
        self.source = source
        self.revision = revision  # the Hub commit, when known; embedding fingerprints record it
        self._task, self._tasks = task, tuple(tasks)
        # Multitask: adapters unmerged, `task` is only the default for encode(task=...).
        self.multitask = multitask
        self._prompts, self.default_prompt_name = dict(prompts), default_prompt_name
        self._max_length = max_length
        # The tokenizer's truncation setting is shared state; set and use it under a lock.
        self._tokenizer_lock = threading.Lock()
        # Batches, tokens, padding and time of the latest encode call (any thread's).
        self.last_stats: EncodeStats | None = None

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

    @property
    def prompts(self) -> dict[str, str]:
        """Prompt name -> text added before each input, for this model's task."""
        return self.prompts_for(self._task)

    def prompts_for(self, task: str | None) -> dict[str, str]:
        """Prompt name -> text for `task`: only retrieval has a distinct query prompt."""
        return task_prompts(self._prompts, task)

    def resolve_task(self, task: str | None) -> str | None:
        """The task a call runs with: `task`, or the loaded one when None."""
        if task is None:
            if self.multitask and self._task is None:
                raise ValueError(
                    f"This model holds the adapters {', '.join(self._tasks)}; pass task= to "
                    "pick one per call."
                )
            return self._task
        if self.multitask and task not in self._tasks:
            raise ValueError(f"Unknown task {task!r}. Available tasks: {', '.join(self._tasks)}.")
        if not self.multitask and task != self._task:
            raise ValueError(
                f"This model was loaded for task {self._task!r}, not {task!r}. Load it with "
                f"task={task!r}, or with multitask=True to pick the task per call."
            )
        return task

    def __repr__(self) -> str:
        return (
            f"Embedder(source={self.source!r}, task={self._task!r}, dim={self.dim}, "
            f"max_length={self._max_length}, dtype={self.model.norm.weight.dtype})"
        )

    def resolve_prompt(
        self, prompt_name: str | None, prompt: str | None, task: str | None = None
    ) -> str:
        if prompt is not None:
            if prompt_name is not None:
                warnings.warn("Both prompt and prompt_name were given; using prompt.", stacklevel=3)
            if not isinstance(prompt, str):
                raise InputTypeError(f"prompt must be a string, got {type(prompt).__name__}.")
            return prompt
        name = self.default_prompt_name if prompt_name is None else prompt_name
        prompts = self.prompts_for(task or self._task)
        if name not in prompts:
            raise ValueError(
                f"Unknown prompt_name {name!r}. Valid names: {', '.join(sorted(prompts))}."
            )
        return prompts[name]

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
        if not isinstance(split_special_tokens, bool):
            raise InputTypeError(
                f"split_special_tokens={split_special_tokens!r}; use True or False."
            )
        with self._tokenizer_lock:
            self.tokenizer.no_padding()
            self.tokenizer.enable_truncation(max_length)
            self.tokenizer.encode_special_tokens = split_special_tokens
            encodings = self.tokenizer.encode_batch(texts)
        cut = [i for i, e in enumerate(encodings) if e.overflowing]
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
        ids = [e.ids for e in encodings]
        if empty := [i for i, row in enumerate(ids) if not row]:
            raise ValueError(
                f"Input {empty[0]} has no tokens (empty text and no prompt). Pass non-empty text."
            )
        return ids

    def _check_max_length(self, max_length: int | None) -> int:
        if max_length is None:
            return self._max_length
        if not isinstance(max_length, int) or not 1 <= max_length <= self._max_length:
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
        max_batch_tokens: int = 8192,
        truncate: bool = True,
        task: str | None = None,
        split_special_tokens: bool = False,
    ) -> np.ndarray | mx.array:
        """Embed one text or a list of texts.

        Args:
            sentences: A string (gives a 1-D vector) or a list of strings (a 2-D array).
            prompt_name: "query" or "document" (default: the model's default, "document").
                The symmetric tasks (all but retrieval) use the document prompt for all.
            prompt: A literal prefix that wins over `prompt_name`; "" adds none.
            batch_size: Most inputs per forward pass.
            truncate_dim: Matryoshka size from 32 to the model's dimension; cut, then normalize.
            normalize_embeddings: L2-normalize (default True, as Jina's own module does).
            max_length: Token limit per input (default: the model's context).
            precision: "float32", "float16", "int8", "uint8" (fixed ranges, see
                `quantize_embeddings`), "binary" or "ubinary" (bit-packed signs).
            show_progress_bar: None shows one on a terminal for large jobs.
            convert_to_numpy: False returns an `mx.array`.
            max_batch_tokens: Most padded tokens per forward pass; bounds memory.
            truncate: False raises instead of cutting inputs longer than `max_length`.
            task: The adapter for this call, on a `multitask=True` model; it also picks
                the prompts. A single-task model accepts only its own task.
            split_special_tokens: Tokenize special-token strings ("<|endoftext|>") as plain
                text. False matches transformers; True is safer for untrusted text.

        Returns:
            `(dim,)` for a string, `(n, dim)` for a list; `last_stats` then describes the call.
        """
        single, texts = as_texts(sentences)
        task = self.resolve_task(task)
        texts = [self.resolve_prompt(prompt_name, prompt, task) + t for t in texts]
        ids = self.tokenize(texts, max_length, truncate, split_special_tokens) if texts else []
        emb = self.encode_ids(
            ids, batch_size=batch_size, truncate_dim=truncate_dim,
            normalize_embeddings=normalize_embeddings, precision=precision,
            show_progress_bar=show_progress_bar, convert_to_numpy=False,
            max_batch_tokens=max_batch_tokens, task=task,
        )  # fmt: skip
        emb = emb[0] if single else emb
        mx.eval(emb)
        return np.array(emb) if convert_to_numpy else emb

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
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size={batch_size!r}; use a positive integer.")
        if not isinstance(max_batch_tokens, int) or max_batch_tokens < 1:
            raise ValueError(f"max_batch_tokens={max_batch_tokens!r}; use a positive integer.")
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

    def validate(
        self,
        ids: list[list[int]],
        *,
        task: str | None = None,
        truncate_dim: int | None = None,
        precision: str = "float32",
    ) -> str | None:
        """Check `encode_ids` arguments before any work; returns the task to run with."""
        self.engine.check(ids, truncate_dim, precision)
        return self.resolve_task(task)

    def embed_batch(self, ids: list[list[int]], task: str | None = None) -> mx.array:
        """Pooled float32 vectors of ONE forward pass over `ids` (graph only). The server's
        worker gathers rows of several requests into one, then calls `finish` per request."""
        return self.engine.embed_batch(ids, task)

    def finish(self, emb: mx.array, **options) -> mx.array:
        """Pooled vectors to output (`truncate_dim`, `normalize_embeddings`, `precision`)."""
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
        it = iter(sentences)
        try:
            while chunk := list(islice(it, chunk_size)):
                yield self.encode(chunk, show_progress_bar=False, **kwargs)
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

    def encode_query(self, sentences: str | list[str], **kwargs) -> np.ndarray | mx.array:
        """`encode` with the "query" prompt ("Query: " for retrieval)."""
        return self.encode(sentences, prompt_name="query", **kwargs)

    def encode_document(self, sentences: str | list[str], **kwargs) -> np.ndarray | mx.array:
        """`encode` with the "document" prompt ("Document: ")."""
        return self.encode(sentences, prompt_name="document", **kwargs)

    @staticmethod
    def similarity(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """Cosine similarity matrix between the rows of `a` and `b` (1-D inputs are one row)."""
        a = normalize(mx.array(np.atleast_2d(np.asarray(a, dtype=np.float32))))
        b = normalize(mx.array(np.atleast_2d(np.asarray(b, dtype=np.float32))))
        return np.array(a @ b.T)
