"""Which BLAS each process multiplied float32 with.

MLX's Linux CPU wheel (mlx[cpu]) links a bundled reference BLAS (netlib, a few GFLOP/s);
`import mlx_jina` loads the system OpenBLAS in front of it (benchmarks/bench_blas.py
compares the two). MLX's 16-bit and quantized matmuls never call BLAS. torch brings its
own BLAS (MKL in the x86 CPU wheels).
"""

import ctypes
import os
from pathlib import Path

OPENBLAS = Path("/usr/lib/x86_64-linux-gnu/libopenblas.so.0")


def torch_env() -> dict[str, str]:
    """This environment without a preloaded OpenBLAS: torch multiplies with its own.
    (MLX processes need nothing: `import mlx_jina` loads the system OpenBLAS first.)"""
    env = dict(os.environ)
    others = [p for p in env.pop("LD_PRELOAD", "").split() if "openblas" not in p]
    if others:
        env["LD_PRELOAD"] = " ".join(others)
    return env


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
        return f"OpenBLAS {openblas_version()} (system)"
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
