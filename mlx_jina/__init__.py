"""Run Jina's jina-embeddings-v5-text models (small and nano) with MLX.

The public API below is imported on first use, so `import mlx_jina` and `mlx-jina --help`
load no MLX until a name is used.
"""

from importlib import import_module
from typing import TYPE_CHECKING

from ._version import __version__

# Before any module of this package imports MLX: on Linux, MLX's CPU wheel then multiplies
# with the system's OpenBLAS instead of its bundled reference BLAS (see cpu_blas.py).
from .cpu_blas import prefer_fast_blas

prefer_fast_blas()

# Public name -> the module that defines it.
_EXPORTS = {
    "load": "loading",
    "Embedder": "encoding.embedder",
    "convert": "conversion.pipeline",
    "quantize_embeddings": "retrieval.precision",
    "semantic_search": "retrieval.search",
    "Fingerprint": "retrieval.store",
    "fingerprint": "retrieval.store",
    "load_embeddings": "corpus.results",
    "save_embeddings": "retrieval.store",
    "TASKS": "tasks",
    "embed_corpus": "corpus.job",
}
__all__ = [
    "Embedder", "Fingerprint", "TASKS", "__version__", "convert", "embed_corpus", "fingerprint",
    "load", "load_embeddings", "quantize_embeddings", "save_embeddings", "semantic_search",
]  # fmt: skip

if TYPE_CHECKING:  # what type checkers and editors see
    from .loading import load
    from .conversion.pipeline import convert
    from .corpus.job import embed_corpus
    from .encoding.embedder import Embedder
    from .retrieval.precision import quantize_embeddings
    from .retrieval.search import semantic_search
    from .corpus.results import load_embeddings
    from .retrieval.store import Fingerprint, fingerprint, save_embeddings
    from .tasks import TASKS


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'mlx_jina' has no attribute {name!r}")
    value = getattr(import_module(f".{_EXPORTS[name]}", __name__), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
