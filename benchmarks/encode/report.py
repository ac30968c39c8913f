"""The Markdown report of one run."""

import importlib.metadata
import os
import platform
from dataclasses import replace
from pathlib import Path

from .jobs import JINA, Job
from .report_prose import columns_lines, corpus_lines, depth_lines, method_lines
from .shapes import describe
from .suite import Results
from .summary import PEERS, Ratio, Row, subset_float32, summarize

SUBSET_RATIO = "× mlx_jina float32 (subset)"


def fmt(x, spec: str, none: str = "—") -> str:
    return none if x is None else format(x, spec)


def version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def engine_name(job: Job) -> str:
    if job.engine == JINA:
        return f"mlx_jina {version('mlx-jina')}"
    if job.uses_mlx:
        return f"mlx-embeddings {version('mlx-embeddings')}"
    return f"transformers {version('transformers')} (torch CPU)"


def ratio_cell(r) -> str:
    if r is None:
        return "—"
    if f"{r.low:.2f}" == f"{r.high:.2f}":
        return f"{r.median:.2f}"
    return f"{r.median:.2f} ({r.low:.2f}–{r.high:.2f})"


def speed_table(rows: list[Row], titles: list[str]) -> list[str]:
    head = ["engine", "model", "weights / batching", "tokens/s min", "median", "max"]
    lines = [
        "| " + " | ".join(head + titles) + " |",
        "|" + "---|" * (len(head) + len(titles)),
    ]
    for row in rows:
        j, s = row.job, row.spread
        cells = [engine_name(j), j.model, j.setting]
        if s is None:
            why = "not installed" if not row.errors else "failed (see notes)"
            cells += [why, "—", "—"] + ["—"] * len(titles)
        else:
            cells += [f"{v:,.0f}" for v in s] + [
                ratio_cell(row.ratios.get(t)) for t in titles
            ]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def detail_table(rows: list[Row]) -> list[str]:
    head = [
        "engine", "model", "weights / batching", "padding eff.", "executed GFLOP/s",
        "matmul-rate fraction",
        "MLX peak MiB", "process peak RSS MiB", "load s", "p50 query ms",
        "min cos vs mlx_jina float32", "BLAS",
    ]  # fmt: skip
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in rows:
        if row.spread is None:
            continue
        j = row.job
        lines.append(
            f"| {engine_name(j)} | {j.model} | {j.setting} | "
            f"{fmt(row.padding, '.1%')} | {fmt(row.gflops, '.1f')} | "
            f"{fmt(row.fraction, '.0%')} | "
            f"{fmt(row.peak_mib, ',.0f')} | {fmt(row.rss_mib, ',.0f')} | "
            f"{fmt(row.load_s, '.2f')} | {fmt(row.p50_ms, '.1f')} | "
            f"{fmt(row.cosine, '.5f')} | {row.blas} |"
        )
    return lines


def rates_table(res: Results) -> list[str]:
    names = [f"{m} float32" for m in res.models]
    head = [f"MLX {n}" for n in names] + [f"torch {n}" for n in names]
    lines = [
        "| round | load avg | " + " | ".join(head) + " | round wall s | order |",
        "|" + "---|" * (len(head) + 4),
    ]
    for rnd in res.rounds:
        cells = [
            fmt(rnd.probes.get(kind, {}).get("rates", {}).get(n), ".1f")
            for kind in ("mlx", "torch")
            for n in names
        ]
        order = ", ".join(rnd.order)
        load = rnd.probes.get("mlx", {}).get("load", [None])[0]
        lines.append(
            f"| {rnd.index + 1} | {fmt(load, '.2f')} | "
            + " | ".join(cells)
            + f" | {rnd.seconds:.0f} | {order} |"
        )
    return lines


def blas_lines(res: Results, rows: list[Row]) -> list[str]:
    by_engine: dict[str, set[str]] = {}
    for row in rows:
        if row.blas:
            by_engine.setdefault(engine_name(row.job), set()).update(
                row.blas.split("; ")
            )
    for x in res.rounds:
        for kind, p in x.probes.items():
            if "blas" in p:
                by_engine.setdefault(f"{kind} matmul probe", set()).add(p["blas"])
    each = "; ".join(f"{e}: {', '.join(sorted(b))}" for e, b in by_engine.items())
    return [
        f"BLAS (`--blas {res.settings.blas}`), as each process found it mapped: {each}. "
        "MLX's 16-bit and quantized matmuls do not go through BLAS at all."
    ]


