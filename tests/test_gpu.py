"""MLX's GPU backend (Metal or CUDA) against its CPU backend: fused attention, whole
models, quantized weights, multitask adapters, the server worker and a 32K-token input.

Run: python -m pytest -m gpu tests/test_gpu.py -q

Every test is marked `gpu` and skips, saying why, unless MLX's default device is a GPU
(here: the CPU build). The model is loaded once and run on each device: MLX arrays
live in memory both backends reach, and `on(device)` sets both the default device and
stream, so the model's own switch (models/attention.py: fused kernel on a GPU, query
blocks on the CPU) follows the device. benchmarks/gpu_check.py runs these first.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os

import mlx.core as mx
import numpy as np
import pytest

import mlx_jina
from mlx_jina.models.attention import scaled_dot_product_attention

ON_GPU = mx.is_available(mx.gpu) and mx.default_device().type == mx.DeviceType.gpu
DEVICE = mx.gpu
if os.environ.get("MLX_JINA_GPU_TESTS_ON_CPU"):
    # A dry run of these tests' own logic on a machine without a GPU: "GPU" is the CPU
    # (MLX's unblocked fallback attention stands in for the fused kernel).
    ON_GPU, DEVICE = True, mx.cpu
pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(
        not ON_GPU,
        reason=f"needs MLX on a GPU; the default device is {mx.default_device()} "
        f"(GPU available: {mx.is_available(mx.gpu)})",
    ),
]

TEXTS = [
    "Which planet is known as the Red Planet?",
    "Mars is often called the Red Planet.",
    "Der schnelle braune Fuchs springt über den faulen Hund.",
    "a",
    "Paris is the capital and largest city of France. " * 20,
]
# Least cosine, GPU vs CPU, by dtype.
FLOOR = {"float32": 0.99999, "bfloat16": 0.999, "float16": 0.999}


@contextlib.contextmanager
def on(device: mx.Device):
    """Run on `device`: its default stream, and `mx.default_device()` answering it."""
    before = mx.default_device()
    mx.set_default_device(device)
    try:
        with mx.stream(device):
            yield
    finally:
        mx.set_default_device(before)


def cosines(a, b) -> np.ndarray:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return (a * b).sum(-1) / np.linalg.norm(a, axis=-1) / np.linalg.norm(b, axis=-1)


def both(fn):
    """fn() evaluated on the GPU, then on the CPU, as float32 numpy arrays."""
    out = []
    for device in (DEVICE, mx.cpu):
        with on(device):
            y = fn()
            mx.eval(y)
            out.append(np.array(y.astype(mx.float32)) if isinstance(y, mx.array) else y)
    return out


# ---------------------------------------------------------------------------
# attention: the fused kernel against the CPU's query blocks


def attention_inputs(heads, kv_heads, length, dtype, seed=0):
    """Two rows of (B, H, L, 128) q and (B, Hkv, L, 128) k, v; row 1 has 3/4 real keys."""
    key = mx.random.key(seed)
    kq, kk, kv = mx.random.split(key, 3)
    q = mx.random.normal((2, heads, length, 128), key=kq).astype(dtype)
    k = mx.random.normal((2, kv_heads, length, 128), key=kk).astype(dtype)
    v = mx.random.normal((2, kv_heads, length, 128), key=kv).astype(dtype)
    real = np.array([length, max(1, 3 * length // 4)])
    keys = mx.array(np.arange(length)[None, :] < real[:, None])[:, None, None, :]
    return q, k, v, keys


@pytest.mark.parametrize("heads,kv_heads", [(16, 8), (12, 12)], ids=["gqa16-8", "mha12"])
@pytest.mark.parametrize("length", [1, 7, 129, 1031])
@pytest.mark.parametrize("mask", ["causal", "padding", "none"])
@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_fused_attention_matches_cpu_query_blocks(heads, kv_heads, length, mask, dtype):
    q, k, v, keys = attention_inputs(heads, kv_heads, length, getattr(mx, dtype))
    m = {"causal": "causal", "padding": keys, "none": None}[mask]

    def attend(block):
        y = scaled_dot_product_attention(q, k, v, scale=128**-0.5, mask=m, block_size=block)
        return np.array(y.astype(mx.float32))

    with on(DEVICE):
        gpu = attend(None)  # the model's GPU path: the fused kernel, all queries at once
    with on(mx.cpu):
        cpu = attend(64)  # the CPU path, forced into blocks of 64 queries
    assert gpu.shape == cpu.shape == (2, heads, length, 128)
    assert np.isfinite(gpu).all()
    tol = 2e-4 if dtype == "float32" else 3e-2
    np.testing.assert_allclose(gpu, cpu, atol=tol, rtol=tol)


# ---------------------------------------------------------------------------
# whole models


MODELS = ["tiny_qwen_base", "tiny_eurobert_base", "qwen_base_odd", "eurobert_base_gqa"]


@pytest.mark.parametrize("fixture", MODELS)
@pytest.mark.parametrize("dtype", ["float32", "bfloat16", "float16"])
def test_model_gpu_matches_cpu(request, fixture, dtype):
    model = mlx_jina.load(request.getfixturevalue(fixture), task="retrieval", dtype=dtype)
    gpu, cpu = both(lambda: model.encode(TEXTS, convert_to_numpy=False))
    assert np.isfinite(gpu).all()
    assert cosines(gpu, cpu).min() >= FLOOR[dtype]


@pytest.mark.parametrize("fixture", ["tiny_qwen_base", "tiny_eurobert_base"])
@pytest.mark.parametrize("bits", [4, 8])
def test_quantized_gpu_matches_cpu(request, fixture, bits):
    """The same quantized weights: only the quantized matmul kernels differ."""
    model = mlx_jina.load(request.getfixturevalue(fixture), task="retrieval", bits=bits)
    gpu, cpu = both(lambda: model.encode(TEXTS, convert_to_numpy=False))
    assert np.isfinite(gpu).all()
    assert cosines(gpu, cpu).min() >= 0.9999


@pytest.mark.parametrize("bits", [4, 8])
@pytest.mark.parametrize("inp,out", [(1024, 3072), (3072, 1024), (768, 3072)])
def test_quantized_matmul_gpu_matches_cpu(bits, inp, out):
    """MLX's quantized matmul at the real models' layer shapes (group size 64)."""
    x = mx.random.normal((16, inp), key=mx.random.key(1)).astype(mx.bfloat16)
    w = (mx.random.normal((out, inp), key=mx.random.key(2)) * inp**-0.5).astype(mx.bfloat16)
    wq, scales, biases = mx.quantize(w, group_size=64, bits=bits)
    gpu, cpu = both(
        lambda: mx.quantized_matmul(x, wq, scales, biases, transpose=True, group_size=64, bits=bits)
    )
    assert cosines(gpu, cpu).min() >= 0.999


@pytest.mark.parametrize("fixture", ["tiny_qwen_base", "tiny_eurobert_base"])
def test_multitask_gpu_matches_cpu_and_merged(request, fixture):
    src = request.getfixturevalue(fixture)
    multi = mlx_jina.load(src, multitask=True, dtype="float32")
    for task in multi.tasks:
        gpu, cpu = both(lambda t=task: multi.encode(TEXTS, task=t, convert_to_numpy=False))
        assert cosines(gpu, cpu).min() >= 0.99999, task
        merged = mlx_jina.load(src, task=task, dtype="float32")
        with on(DEVICE):
            want = merged.encode(TEXTS)
        assert cosines(gpu, want).min() >= 0.99999, task


# ---------------------------------------------------------------------------
# long inputs: a 32K-token input to qwen3 (small's context), 8K to eurobert (nano's)


@pytest.mark.parametrize("fixture,length", [("tiny_qwen_base", 32768), ("tiny_eurobert_base", 8192)])
def test_long_input_gpu_matches_cpu(request, fixture, length):
    model = mlx_jina.load(request.getfixturevalue(fixture), task="retrieval", dtype="float32")
    row = np.random.default_rng(0).integers(4, 260, length).tolist()
    with on(DEVICE):
        gpu = model.encode_ids([row])
    with on(mx.cpu):
        cpu = model.encode_ids([row])
    assert np.isfinite(gpu).all()
    assert cosines(gpu, cpu).min() >= 0.9999


@pytest.mark.skipif(DEVICE == mx.cpu, reason="the CPU dry run has no fused kernel")
@pytest.mark.parametrize(
    "heads,kv_heads,head_dim,length,mask",
    [(16, 8, 128, 32768, "causal"), (12, 12, 64, 8192, "padding")],
    ids=["small-32K", "nano-8K"],
)
def test_fused_attention_memory_stays_linear(heads, kv_heads, head_dim, length, mask):
    """The real models' head shapes (the tiny fixtures' head_dim 16 has no fused kernel):
    the GPU path never builds one (heads, L, L) bfloat16 score matrix."""
    q = mx.random.normal((1, heads, length, head_dim)).astype(mx.bfloat16)
    k = mx.random.normal((1, kv_heads, length, head_dim)).astype(mx.bfloat16)
    v = mx.random.normal((1, kv_heads, length, head_dim)).astype(mx.bfloat16)
    m = "causal" if mask == "causal" else mx.array(np.arange(length) < length - 100)[None, None, None]
    mx.eval(q, k, v, m)
    mx.reset_peak_memory()
    with on(DEVICE):
        y = scaled_dot_product_attention(q, k, v, scale=head_dim**-0.5, mask=m)
        mx.eval(y)
    assert bool(mx.isfinite(y).all())
    scores = heads * length * length * 2
    assert mx.get_peak_memory() < scores, f"peak {mx.get_peak_memory() / 2**30:.1f} GiB"


# ---------------------------------------------------------------------------
# the server's worker thread


@pytest.mark.skipif(
    not all(importlib.util.find_spec(m) for m in ("starlette", "prometheus_client")),
    reason="mlx_jina.server needs the server extra (starlette, prometheus_client)",
)
def test_worker_thread_on_gpu(tiny_qwen_base):
    """The worker owns the model on its own thread (MLX's default device there is the
    GPU); its vectors match the CPU's."""
    from mlx_jina.server import Limits
    from mlx_jina.server.worker import Job, Worker

    rows = [[5, 6, 7, 8] * k for k in range(1, 9)]
    devices = []

    def load():
        devices.append(mx.default_device())  # the worker thread's, on its first call
        return mlx_jina.load(tiny_qwen_base, multitask=True, task="retrieval")

    worker = Worker(load, limits=Limits(max_batch_tokens=64)).start()
    try:
        got = worker.submit(Job("retrieval", rows, None, True, "float32", None)).result(60)
    finally:
        worker.stop()
    assert devices[0] == DEVICE
    with on(mx.cpu):
        want = load().encode_ids(rows, task="retrieval")
    assert cosines(got, want).min() >= 0.99999
