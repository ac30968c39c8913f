"""LangChain: `MLXJinaEmbeddings`, an `Embeddings` for vector stores and retrievers.

    from mlx_jina.integrations.langchain import MLXJinaEmbeddings
    embeddings = MLXJinaEmbeddings("jinaai/jina-embeddings-v5-text-nano-retrieval")
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import TYPE_CHECKING

from .encoder import QueryDocumentEncoder, framework_missing

try:
    from langchain_core.embeddings import Embeddings
except ImportError as e:
    raise framework_missing("langchain-core", "langchain") from e

if TYPE_CHECKING:
    from ..encoding.embedder import Embedder


class MLXJinaEmbeddings(Embeddings):
    """jina-embeddings-v5-text as a LangChain `Embeddings`, run locally with MLX.

    Args:
        model: A local folder, a Hugging Face repo id, or an `Embedder` from `mlx_jina.load`.
        task: Any name in `mlx_jina.tasks.TASK_NAMES`. An adapter name (retrieval, ...)
            gives documents the document prompt and queries the query prompt (symmetric
            tasks use the document prompt for both); a Jina API task name fixes the
            prompt for both. None: the model's own task.
        truncate_dim: Matryoshka size (32 up to the model's dimension); None keeps all.
        bits: 4 or 8 to load quantized weights (see `mlx_jina.load`).
        batch_size: Most texts per forward pass.
        revision, dtype: Passed to `mlx_jina.load`.
        identity: The content identity the model must have (keep `identity` beside a
            saved vector store, and pass it back when you reopen the store); None
            accepts any.

    Vectors are unit length, as lists of floats.
    """

    def __init__(
        self,
        model: str | Path | Embedder,
        *,
        task: str | None = None,
        truncate_dim: int | None = None,
        bits: int | None = None,
        batch_size: int = 32,
        revision: str | None = None,
        dtype: str | None = None,
        identity: str | None = None,
    ):
        self.encoder = QueryDocumentEncoder(
            model, task=task, truncate_dim=truncate_dim, bits=bits, batch_size=batch_size,
            revision=revision, dtype=dtype, identity=identity,
        )  # fmt: skip

    @property
    def embedder(self) -> Embedder:
        """The `mlx_jina.Embedder` doing the work."""
        return self.encoder.embedder

    @property
    def identity(self) -> str | None:
        """The model's content identity: equal for the same files under any path."""
        return self.encoder.identity

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        """One vector per text, with the document prompt."""
        return self.encoder.documents(texts).tolist()

    def embed_query(self, text: str) -> list[float]:
        """One vector, with the query prompt."""
        return self.encoder.query(text).tolist()

    # The model runs in a worker thread, so the event loop keeps serving while it works.
    async def aembed_documents(self, texts: list[str]) -> list[list[float]]:
        return await asyncio.to_thread(self.embed_documents, texts)

    async def aembed_query(self, text: str) -> list[float]:
        return await asyncio.to_thread(self.embed_query, text)

    def __repr__(self) -> str:
        e = self.encoder
        return f"MLXJinaEmbeddings({e.source!r}, task={e.task!r}, truncate_dim={e.truncate_dim!r})"
