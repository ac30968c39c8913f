"""Markdown tables of the packing comparison: FLOPs and measured passes."""

from __future__ import annotations

from .flops import Work

LAYOUTS = {  # flops.compare_layouts keys -> column names
    "mask": "packed, block mask",
    "mask, narrow rows": "packed, block mask, narrow rows",
    "segments": "packed, per-text spans",
}


def pct(x: float) -> str:
    return f"{x:+.1%}"


def flop_row(model: str, corpus: str, budget: int, real: int, works: dict[str, Work]) -> str:
    p = works["padded"]
    saved = (p.linear - works["segments"].linear) / p.total
    cells = [model, corpus, f"{budget:,}", f"{real:,}", f"{real / p.tokens:.1%}",
             f"{p.attention / p.total:.1%}", f"{saved:.1%}"]
    for key in LAYOUTS:
        w = works[key]
        added = pct((w.attention - p.attention) / p.total)
        cells.append(f"{added} → **{w.total / p.total:.2f}×**")
    cells.append(" / ".join(str(works[k].passes) for k in ("padded", "mask", "mask, narrow rows")))
    return "| " + " | ".join(cells) + " |"  # fmt: skip


def flop_table(rows: list[str]) -> list[str]:
    head = ("| model | corpus | budget | real tokens | padding efficiency | attention share "
            "(padded) | linear FLOPs saved (share of padded total) | " + " | ".join(
                f"{name}: attention added → total vs padded" for name in LAYOUTS.values())
            + " | passes: padded / packed / narrow |")  # fmt: skip
    return [head, "|---" * (8 + len(LAYOUTS)) + "|", *rows]


def timing_table(label: str, rows: dict[str, dict], cpu: bool = False) -> list[str]:
    """One corpus's layouts; `cpu` adds tokens per CPU-second of the process (on a
    shared CPU, steadier than wall time; on a GPU it only counts the host's waiting)."""
    extra = " tokens per CPU-second (median), vs padded |" if cpu else ""
    lines = [
        f"| {label} | passes | tokens computed | tokens/s min / median / max | vs padded "
        f"(median) |{extra} working peak | cosine min vs padded |",
        "|---" * (7 + cpu) + "|",
    ]
    for name, r in rows.items():
        if "error" in r or "skipped" in r:
            lines.append(f"| {name} | {r.get('error') or r.get('skipped')} |")
            continue
        peak = r["peak_gib"]
        mem = f"{peak:.2f} GiB" if peak >= 1 else f"{peak * 1024:.0f} MiB"
        per_cpu = f" {r['per_cpu_s']:,.0f}, {r['cpu_vs_padded']:.2f}× |" if cpu else ""
        lines.append(
            f"| {name} | {r['passes']} | {r['computed_tokens']:,} | {r['min']:,.0f} / "
            f"**{r['median']:,.0f}** / {r['max']:,.0f} | {r['vs_padded']:.2f}× |{per_cpu} "
            f"{mem} | {r['cosine_min']:.7f} |"
        )
    return lines
