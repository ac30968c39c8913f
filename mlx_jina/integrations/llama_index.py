"""LlamaIndex: `MLXJinaEmbedding`, a `BaseEmbedding` for indexes and retrievers.

    from llama_index.core import Settings
    from mlx_jina.integrations.llama_index import MLXJinaEmbedding
    Settings.embed_model = MLXJinaEmbedding("jinaai/jina-embeddings-v5-text-nano-retrieval")
"""

import asyncio
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .encoder import QueryDocumentEncoder, checked_texts, framework_missing

try:
    from llama_index.core.base.embeddings.base import (
        DEFAULT_EMBED_BATCH_SIZE,
        BaseEmbedding,
        Embedding,
    )
    from llama_index.core.bridge.pydantic import Field, PrivateAttr
except ImportError as e:
    raise framework_missing("llama-index-core", "llama-index") from e

if TYPE_CHECKING:
    from ..encoding.embedder import Embedder


class MLXJinaEmbedding(BaseEmbedding):
    """jina-embeddings-v5-text as a LlamaIndex embedding model, run locally with MLX.

    Args:
        model: A local folder, a Hugging Face repo id, or an `Embedder` from `mlx_jina.load`
            (`model_name=` works too, as in a saved index's settings).
        task: Any name in `mlx_jina.tasks.TASK_NAMES`. An adapter name (retrieval, ...)
            gives texts the document prompt and queries the query prompt (symmetric
            tasks use the document prompt for both); a Jina API task name fixes the
            prompt for both. None: the model's own task.
        truncate_dim: Matryoshka size (32 up to the model's dimension); None keeps all.
        bits: 4 or 8 to load quantized weights (see `mlx_jina.load`).
        embed_batch_size: Texts per call and most texts per forward pass.
        revision, dtype: Passed to `mlx_jina.load`.
        identity: The content identity the model must have; None accepts any. Its own
            is recorded in `identity`, so an index's saved settings (`to_dict`) reload
            only the model it was embedded with, whatever path spells it.
    """

    task: str | None = Field(default=None, description="Adapter or Jina API task name.")
    truncate_dim: int | None = Field(default=None, description="Matryoshka size.")
    bits: int | None = Field(default=None, description="4 or 8 for quantized weights.")
    revision: str | None = Field(default=None, description="Hub branch, tag or commit.")
    dtype: str | None = Field(default=None, description="float16, bfloat16 or float32.")
    identity: str | None = Field(default=None, description="The model's content identity.")
    _encoder: QueryDocumentEncoder = PrivateAttr()

    def __init__(
        self,
        model: "str | Path | Embedder | None" = None,
        *,
        task: str | None = None,
        truncate_dim: int | None = None,
        bits: int | None = None,
        revision: str | None = None,
        dtype: str | None = None,
        identity: str | None = None,
        embed_batch_size: int = DEFAULT_EMBED_BATCH_SIZE,
        **kwargs: Any,
    ):
        name = kwargs.pop("model_name", None)  # from LlamaIndex's to_dict(); `model` wins
        model = name if model is None else model
        if model is None:
            raise TypeError("MLXJinaEmbedding needs a model: a folder, a repo id or an Embedder.")
        encoder = QueryDocumentEncoder(
            model, task=task, truncate_dim=truncate_dim, bits=bits, revision=revision,
            dtype=dtype, batch_size=embed_batch_size, identity=identity,
            made_with=name if isinstance(name, str) else None,
        )  # fmt: skip
        super().__init__(
            model_name=encoder.source, task=task, truncate_dim=truncate_dim, bits=bits,
            revision=revision, dtype=dtype, identity=encoder.identity,
            embed_batch_size=embed_batch_size, **kwargs,
        )  # fmt: skip
        self._encoder = encoder

    @classmethod
    def class_name(cls) -> str:
        return "MLXJinaEmbedding"

    @property
    def embedder(self) -> "Embedder":
        """The `mlx_jina.Embedder` doing the work."""
        return self._encoder.embedder

    # LlamaIndex's batch methods iterate what they are given: None failed with "'NoneType'
    # object is not iterable" and a string was embedded one character at a time.
    def get_text_embedding_batch(self, texts: list[str], *args: Any, **kw: Any) -> list[Embedding]:
        return super().get_text_embedding_batch(checked_texts(texts), *args, **kw)

    async def aget_text_embedding_batch(
        self, texts: list[str], *args: Any, **kw: Any
    ) -> list[Embedding]:
        return await super().aget_text_embedding_batch(checked_texts(texts), *args, **kw)

    def get_agg_embedding_from_queries(
        self, queries: list[str], *args: Any, **kw: Any
    ) -> Embedding:
        return super().get_agg_embedding_from_queries(_queries(queries), *args, **kw)

    async def aget_agg_embedding_from_queries(
        self, queries: list[str], *args: Any, **kw: Any
    ) -> Embedding:
        return await super().aget_agg_embedding_from_queries(_queries(queries), *args, **kw)

    def _get_query_embedding(self, query: str) -> Embedding:
        return self._encoder.query(query).tolist()

    def _get_text_embedding(self, text: str) -> Embedding:
        if not isinstance(text, str):
            raise TypeError(f"The text must be a string, got {type(text).__name__}.")
        return self._get_text_embeddings([text])[0]

    def _get_text_embeddings(self, texts: list[str]) -> list[Embedding]:
        # The base class already cuts the texts into embed_batch_size chunks.
        return self._encoder.documents(texts, batch_size=self.embed_batch_size).tolist()

    # The model runs in a worker thread, so the event loop keeps serving while it works.
    async def _aget_query_embedding(self, query: str) -> Embedding:
        return await asyncio.to_thread(self._get_query_embedding, query)

    async def _aget_text_embedding(self, text: str) -> Embedding:
        return await asyncio.to_thread(self._get_text_embedding, text)

    async def _aget_text_embeddings(self, texts: list[str]) -> list[Embedding]:
        return await asyncio.to_thread(self._get_text_embeddings, texts)


def _queries(queries: Sequence[str]) -> list[str]:
    try:
        return checked_texts(queries)
    except TypeError as e:
        raise TypeError(str(e).replace("texts", "queries", 1)) from None
