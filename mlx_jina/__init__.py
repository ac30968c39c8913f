"""Run jina-embeddings-v5-text (small and nano) with MLX."""

from .convert import convert
from .embedder import Embedder
from .loader import load
from .tasks import TASKS
from .precision import quantize_embeddings
from .search import semantic_search
from .store import Fingerprint, fingerprint, load_embeddings, save_embeddings

__version__ = "0.1.0"
__all__ = [
    "Embedder", "Fingerprint", "TASKS", "convert", "fingerprint", "load", "load_embeddings",
    "quantize_embeddings", "save_embeddings", "semantic_search", "__version__",
]
