"""The extra sections' Markdown (`--sections`: reduced widths, see sections.py)."""

from .shapes import REDUCED


def at_4k_lines(data: dict) -> list[str]:
    return [
        "Forward pass on 4,096-token batches, float32: the share of its time that its "
        "own matrix products take when run alone in the same shapes (linear layers; "
        "q·k and p·v per query block), and its FLOP rate over the linear-layer matmul "
        f"rate ({data['rate']:.1f} GFLOP/s, small-reduced):",
        "",
        "| model | batch | seconds | own matmuls / forward "
        "| FLOP rate / linear-layer rate |",
        "|---|---|---|---|---|",
        *[
            f"| {m} | {b} | {v[2]:.2f} | {v[0]:.0%} | {v[1]:.0%} |"
            for m, batches in data["at_4k"].items()
            for b, v in batches.items()
        ],
    ]


def query_and_long_lines(data: dict) -> list[str]:
    o = data["overhead"]
    blocks = ", ".join(f"{k}: {v:.2f}" for k, v in data["blocks"].items())
    out = [
        "Causal attention over one 4,096-token input (4/2 heads of 16), seconds per "
        f"query-block size: {blocks} (4,096 = one block, MLX's own fallback).",
        "",
        f"One {o['tokens']}-token query, small-reduced float32, p50: `encode` "
        f"{o['encode']:.2f} ms; bare forward {o['forward']:.2f} ms; same under "
        f"`mx.compile` {o['compiled']:.2f} ms; its linear-layer matmuls alone "
        f"{o['matmuls']:.2f} ms.",
        "",
        "One long input, small-reduced (1 layer), float32, CPU query-block attention:",
        "",
        "| tokens | peak MiB | × previous | seconds | full score matrix would be |",
        "|---|---|---|---|---|",
    ]
    heads = REDUCED["small"][1]["num_attention_heads"]
    long = data["long"]
    for i, (n, peak, sec) in enumerate(long):
        ratio = f"{peak / long[i - 1][1]:.2f}" if i else "—"
        full = heads * n * n * 4 / 2**20
        out.append(f"| {n:,} | {peak:,.0f} | {ratio} | {sec:.1f} | {full:,.0f} MiB |")
    return out


def sections_lines(data: dict) -> list[str]:
    head = [
        "### Extra sections (reduced widths)",
        "",
        "At the older reduced widths (small-reduced: hidden 128, 4/2 heads of 16, MLP "
        f"384), one fresh MLX process, BLAS: {data.get('blas', '?')}.",
        "",
    ]
    if "error" in data:
        return head + [f"Failed: {data['error']}"]
    return head + at_4k_lines(data) + [""] + query_and_long_lines(data)
