"""The measurements beyond the table, at the reduced widths (shapes.REDUCED): 4K-token
batches, one query, causal query blocks, long inputs. Opt-in (`--sections`): they run in
one fresh MLX process after the rounds.

They time `engine.forward` (every layer at every token), not `embed_batch`, whose last
layer runs at the pooled token only: on their 1-layer models that would skip the work
they measure.
"""

import time
from pathlib import Path

import mlx.core as mx
import numpy as np
from checkpoint import head_dim, linear_shapes
from internals import query_block_size, scaled_dot_product_attention

import mlx_jina

from .corpus import PROMPT
from .measure import batch_flops, matmul_rate
from .passes import p50_ms
from .progress import log
from .shapes import SHAPES, WIDE_HEADS, Model, build_model


def long_input_memory(root: Path, max_tokens: int) -> list[tuple[int, float, float]]:
    """Peak memory and time of one long input to a one-layer small-shaped model."""
    arch, shape = SHAPES["small"]
    model = build_model(root, "small-long", arch, layers=1, seed=3, **shape)
    embedder = mlx_jina.load(model.folder)
    rng = np.random.default_rng(0)
    out = []
    n = 4096
    while n <= max_tokens:
        row = rng.integers(0, 150_000, n).tolist()
        mx.clear_cache()
        mx.reset_peak_memory()
        before = mx.get_active_memory()
        t = time.perf_counter()
        mx.eval(embedder.engine.forward([row])[0])
        out.append(
            (n, (mx.get_peak_memory() - before) / 2**20, time.perf_counter() - t)
        )
        log(f"  long input {n}: {out[-1][1]:.0f} MiB, {out[-1][2]:.1f} s")
        n *= 2
    return out


def query_overhead(model: Model, query: str) -> dict[str, float]:
    """Where a single short query's time goes: encode, the bare forward, the forward
    under mx.compile, and the linear layers' matmuls alone."""
    embedder = mlx_jina.load(model.folder)
    x = mx.array(embedder.tokenize([PROMPT + query]))
    lengths = np.array([x.shape[1]])  # the model takes each row's length on the host
    bare = p50_ms(lambda: mx.eval(embedder.model(x, lengths)[:, -1]))
    compiled_fn = mx.compile(lambda t: embedder.model(t, lengths)[:, -1])
    compiled = p50_ms(lambda: mx.eval(compiled_fn(x)))
    ws = [mx.random.normal(s) for s in linear_shapes(model.config).values()]
    a = {w.shape[1]: mx.random.normal((x.shape[1], w.shape[1])) for w in ws}
    mx.eval(ws, a)
    matmuls = p50_ms(lambda: mx.eval([a[w.shape[1]] @ w.T for w in ws * model.layers]))
    return {
        "tokens": x.shape[1],
        "encode": p50_ms(lambda: embedder.encode(query)),
        "forward": bare,
        "compiled": compiled,
        "matmuls": matmuls,
    }


def matmul_replay(model: Model, rows: int, width: int) -> float:
    """Seconds for the forward pass's matrix products alone, in the shapes mlx_jina runs
    them (linear layers; q.k and p.v per query block), on random float32 data."""
    c = model.config
    h, kv, hd = c["num_attention_heads"], c["num_key_value_heads"], head_dim(c)
    rep = h // kv
    ws = [mx.random.normal(s) for s in linear_shapes(c).values()]
    xs = {n: mx.random.normal((rows * width, n)) for n in {w.shape[1] for w in ws}}
    q = mx.random.normal((rows, kv, rep, width, hd))
    k = mx.random.normal((rows, kv, width, hd))
    v = mx.random.normal((rows, kv, width, hd))
    mx.eval(xs, ws, q, k, v)
    step = query_block_size(rows, h, width, width, model.causal)

    def run() -> None:
        for _ in range(model.layers):
            out = [xs[w.shape[1]] @ w.T for w in ws]
            for s in range(0, width, step):
                e = min(s + step, width)
                last = e if model.causal and step < width else width
                qb = q[:, :, :, s:e].reshape(rows, kv, rep * (e - s), hd)
                out.append((qb @ k[:, :, :last].swapaxes(-1, -2)) @ v[:, :, :last])
            mx.eval(out)

    t = time.perf_counter()
    run()
    return time.perf_counter() - t


def batch_4k(model: Model, rate: float) -> dict[str, tuple]:
    """The forward pass on 4,096-token batches (8 x 512, 1 x 4096): the share of its
    time that its own matrix products take, and its FLOP rate over the linear-layer
    rate."""
    embedder = mlx_jina.load(model.folder)
    rng = np.random.default_rng(1)
    res = {}
    for rows, width in ((8, 512), (1, 4096)):
        batch = [rng.integers(0, 150_000, width).tolist() for _ in range(rows)]
        mx.eval(embedder.engine.forward(batch)[0])
        t = time.perf_counter()
        mx.eval(embedder.engine.forward(batch)[0])
        seconds = time.perf_counter() - t
        gflops = batch_flops(model, rows, width, True) / seconds / 1e9
        res[f"{rows}×{width}"] = (
            matmul_replay(model, rows, width) / seconds,
            gflops / rate,
            seconds,
        )
    return res


def causal_blocks(block_sizes=(128, 256, 512, 1024, 4096)) -> dict[int, float]:
    """Seconds for causal attention over one 4,096-token input (4/2 heads of 16) per
    query-block size; 4,096 is one block, the plain fallback."""
    q = mx.random.normal((1, 4, 4096, 16))
    k, v = mx.random.normal((1, 2, 4096, 16)), mx.random.normal((1, 2, 4096, 16))
    mx.eval(q, k, v)
    res = {}
    for size in block_sizes:
        t = time.perf_counter()
        mx.eval(
            scaled_dot_product_attention(
                q, k, v, scale=0.25, mask="causal", block_size=size
            )
        )
        res[size] = time.perf_counter() - t
    return res


def run_sections(root: Path, long_max: int) -> dict:
    """Every section, as JSON-ready data (report.py formats it)."""
    arch, shape = SHAPES["small"]
    small = build_model(root, "small-reduced", arch, layers=2, seed=5, **shape)
    log("single-query overhead, 4K batches, causal blocks ...")
    overhead = query_overhead(small, "what is the capital of france")
    rate = matmul_rate(small, mx.float32, None)
    name = f"small-shaped, heads of {head_dim(small.config)}, {small.layers} layers"
    at_4k = {name: batch_4k(small, rate)}
    wide = build_model(root, "small-heads128", "qwen3", layers=1, seed=4, **WIDE_HEADS)
    name = "small's heads of 128 (4/2 heads, hidden 256, MLP 768), 1 layer"
    at_4k[name] = batch_4k(wide, matmul_rate(wide, mx.float32, None))
    blocks = {str(k): v for k, v in causal_blocks().items()}
    log("long inputs ...")
    long = long_input_memory(root, long_max)
    return dict(rate=rate, at_4k=at_4k, overhead=overhead, blocks=blocks, long=long)
