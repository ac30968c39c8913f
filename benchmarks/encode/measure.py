"""Logging, and the extra sections' FLOP count, float32 matmul rate and p50 timing."""

import time
from functools import partial

import mlx.core as mx
from checkpoint import head_dim, linear_shapes
from internals import query_block_size

from .shapes import Model


def linear_params(model: Model) -> int:
    return sum(out * inp for out, inp in linear_shapes(model.config).values())


def batch_flops(model: Model, rows: int, width: int, blocked: bool) -> float:
    """Linear layers on every computed token, plus q.k and p.v over the keys each query
    block actually sees (mlx_jina's CPU path skips keys after a causal block)."""
    h, hd = model.config["num_attention_heads"], head_dim(model.config)
    pairs = width * width
    if blocked:
        step = query_block_size(rows, h, width, width, model.causal)
        if step < width and model.causal:
            pairs = sum(
                (min(s + step, width) - s) * min(s + step, width)
                for s in range(0, width, step)
            )
    return model.layers * rows * (2 * linear_params(model) * width + 4 * h * hd * pairs)


def matmul_rate(model: Model, dtype, bits: int | None, tokens: int = 4096) -> float:
    """The backend's GFLOP/s on this model's linear-layer shapes, `tokens` rows each."""
    flops = seconds = 0.0
    for out, inp in linear_shapes(model.config).values():
        x = mx.random.normal((tokens, inp)).astype(dtype)
        w = mx.random.normal((out, inp)).astype(dtype)
        if bits:
            wq, s, b = mx.quantize(w, group_size=64, bits=bits)
            kw = dict(transpose=True, group_size=64, bits=bits)
            f = partial(mx.quantized_matmul, x, wq, s, b, **kw)
        else:
            f = partial(mx.matmul, x, w.T)
        mx.eval(f())
        t = time.perf_counter()
        for _ in range(3):
            mx.eval(f())
        seconds += (time.perf_counter() - t) / 3
        flops += 2 * tokens * inp * out
    return flops / seconds / 1e9
