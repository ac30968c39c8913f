"""Chroma: `MLXJinaEmbeddingFunction`, an embedding function for collections.

    from mlx_jina.integrations.chroma import MLXJinaEmbeddingFunction
    ef = MLXJinaEmbeddingFunction("jinaai/jina-embeddings-v5-text-nano-retrieval")
    collection = client.create_collection("docs", embedding_function=ef)
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .encoder import QueryDocumentEncoder, framework_missing

try:
    from chromadb.api.types import Documents, EmbeddingFunction, Embeddings, Space
    from chromadb.utils.embedding_functions import register_embedding_function
except ImportError as e:
    raise framework_missing("chromadb", "chroma") from e

# What get_config() records, so that Chroma can rebuild the function for a stored collection;
# "identity" is the model's content identity, checked when the rebuilt function loads it.
CONFIG_KEYS = (
    "model", "task", "truncate_dim", "bits", "batch_size", "revision", "dtype", "identity",
)  # fmt: skip
# Changing these would mix vectors from different spaces in one collection.
FIXED_KEYS = ("model", "task", "truncate_dim", "identity")

if TYPE_CHECKING:
    from ..encoding.embedder import Embedder


class MLXJinaEmbeddingFunction(EmbeddingFunction[Documents]):
    """jina-embeddings-v5-text as a Chroma embedding function, run locally with MLX.

    Chroma embeds what it stores with `__call__` (the document prompt) and query texts with
    `embed_query` (the query prompt). Vectors are unit length, float32.

    Args:
        model: A local folder, a Hugging Face repo id, or an `Embedder` from `mlx_jina.load`.
        task: Any name in `mlx_jina.tasks.TASK_NAMES`. An adapter name (retrieval, ...)
            keeps the query and document prompts apart (symmetric tasks use the document
            prompt for both); a Jina API task name fixes the prompt for both. None: the
            model's own task.
        truncate_dim: Matryoshka size (32 up to the model's dimension); None keeps all.
        bits: 4 or 8 to load quantized weights (see `mlx_jina.load`).
        batch_size: Most texts per forward pass.
        revision, dtype: Passed to `mlx_jina.load`.
        identity: The content identity the model must have (a collection's config holds
            it); None accepts any.

    The collection records the model's folder or repo id, its content identity and these
    settings; given a loaded Embedder, it records the Embedder's source and task, and a
    collection reopened in another process loads that source with the other settings at
    their defaults. The reopened function refuses a model with another identity, such as
    a relative folder name seen from another working directory; the same files at another
    path are accepted. (A function you pass to `get_collection` yourself is not compared
    with the stored one by Chroma, which compares names only: pass it `identity=`.)
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
        settings = dict(task=task, truncate_dim=truncate_dim, bits=bits,
                        batch_size=batch_size, revision=revision, dtype=dtype)  # fmt: skip
        self._prepare(model, settings | {"identity": identity})
        # Load now: a bad folder or setting fails here, not at the first add.
        self._encoder = self._load()

    def _prepare(self, model: Any, settings: dict[str, Any]) -> None:
        self._model, self._settings = model, settings
        self._encoder: QueryDocumentEncoder | None = None
        self._lock = threading.Lock()

    def _load(self) -> QueryDocumentEncoder:
        settings = dict(self._settings)
        name = self._model if isinstance(self._model, (str, os.PathLike)) else None
        encoder = QueryDocumentEncoder(self._model, **settings, made_with=name and str(name))
        self._settings["identity"] = encoder.identity  # what get_config records from now on
        return encoder

    @property
    def encoder(self) -> QueryDocumentEncoder:
        """The model, loaded on first use when Chroma rebuilt this function from a config;
        refused if its content identity is not the one the config recorded."""
        with self._lock:
            if self._encoder is None:
                self._encoder = self._load()
            return self._encoder

    @property
    def embedder(self) -> Embedder:
        """The `mlx_jina.Embedder` doing the work."""
        return self.encoder.embedder

    def __call__(self, input: Documents) -> Embeddings:
        return list(self.encoder.documents(input))

    def embed_query(self, input: Documents) -> Embeddings:
        return list(self.encoder.queries(input))

    @staticmethod
    def name() -> str:
        return "mlx-jina"

    def default_space(self) -> Space:
        return "cosine"  # the vectors are unit length: cosine, ip and l2 rank alike

    def get_config(self) -> dict[str, Any]:
        config = {"model": self._model, **self._settings}
        if not isinstance(self._model, (str, os.PathLike)):  # a loaded Embedder
            config.update(model=self.encoder.source, task=self._settings["task"] or self.embedder.task)
        config["model"] = str(config["model"])
        return config

    @staticmethod
    def build_from_config(config: dict[str, Any]) -> MLXJinaEmbeddingFunction:
        # Chroma calls this to check every function it stores (is_legacy), so loading
        # waits for the first use: checking a collection's function costs no model load.
        MLXJinaEmbeddingFunction.validate_config(config)
        ef = MLXJinaEmbeddingFunction.__new__(MLXJinaEmbeddingFunction)
        settings = {k: config[k] for k in CONFIG_KEYS[1:] if k in config}
        ef._prepare(config["model"], settings)
        return ef

    @staticmethod
    def validate_config(config: dict[str, Any]) -> None:
        if not isinstance(config.get("model"), str):
            raise ValueError(
                f"An {MLXJinaEmbeddingFunction.name()} config needs a model folder or repo id "
                f"as a string, got {config.get('model')!r}."
            )
        if not isinstance(config.get("identity"), (str, type(None))):
            raise ValueError(
                f"An {MLXJinaEmbeddingFunction.name()} config's identity must be a string, "
                f"got {config['identity']!r}."
            )
        if unknown := sorted(set(config) - set(CONFIG_KEYS)):
            raise ValueError(
                f"Unknown {MLXJinaEmbeddingFunction.name()} settings {unknown}; "
                f"known: {', '.join(CONFIG_KEYS)}."
            )

    def validate_config_update(self, old_config: dict[str, Any], new_config: dict[str, Any]) -> None:
        keys = list(FIXED_KEYS)
        if old_config.get("identity") is None:
            keys.remove("identity")  # a collection from before identities may gain one
        elif new_config.get("identity") is not None:
            keys.remove("model")  # the same content under another path or name is one model
        if changed := [k for k in keys if k in new_config and new_config[k] != old_config.get(k)]:
            raise ValueError(
                f"Changing {', '.join(changed)} would mix incompatible vectors in one "
                "collection; create a new collection for the new settings."
            )


register_embedding_function(MLXJinaEmbeddingFunction)
