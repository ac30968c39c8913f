"""What the benchmarks share: the mlx_jina internals they use, imported here and nowhere
else, and the helpers every benchmark calls (JSON, tables, percentiles, progress lines,
/proc figures, versions).

None of the internals is public API: when the package moves one, fix its path here. They
load on first use, so a process that must not load MLX (the torch engine's) can import
this module. The benchmarks also use these `Embedder` attributes: `model`, `tokenize`,
`last_stats`, `resolve_prompt`, `embed_batch` (one batch's pooled vectors, not yet
evaluated) and `finish`.
"""

import importlib
import importlib.metadata
import json
import os
import platform
import sys
import time

_LAZY = {"plan_batches": "mlx_jina.encoding.batching", "query_block_size": "mlx_jina.models.attention",
         "model_identity": "mlx_jina.checkpoint.identity", "SAMPLE_WINDOWS": "mlx_jina.checkpoint.identity",
         "WINDOW": "mlx_jina.checkpoint.identity"}  # fmt: skip


def __getattr__(name: str):
    if name not in _LAZY:
        raise AttributeError(f"module 'internals' has no attribute {name!r}")
    return getattr(importlib.import_module(_LAZY[name]), name)


def corpus_ranks():
    """(init_group, RoundPool, serve): the corpus job's scheduler over MLX ranks."""
    from mlx_jina.corpus.rounds import RoundPool, init_group, serve

    return init_group, RoundPool, serve


def server():
    """(Job, Limits, Worker) of the embedding server; needs the server extra."""
    from mlx_jina.server import Limits, Worker
    from mlx_jina.server.worker import Job

    return Job, Limits, Worker


def mlx_blas() -> str:
    """Which BLAS MLX's CPU backend multiplies float32 with in this process."""
    from mlx_jina import cpu_blas

    return cpu_blas.describe()


def write_report(path, text: str) -> None:
    """Write a report file whole or not at all (beside it, then renamed over it)."""
    from mlx_jina.atomic import replacing_file

    with replacing_file(path) as f:
        f.write(text.encode("utf-8"))


def write_json(path, figures) -> None:
    """The figures as indented JSON, written whole or not at all."""
    write_report(path, json.dumps(figures, indent=1, default=str) + "\n")


def table(head: list[str], rows) -> list[str]:
    """The lines of a Markdown table; a row may be shorter than the head (a note)."""
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    return lines + ["| " + " | ".join(map(str, row)) + " |" for row in rows]


def percentile(values: list[float], q: float) -> float:
    """The value at quantile `q` of `values` (nearest rank); NaN for none."""
    values = sorted(values)
    return values[min(len(values) - 1, round(q * (len(values) - 1)))] if values else float("nan")


def timed(fn, *args) -> tuple:
    """(fn(*args), the seconds it took)."""
    start = time.perf_counter()
    out = fn(*args)
    return out, time.perf_counter() - start


def log(*args) -> None:
    """A progress line on stderr: stdout carries the table alone."""
    print(*args, file=sys.stderr, flush=True)


def proc_mib(field: str, path: str = "/proc/self/status") -> float | None:
    """A kB line of a /proc file in MiB (VmRSS or VmHWM of a status, MemTotal of
    /proc/meminfo); None where there is no /proc. VmHWM, not getrusage's ru_maxrss,
    which keeps the parent's peak across fork and exec."""
    try:
        with open(path) as f:
            return next(int(line.split()[1]) / 1024 for line in f if line.startswith(field + ":"))
    except (OSError, StopIteration):
        return None


def version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def machine() -> str:
    """The architecture, CPU model, cores and memory, as the reports print them."""
    cpu = platform.processor() or "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    memory = proc_mib("MemTotal", "/proc/meminfo")
    gib = f", {memory / 1024:.0f} GiB" if memory else ""
    return f"{platform.machine()} {platform.system()}, {cpu}, {os.cpu_count()} cores{gib}"
