"""Which BLAS the MLX processes multiply float32 with, and which one each process used.

MLX's Linux CPU wheel (mlx[cpu]) links a bundled reference BLAS (netlib, a few GFLOP/s
here). Preloading the system OpenBLAS puts its `cblas_sgemm` in front, about 35× faster
on this machine; MLX's 16-bit and quantized matmuls never call BLAS, so they stay as they
are. torch brings its own BLAS (MKL in the x86 CPU wheels) and gets no preload.
"""

import ctypes
import os
import sys
from pathlib import Path

OPENBLAS = Path("/usr/lib/x86_64-linux-gnu/libopenblas.so.0")
CHOICES = ("auto", "openblas", "reference")


def choose(setting: str) -> str:
    """ "openblas" or "reference"; auto takes OpenBLAS when its file is there."""
    if setting == "auto":
        return "openblas" if OPENBLAS.is_file() else "reference"
    if setting == "openblas" and not OPENBLAS.is_file():
        sys.exit(f"--blas openblas: no {OPENBLAS} (Debian: apt install libopenblas0)")
    return setting


def mlx_env(blas: str) -> dict[str, str]:
    """The environment of an MLX process: OpenBLAS preloaded, or nothing preloaded and
    mlx_jina told not to load one itself (its cpu_blas.py does, where it has one)."""
    env = dict(os.environ, MLX_JINA_BLAS="auto" if blas == "openblas" else "reference")
    others = [p for p in env.get("LD_PRELOAD", "").split() if "openblas" not in p]
    if blas == "openblas":
        others.insert(0, str(OPENBLAS))
    if others:
        env["LD_PRELOAD"] = " ".join(others)
    else:
        env.pop("LD_PRELOAD", None)
    return env


def torch_env() -> dict[str, str]:
    return mlx_env("reference")  # no preload: torch's own BLAS


def mapped_libraries() -> list[str]:
    try:
        lines = Path("/proc/self/maps").read_text().splitlines()
    except OSError:
        return []
    return sorted({line.split()[-1] for line in lines if ".so" in line})


def mlx_blas() -> str:
    """What this process's MLX multiplies float32 with (after `import mlx.core`)."""
    libs = mapped_libraries()
    if any("libopenblas" in p for p in libs):
        return f"OpenBLAS {openblas_version()} (system, LD_PRELOAD)"
    if bundled := [Path(p).name for p in libs if Path(p).name.startswith("libblas")]:
        return f"reference BLAS ({bundled[0]}, bundled with mlx[cpu])"
    return "unknown (no BLAS library mapped)"


def openblas_version() -> str:
    try:
        config = ctypes.CDLL(str(OPENBLAS)).openblas_get_config
        config.restype = ctypes.c_char_p
        return config().decode().split()[1]
    except (OSError, AttributeError, IndexError):
        return "(version unknown)"


def torch_blas() -> str:
    import torch

    for line in torch.__config__.show().splitlines():
        if "Math Kernel Library Version" in line:
            version = line.split("Version")[1].split("-")[0].strip()
            return f"MKL {version} (bundled with torch), threads: {torch.get_num_threads()}"
    return f"torch's own BLAS, threads: {torch.get_num_threads()}"
