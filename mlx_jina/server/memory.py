"""Giving memory back to the system when the worker goes idle."""

from __future__ import annotations

import ctypes
import sys

import mlx.core as mx


def release_memory() -> None:
    """Give freed memory back to the system: MLX's buffer cache, then glibc's free heap."""
    mx.clear_cache()
    if _malloc_trim is not None:
        _malloc_trim(0)


def _find_malloc_trim():
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(None).malloc_trim  # glibc; musl has none
    except (OSError, AttributeError):
        return None


_malloc_trim = _find_malloc_trim()
