"""The backends' matmul rates on a model's linear-layer shapes, GFLOP/s.

Each runs in a probe process of its own (runner.py), so a sample reads the machine's
state at that moment and not a cache another measurement warmed. Imports are local: the
torch probe must not load MLX, nor the MLX probe torch.
"""

import time
from collections.abc import Callable

from checkpoint import linear_shapes

# (activation dtype, weight bits) of each mlx_jina setting; quantized weights run
# float32 activations (load(bits=) quantizes a float32 model).
SETTINGS = {
    "float32": ("float32", None),
    "bfloat16": ("bfloat16", None),
    "float16": ("float16", None),
    "8-bit": ("float32", 8),
    "4-bit": ("float32", 4),
}


def timed_rate(calls: list[tuple[Callable, float]], repeats: int) -> float:
    """GFLOP/s over (call, FLOPs) pairs: one untimed call each, then `repeats`."""
    flops = seconds = 0.0
    for call, f in calls:
        call()
        t = time.perf_counter()
        for _ in range(repeats):
            call()
        seconds += (time.perf_counter() - t) / repeats
        flops += f
    return flops / seconds / 1e9


def mlx_rate(config: dict, setting: str, rows: int, repeats: int = 3) -> float:
    import mlx.core as mx

    dtype_name, bits = SETTINGS[setting]
    dtype = getattr(mx, dtype_name)
    calls = []
    for out, inp in linear_shapes(config).values():
        x = mx.random.normal((rows, inp)).astype(dtype)
        w = mx.random.normal((out, inp)).astype(dtype)
        if bits:
            wq, s, b = mx.quantize(w, group_size=64, bits=bits)
            mx.eval(x, wq, s, b)
            kw = dict(transpose=True, group_size=64, bits=bits)

            def call(x=x, wq=wq, s=s, b=b, kw=kw):
                mx.eval(mx.quantized_matmul(x, wq, s, b, **kw))
        else:
            mx.eval(x, w)

            def call(x=x, w=w):
                mx.eval(x @ w.T)

        calls.append((call, 2.0 * rows * inp * out))
    return timed_rate(calls, repeats)


def torch_rate(config: dict, rows: int, threads: int, repeats: int = 3) -> float:
    import torch

    torch.set_num_threads(threads)
    calls = []
    for out, inp in linear_shapes(config).values():
        x, w = torch.randn(rows, inp), torch.randn(out, inp)

        def call(x=x, w=w):
            x @ w.T

        calls.append((call, 2.0 * rows * inp * out))
    return timed_rate(calls, repeats)
