"""What the LangChain, LlamaIndex and Chroma classes share: a model from a folder, a repo id
or a loaded Embedder; the task; the check that it is the model a store was made with (by
its content identity, never its path); queries and documents to vectors, one call at a
time."""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any
from weakref import WeakKeyDictionary

import numpy as np

from ..checkpoint.identity import comparable
from ..encoding.texts import check_texts, text_problem
from ..tasks import parse_task

if TYPE_CHECKING:
    from ..encoding.embedder import Embedder

# One lock per Embedder: async callers run in worker threads, and MLX runs one graph at a
# time anyway; serializing keeps concurrent calls from sharing MLX state.
_LOCKS: WeakKeyDictionary[Any, threading.Lock] = WeakKeyDictionary()
_LOCKS_GUARD = threading.Lock()


def encode_lock(embedder: Any) -> threading.Lock:
    with _LOCKS_GUARD:
        return _LOCKS.setdefault(embedder, threading.Lock())


def framework_missing(package: str, extra: str) -> ImportError:
    return ImportError(
        f"This integration needs {package}, which is not installed. "
        f"Install it with: pip install 'mlx-jina[{extra}]'"
    )


class QueryDocumentEncoder:
    """Queries and documents to float32 unit vectors with one Embedder.

    `task` is any name in `mlx_jina.tasks.TASK_NAMES`. An adapter name keeps queries and
    documents apart (the Embedder gives symmetric tasks the document prompt for both); a
    Jina API task name also fixes the prompt, for queries and documents alike.
    """

    def __init__(
        self,
        model: str | os.PathLike | Embedder,
        *,
        task: str | None = None,
        truncate_dim: int | None = None,
        bits: int | None = None,
        batch_size: int = 32,
        revision: str | None = None,
        dtype: str | None = None,
        identity: str | None = None,
        made_with: str | None = None,
    ):
        if task is not None and not isinstance(task, str):
            raise TypeError(f"task={task!r}; use a task name (a string) or None.")
        self.adapter, self.prompt_name = parse_task(task) if task is not None else (None, None)
        if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
            raise ValueError(f"batch_size={batch_size!r}; use a positive integer.")
        if identity is not None and not isinstance(identity, str):
            raise TypeError(f"identity={identity!r}; use a model's .identity string, or None.")
        self.embedder = as_embedder(model, self.adapter, bits=bits, revision=revision, dtype=dtype)
        check_identity(self.embedder, model, identity, made_with)
        # A task the model lacks or a bad truncate_dim fails here, not at the first query.
        self.embedder.validate([], task=self.adapter, truncate_dim=truncate_dim)
        self.task, self.truncate_dim, self.batch_size = task, truncate_dim, batch_size

    @property
    def source(self) -> str:
        """The folder or repo id the model was loaded from."""
        return str(self.embedder.source)

    @property
    def identity(self) -> str | None:
        """The model's content identity (None for an Embedder built by hand)."""
        return self.embedder.identity

    def documents(self, texts: Sequence[str], batch_size: int | None = None) -> np.ndarray:
        """`(len(texts), dim)` document vectors (the task's prompt, if it names one)."""
        return self._encode(checked_texts(texts), self.prompt_name or "document", batch_size)

    def queries(self, texts: Sequence[str]) -> np.ndarray:
        """`(len(texts), dim)` query vectors."""
        return self._encode(checked_texts(texts), self.prompt_name or "query")

    def query(self, text: str) -> np.ndarray:
        """One `(dim,)` query vector."""
        if not isinstance(text, str):
            raise TypeError(f"The query must be a string, got {type(text).__name__}.")
        if problem := text_problem(text):
            raise ValueError(f"The query {problem}; a query needs some content.")
        return self._encode([text], self.prompt_name or "query")[0]

    def _encode(self, texts: list[str], prompt_name: str, batch_size: int | None = None):
        embedder = self.embedder
        encode = embedder.encode_query if prompt_name == "query" else embedder.encode_document
        with encode_lock(embedder):
            emb = encode(
                texts, task=self.adapter, truncate_dim=self.truncate_dim,
                batch_size=batch_size or self.batch_size, show_progress_bar=False,
            )  # fmt: skip
        return np.asarray(emb, dtype=np.float32)


def as_embedder(model: Any, adapter: str | None, **load_settings: Any) -> Embedder:
    """The Embedder given, or the one loaded from a folder or repo id."""
    from ..encoding.embedder import Embedder

    if isinstance(model, Embedder):
        if given := [k for k, v in load_settings.items() if v is not None]:
            raise ValueError(
                f"{', '.join(given)} only apply when loading, and this Embedder is loaded "
                "already. Pass its folder or repo id instead, or load it with those settings."
            )
        return model
    if isinstance(model, (str, os.PathLike)):
        from ..loading import load

        return load(model, task=adapter, **load_settings)
    raise TypeError(
        f"model is {type(model).__name__}; pass a folder, a Hugging Face repo id or an "
        "Embedder from mlx_jina.load()."
    )


def check_identity(
    embedder: Embedder, model: Any, expected: str | None, made_with: str | None
) -> None:
    """Refuse a model other than the one a collection or index was made with: the same path
    may hold other files now (another folder, or the same relative path seen from another
    working directory), and the same files may lie at another path."""
    if not comparable(expected, embedder.identity) or embedder.identity == expected:
        return  # unknown on a side (an Embedder built by hand), or of an older scheme
    loaded = f"{embedder.source!r}"
    if isinstance(model, (str, os.PathLike)) and Path(model).is_dir():
        loaded += f" ({Path(model).resolve()})"
    raise ValueError(
        f"This store was embedded with model {made_with or '?'!r}, identity {expected}; "
        f"{loaded} is another model, identity {embedder.identity}. Its vectors would not be "
        "comparable: load the model the store was made with (the same files, at any path), "
        "or embed into a new store."
    )


def checked_texts(texts: Sequence[str]) -> list[str]:
    """A list of strings that pass the one text rule, else a TypeError or ValueError."""
    # str and bytes are sequences too: of characters and of ints, never of texts.
    if isinstance(texts, (str, bytes, bytearray)) or not isinstance(texts, Sequence):
        raise TypeError(f"texts must be a list of strings, got {type(texts).__name__}.")
    texts = list(texts)
    if bad := [i for i, t in enumerate(texts) if not isinstance(t, str)]:
        raise TypeError(f"texts[{bad[0]}] is {type(texts[bad[0]]).__name__}, not a string.")
    check_texts(texts, "texts")
    return texts
