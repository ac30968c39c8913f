"""Run jina-embeddings-v5-text (small and nano) with MLX."""

from .embedder import Embedder
from .loader import TASKS, load

__version__ = "0.1.0"
__all__ = ["Embedder", "TASKS", "load", "__version__"]