def header(res: Results, command: str, date: str) -> list[str]:
    return [
        f"Command: `{command}` — {date}.",
        "",
        f"Machine: {platform.machine()} {platform.system()}, {platform_cpu()}, "
        f"{memory_gib():.0f} GiB RAM, shared with other work; load average (1, 5, 15 "
        f"min) at the start {res.load[0]}, at the end {res.load[1]}. "
        f"Python {platform.python_version()}; MLX {version('mlx')} (CPU backend), "
        f"mlx_jina {version('mlx-jina')}, torch {version('torch')}, transformers "
        f"{version('transformers')}, mlx-embeddings {version('mlx-embeddings')}.",
        "",
        *[
            f"Model {name}: random weights, {m.arch}, {describe(m)}; real tokenizer."
            for name, m in res.models.items()
        ],
    ]


def notes(res: Results, rows: list[Row]) -> list[str]:
    out = [f"- {n}" for n in res.notes]
    for row in rows:
        out += [f"- {row.job.key}: {e}" for e in row.errors]
    if "error" in res.slow_rates:
        out.append(f"- slow-rate probe: {res.slow_rates['error']}")
    for x in res.rounds:
        out += [
            f"- round {x.index + 1} probe {k}: {p['error']}"
            for k, p in x.probes.items()
            if "error" in p
        ]
    return out


def subset_rows(res: Results, rows: list[Row]) -> list[Row]:
    """The subset rows, each model's after mlx_jina float32 on the same subset."""
    out = []
    for row in rows:
        if row.job.engine == JINA and row.job.also_subset:
            job = replace(row.job, setting="float32 (its process's 2nd pass)")
            same = {SUBSET_RATIO: Ratio(1.0, 1.0, 1.0)}
            out.append(Row(job, subset_float32(res, row.job.model), same))
        elif row.job.subset:
            out.append(row)
    return out


def report(res: Results, command: str, date: str, seconds: float) -> str:
    rows = summarize(res)
    full = [r for r in rows if not r.job.subset]
    slow = ", ".join(f"{k} {v:.2f}" for k, v in res.slow_rates.get("rates", {}).items())
    out = ["# bench_encode: mlx_jina against its peers", ""]
    out += header(res, command, date) + [""] + blas_lines(res, rows) + [""]
    out += corpus_lines(res) + [""] + method_lines(res)
    out += ["", "### Tokens/s over the whole corpus", ""]
    out += speed_table(full, [t for t, _ in PEERS])
    out += ["", "### The slow settings, on the subset", ""]
    out += speed_table(subset_rows(res, rows), [SUBSET_RATIO])
    out += ["", "### Per row", ""] + detail_table(rows)
    out += [""] + columns_lines(res) + [""] + depth_lines(res, rows)
    out += ["", "### Matmul rates per round", ""]
    out += [
        "GFLOP/s of float32 matmuls at the models' linear-layer shapes "
        f"({rows_of(res, 'mlx')} rows), each probe a fresh process at the round's start:",
        "",
    ]
    out += rates_table(res)
    out += [
        "",
        "MLX's 16-bit and quantized matmul rates, sampled once before round 1 "
        f"({res.slow_rates.get('rows', '?')} rows, GFLOP/s): {slow or '—'}.",
    ]
    if res.sections:
        from .section_report import sections_lines

        out += [""] + sections_lines(res.sections)
    else:
        out += [
            "",
            "Extra sections (4K-token batches, causal query blocks, one query, long "
            "inputs; reduced widths): not in this run, `--sections` adds them.",
        ]
    if n := notes(res, rows):
        out += ["", "Notes:"] + n
    out += ["", f"Whole run: {seconds:.0f} s ({seconds / 60:.1f} min)."]
    return "\n".join(out) + "\n"


def rows_of(res: Results, kind: str) -> str:
    counts = {x.probes.get(kind, {}).get("rows") for x in res.rounds} - {None}
    return ", ".join(f"{c:,}" for c in sorted(counts)) or "?"


def memory_gib() -> float:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                return int(line.split()[1]) / 2**20
    except OSError:
        pass
    return 0.0


def platform_cpu() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return f"{line.split(':', 1)[1].strip()}, {os.cpu_count()} cores"
    except OSError:
        pass
    return f"{platform.processor() or 'unknown CPU'}, {os.cpu_count()} cores"
