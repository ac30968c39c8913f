"""A fast BLAS for MLX's Linux CPU wheel, when the machine has one.

The `mlx[cpu]` wheel for Linux bundles the reference BLAS (a few GFLOP/s on one core):
its `libmlx.so` leaves `cblas_sgemm` undefined and finds it in that bundled library.
A library loaded into the process's global symbol scope *before* `libmlx.so` wins that
lookup, so loading the system's OpenBLAS first (RTLD_GLOBAL) makes every float matmul of
MLX's CPU backend run on it: `encode` 15-33x faster at small's widths on this project's
2-core VM (benchmarks/bench_blas.py), with the same vectors (tests/test_cpu_blas.py).
Python imports extension modules with RTLD_NOW, so it is too late once `mlx.core` is
imported: then this module can only say how to get it.

MLX_JINA_BLAS chooses: unset or "auto" (OpenBLAS when found), "reference" (leave MLX's
own), or the path of a shared library that exports `cblas_sgemm` (OpenBLAS, MKL's
libmkl_rt, BLIS). Nothing happens on macOS, where MLX uses Accelerate and the GPU.
"""

from __future__ import annotations

import ctypes
import os
import sys
import warnings
from pathlib import Path

ENV = "MLX_JINA_BLAS"
RECIPE = (
    "Debian/Ubuntu: sudo apt install libopenblas0-pthread; Fedora: sudo dnf install "
    "openblas-threads; then import mlx_jina before mlx, or run with "
    "LD_PRELOAD=/path/to/libopenblas.so.0"
)
# Where distributions put a threaded OpenBLAS (the first that exists is used).
_CANDIDATES = (
    "/usr/lib/x86_64-linux-gnu/libopenblas.so.0",
    "/usr/lib/aarch64-linux-gnu/libopenblas.so.0",
    "/usr/lib64/libopenblasp.so.0",
    "/usr/lib64/libopenblas.so.0",
    "/usr/lib/libopenblas.so.0",
)

# What happened in this process, for `describe()`.
_state: dict[str, str | None] = {"library": None, "how": None}


def prefer_fast_blas() -> None:
    """Load a fast BLAS into the global scope before MLX is imported (Linux only)."""
    if not sys.platform.startswith("linux") or _state["how"] is not None:
        return
    choice = os.environ.get(ENV, "auto").strip() or "auto"
    if choice == "reference":
        _state["how"] = "reference, as MLX_JINA_BLAS asks"
        return
    preloaded = _preloaded()
    if preloaded:
        _state.update(library=preloaded, how="LD_PRELOAD")
        return
    path = _explicit(choice) if choice != "auto" else _find_openblas()
    if path is None:
        _state["how"] = "reference: no OpenBLAS found (" + RECIPE + ")"
        return
    if "mlx.core" in sys.modules:
        _state["how"] = "reference: mlx was imported before mlx_jina"
        warnings.warn(
            f"MLX is multiplying with its bundled reference BLAS (15-33x slower than {path}): "
            "mlx was imported before mlx_jina. Import mlx_jina first, or run with "
            f"LD_PRELOAD={path}; MLX_JINA_BLAS=reference silences this.",
            RuntimeWarning,
            stacklevel=3,
        )
        return
    ctypes.CDLL(path, mode=ctypes.RTLD_GLOBAL)
    _state.update(library=path, how="loaded by mlx_jina before mlx")


def describe() -> str:
    """One line: which BLAS MLX's CPU backend multiplies with in this process."""
    if not sys.platform.startswith("linux"):
        return "the platform's own (Accelerate on macOS)"
    if _state["library"]:
        return f"{_state['library']} ({_state['how']})"
    return _state["how"] or "MLX's bundled reference BLAS"


def _explicit(choice: str) -> str:
    path = Path(choice).expanduser()
    if not path.is_file():
        raise FileNotFoundError(
            f"{ENV}={choice!r}: no such file. Give the path of a BLAS shared library "
            f"(e.g. /usr/lib/x86_64-linux-gnu/libopenblas.so.0), 'auto' or 'reference'."
        )
    try:
        library = ctypes.CDLL(str(path))  # local first: check before it can interpose
    except OSError as exc:
        raise ValueError(f"{ENV}={choice!r} cannot be loaded: {exc}") from None
    if not hasattr(library, "cblas_sgemm"):
        raise ValueError(
            f"{ENV}={choice!r} exports no cblas_sgemm, so MLX could not use it; give an "
            "OpenBLAS, MKL (libmkl_rt) or BLIS library, 'auto' or 'reference'."
        )
    return str(path)


def _find_openblas() -> str | None:
    prefix = os.environ.get("CONDA_PREFIX")
    candidates = [f"{prefix}/lib/libopenblas.so.0"] if prefix else []
    for candidate in [*candidates, *_CANDIDATES]:
        if os.path.isfile(candidate):
            return candidate
    return None


def _preloaded() -> str | None:
    """The LD_PRELOAD entry that provides cblas_sgemm, if any (it already interposes)."""
    for entry in os.environ.get("LD_PRELOAD", "").replace(":", " ").split():
        if "blas" in os.path.basename(entry) or "mkl" in os.path.basename(entry):
            return entry
    return None
