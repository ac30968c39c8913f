"""The Markdown report of one run: the table, the sections below it, the targets."""

import os
import platform
from pathlib import Path

import mlx.core as mx

from .engines import Row
from .measure import min_cos
from .shapes import describe
from .suite import Results

COLUMNS = [
    "engine",
    "model",
    "weights",
    "tokens/s",
    "× mlx-emb (input order)",
    "× mlx-emb (sorted)",
    "× torch",
    "padding eff.",
    "matmul-rate fraction",
    "peak MiB",
    "load s",
    "p50 query ms",
]


def fmt(x, spec: str, none: str = "—") -> str:
    return none if x is None else format(x, spec)


def table(rows: list[Row], peers: dict[str, dict[str, float]]) -> str:
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for r in rows:
        base = peers[r.model]
        ratios = [
            fmt(r.tokens_per_s / base[k], ".2f") if k in base else "—"
            for k in ("naive", "sorted", "torch")
        ]
        lines.append(
            f"| {r.engine} | {r.model} | {r.weights} | {r.tokens_per_s:,.0f} | "
            + " | ".join(ratios)
            + f" | {fmt(r.padding, '.1%')} | {fmt(r.mm_fraction, '.0%')} | "
            f"{fmt(r.peak_mib, ',.0f')} | {r.load_s:.2f} | {r.p50_ms:.1f} |"
        )
    return "\n".join(lines)


def header(res: Results) -> list[str]:
    s, small = res.spec, res.models["small"]
    return [
        f"Machine: {platform.machine()} {platform.system()}, {platform_cpu()}; "
        f"MLX {mx.__version__} on {mx.default_device()}; "
        f"Python {platform.python_version()}.",
        "",
        f"Corpus: {len(res.lengths)} texts, {sum(res.lengths):,} tokens (small's "
        f"tokenizer): {s.queries} queries of 6-14 words, {s.passages} passages of "
        f"100-500 tokens, {s.docs} documents of {s.doc_tokens:,} tokens; shuffled.",
        f"Models: random weights, {small.layers} layers. small-shaped = Qwen3 (causal, "
        f"q/k norms, {describe(small)}); nano-shaped = EuroBERT (bidirectional, "
        f"{describe(res.models['nano'])}). Real vocabularies and tokenizers.",
    ]


def rates_and_4k(res: Results) -> list[str]:
    rates = ", ".join(f"{name} {kind} {r:.2f}" for (name, kind), r in res.rates.items())
    return [
        "tokens/s: real tokens / wall time of the whole corpus (mlx_jina: "
        "`encode(texts)`, tokenization included; peers: forward, pooling and "
        "normalization of pre-tokenized batches). Matmul-rate fraction: FLOPs of the "
        "model's matrix products as executed (padding included) / time / the backend's "
        "rate on the model's linear-layer shapes for that dtype. Quantized rows use "
        "float32 activations and scales.",
        "",
        "Backend matmul rate, GFLOP/s, on the model's linear-layer shapes at 4,096 "
        f"rows: {rates}.",
        "",
        "Forward pass on 4,096-token batches, float32: the share of its time that its "
        "own matrix products take when run alone in the same shapes (linear layers; "
        "q·k and p·v per query block), and its FLOP rate over the linear-layer matmul "
        "rate:",
        "",
        "| model | batch | seconds | own matmuls / forward "
        "| FLOP rate / linear-layer rate |",
        "|---|---|---|---|---|",
        *[
            f"| {m} | {b} | {v[2]:.2f} | {v[0]:.0%} | {v[1]:.0%} |"
            for m, batches in res.at_4k.items()
            for b, v in batches.items()
        ],
    ]


def small_and_long(res: Results) -> list[str]:
    o = res.overhead
    blocks = ", ".join(f"{k}: {v:.2f}" for k, v in res.blocks.items())
    out = [
        "Causal attention over one 4,096-token input (4/2 heads of 16), seconds per "
        f"query-block size: {blocks} (4,096 = one block, MLX's own fallback).",
        "",
        f"One {o['tokens']}-token query, small-shaped float32, p50: `encode` "
        f"{o['encode']:.2f} ms; bare forward {o['forward']:.2f} ms; same under "
        f"`mx.compile` {o['compiled']:.2f} ms; its linear-layer matmuls alone "
        f"{o['matmuls']:.2f} ms.",
        "",
        "One long input, small-shaped (1 layer), float32, CPU query-block attention:",
        "",
        "| tokens | peak MiB | × previous | seconds | full score matrix would be |",
        "|---|---|---|---|---|",
    ]
    h = res.models["small"].config["num_attention_heads"]
    for i, (n, peak, sec) in enumerate(res.long):
        ratio = f"{peak / res.long[i - 1][1]:.2f}" if i else "—"
        full = h * n * n * 4 / 2**20
        out.append(f"| {n:,} | {peak:,.0f} | {ratio} | {sec:.1f} | {full:,.0f} MiB |")
    return out


def agreement(rows: list[Row]) -> str:
    agree = []
    for r in rows:
        ref = next(x for x in rows if x.engine == "mlx_jina" and x.model == r.model)
        if r is not ref:
            cos = min_cos(r.vectors, ref.vectors)
            agree.append(f"{r.engine} {r.model} {r.weights} {cos:.5f}")
    return (
        "Agreement, min cosine vs mlx_jina float32 of the same model: "
        + "; ".join(agree)
        + "."
    )


def targets(res: Results) -> list[str]:
    rows, peers = res.rows, res.peers
    jina = next(r for r in rows if r.engine == "mlx_jina" and r.model == "qwen3")
    out = []

    def check(name: str, ok: bool, value: str) -> None:
        out.append(f"- {name}: {value} — {'met' if ok else 'NOT met'}")

    for key, need in (("naive", 4.0), ("sorted", 1.2)):
        if key in peers["qwen3"]:
            x = jina.tokens_per_s / peers["qwen3"][key]
            check(f"≥ {need}× mlx-embeddings ({key})", x >= need, f"{x:.2f}×")
    eff = min(r.padding for r in rows if r.engine == "mlx_jina")
    check("padding efficiency ≥ 97%", eff >= 0.97, f"{eff:.1%}")
    for model, batches in res.at_4k.items():
        check(
            f"≥ 80% of the matmul rate at 4K-token batches ({model})",
            min(v[0] for v in batches.values()) >= 0.8,
            ", ".join(f"{b} {v[0]:.0%}" for b, v in batches.items()),
        )
    if long := res.long:
        (n0, peak0, _), (n1, peak1, _) = long[0], long[-1]
        check(
            f"{n1:,}-token input completes, memory about linear",
            peak1 / peak0 / (n1 / n0) < 1.5,
            f"{peak1:,.0f} MiB; growth {peak1 / peak0:.1f}× for {n1 // n0}× the tokens",
        )
    return out


def report(res: Results) -> str:
    out = header(res) + ["", table(res.rows, res.peers), ""] + rates_and_4k(res)
    out += [""] + small_and_long(res) + ["", agreement(res.rows), "", "Targets:"]
    out += targets(res) + [f"- note: {n}" for n in res.notes]
    return "\n".join(out)


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
    return f"{name}, {os.cpu_count()} cores"
