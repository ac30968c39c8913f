"""mlx_jina on one device, per precision: corpus tokens/s, single-query latency, peak
memory of long inputs (each in a child process: an out-of-memory abort there costs one
row, not the check), the device's bf16 matmul rate, and model FLOP/s against it."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import mlx_jina  # before MLX: on Linux it loads the system BLAS
import mlx.core as mx
import numpy as np

from encode.flops import full_forward
from internals import plan_batches

from .setup import TASK, Model

QUERY = "what is the capital of france?"
LONG_INPUT = Path(__file__).with_name("long_input.py")


def matmul_rate(n: int, repeats: int = 5) -> float:
    """MLX's measured bf16 FLOP/s on one (n, n) @ (n, n) product."""
    a = mx.random.normal((n, n)).astype(mx.bfloat16)
    b = mx.random.normal((n, n)).astype(mx.bfloat16)
    mx.eval(a @ b)
    t = time.perf_counter()
    for _ in range(repeats):
        mx.eval(a @ b)
    return 2 * n**3 * repeats / (time.perf_counter() - t)


def model_flops(config: dict, batches: list[list[int]], lengths: list[int]) -> float:
    """Matmul FLOPs of the forward passes as batched: linears on every padded token,
    plus q.k and p.v over all key pairs (the fused kernel's full square)."""
    return sum(full_forward(config, len(b), max(lengths[i] for i in b)) for b in batches)


def encode_ids(embedder, ids: list[list[int]], batches) -> mx.array:
    """The engine's loop: one forward pass per batch, one graph in flight."""
    done = []
    for batch in batches:
        out = embedder.engine.embed_batch([ids[i] for i in batch], TASK)
        mx.async_eval(out)
        if done:
            mx.eval(done[-1])
        done.append(out)
    mx.eval(done[-1])
    order = np.argsort([i for b in batches for i in b])
    return mx.concatenate(done)[mx.array(order)]


def corpus_rate(embedder, ids: list[list[int]], config: dict) -> dict:
    """One warm-up pass over the same batches (every timed shape), then one timed pass;
    vectors in input order, unit length."""
    lengths = [len(r) for r in ids]
    plan = plan_batches(lengths, 32, 8192)
    encode_ids(embedder, ids, plan.batches)
    t = time.perf_counter()
    vectors = np.array(encode_ids(embedder, ids, plan.batches), dtype=np.float32)
    seconds = time.perf_counter() - t
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    return {
        "texts": len(ids),
        "real_tokens": plan.real_tokens,
        "padded_tokens": plan.padded_tokens,
        "seconds": round(seconds, 3),
        "tokens_per_s": round(plan.real_tokens / seconds, 1),
        "flops_per_s": model_flops(config, plan.batches, lengths) / seconds,
        "vectors": vectors,
        "batches": plan.batches,
    }


def query_latency(embedder, calls: int) -> dict:
    """`encode(one short query)` as a user calls it, tokenization included."""
    for _ in range(3):
        embedder.encode_query(QUERY)
    ms = []
    for _ in range(calls):
        t = time.perf_counter()
        embedder.encode_query(QUERY)
        ms.append((time.perf_counter() - t) * 1e3)
    return {
        "calls": calls,
        "p50_ms": round(float(np.percentile(ms, 50)), 3),
        "p99_ms": round(float(np.percentile(ms, 99)), 3),
    }


def child_env() -> dict:
    """This environment, with the repo root on PYTHONPATH (mlx_jina without an install)."""
    root = str(Path(__file__).resolve().parents[2])
    return dict(os.environ, PYTHONPATH=os.pathsep.join(
        p for p in (os.environ.get("PYTHONPATH"), root) if p))


def long_inputs(m: Model, kwargs: dict, timeout: float) -> dict:
    """Peak memory (GiB) and seconds of one input of each length, in a child process."""
    cmd = [sys.executable, str(LONG_INPUT), str(m.folder), json.dumps(kwargs)]
    cmd += [str(n) for n in m.long_inputs]
    out = {}
    try:
        run = subprocess.run(cmd, check=False, capture_output=True, text=True,
                             timeout=timeout, env=child_env())
        stdout, note = run.stdout, f"exit {run.returncode}: {run.stderr[-300:]}"
    except subprocess.TimeoutExpired as e:
        stdout, note = e.stdout or "", f"timed out after {timeout:.0f} s"
        stdout = stdout.decode() if isinstance(stdout, bytes) else stdout
    for line in stdout.splitlines():
        if line.startswith("{"):
            row = json.loads(line)
            out[str(row.pop("tokens"))] = row
    for n in m.long_inputs:
        out.setdefault(str(n), {"error": note.strip()})
    return out


def run_precision(m: Model, ids, kwargs: dict, calls: int, long_timeout: float) -> dict:
    """One table row: load, corpus rate, query latency, then the long inputs."""
    t = time.perf_counter()
    embedder = mlx_jina.load(m.folder, task=TASK, **kwargs)
    row = {"load_s": round(time.perf_counter() - t, 2)}
    row |= corpus_rate(embedder, ids, m.config)
    row |= query_latency(embedder, calls)
    del embedder
    mx.clear_cache()
    row["long"] = long_inputs(m, kwargs, long_timeout)
    return row
