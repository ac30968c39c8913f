"""Giving memory back to the system: when the worker goes idle, and when a model unloads."""

from __future__ import annotations

import ctypes
import gc
import logging
import sys
from typing import TYPE_CHECKING

import mlx.core as mx

if TYPE_CHECKING:
    from ..encoding.embedder import Embedder
    from .service import EmbeddingService

log = logging.getLogger("mlx_jina.server")


def release_memory() -> None:
    """Give freed memory back to the system: MLX's buffer cache, then glibc's free heap."""
    mx.clear_cache()
    if _malloc_trim is not None:
        _malloc_trim(0)


def free(service: EmbeddingService) -> None:
    """Stop the model's worker and give its memory back to the system."""
    worker = service.worker
    worker.stop()
    if worker.alive:  # a batch outlived stop()'s wait: its arrays stay until it ends
        log.warning("The worker of %r did not stop in time.", service.model_name)
    worker.model = service.model = None
    gc.collect()  # the model's arrays may sit in reference cycles
    release_memory()


def weight_bytes(model: Embedder | None) -> int:
    """Bytes of the model's weights (quantized ones as stored)."""
    if model is None:
        return 0
    from mlx.utils import tree_flatten

    return sum(v.nbytes for _, v in tree_flatten(model.model.parameters()))


def _find_malloc_trim():
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(None).malloc_trim  # glibc; musl has none
    except (OSError, AttributeError):
        return None


_malloc_trim = _find_malloc_trim()
