"""The tables of one run (Markdown) and the same figures as JSON."""

import importlib.metadata
import os
import platform
from dataclasses import replace
from pathlib import Path

from .jobs import JINA, Job
from .shapes import describe
from .suite import Results
from .summary import PEERS, Ratio, Row, all_passes, subset_float32, summarize

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
            f"{fmt(row.peak_mib, ',.0f')} | {fmt(row.rss_mib, ',.0f')} | "
            f"{fmt(row.load_s, '.2f')} | {fmt(row.p50_ms, '.1f')} | "
            f"{fmt(row.cosine, '.5f')} | {row.blas} |"
        )
    return lines


def rounds_table(res: Results) -> list[str]:
    lines = ["| round | load avg | wall s | order |", "|---|---|---|---|"]
    for rnd in res.rounds:
        lines.append(f"| {rnd.index + 1} | {rnd.load:.2f} | {rnd.seconds:.0f} | "
                     f"{', '.join(rnd.order)} |")
    return lines


def blas_by_engine(res: Results, rows: list[Row]) -> dict[str, str]:
    by_engine: dict[str, set[str]] = {}
    for row in rows:
        if row.blas:
            by_engine.setdefault(engine_name(row.job), set()).update(row.blas.split("; "))
    return {e: ", ".join(sorted(b)) for e, b in by_engine.items()}


def run_facts(res: Results, rows: list[Row], command: str, date: str, seconds: float) -> dict:
    s, small = res.settings, res.works[next(iter(res.works))]
    kinds = {k: small.kinds.count(k) for k in ("query", "passage", "document")}
    return {
        "command": command,
        "date": date,
        "machine": f"{platform.machine()} {platform.system()}, {platform_cpu()}, "
        f"{memory_gib():.0f} GiB",
        "load average at start / end": f"{res.load[0]} / {res.load[1]}",
        "versions": f"Python {platform.python_version()}, MLX {version('mlx')}, mlx_jina "
        f"{version('mlx-jina')}, torch {version('torch')}, transformers "
        f"{version('transformers')}, mlx-embeddings {version('mlx-embeddings')}",
        **{f"model {n}": f"{m.arch}, {describe(m)}" for n, m in res.models.items()},
        "corpus": f"{len(small.ids):,} texts ({kinds}), {small.tokens():,} tokens",
        "subset (slow settings)": f"{len(small.subset)} texts, {small.tokens(small.subset):,} tokens",
        "rounds x timed passes": f"{s.rounds} x {s.passes}, each after an untimed pass",
        "torch threads": s.torch_threads,
        **{f"BLAS, {e}": b for e, b in blas_by_engine(res, rows).items()},
        "seconds": round(seconds),
    }


def notes(res: Results, rows: list[Row]) -> list[str]:
    out = list(res.notes)
    for row in rows:
        out += [f"{row.job.key}: {e}" for e in row.errors]
    return out


def subset_rows(res: Results, rows: list[Row]) -> list[Row]:
    """The subset rows, each model's after mlx_jina float32 on the same subset."""
    out = []
    for row in rows:
        if row.job.engine == JINA and row.job.also_subset:
            job = replace(row.job, setting="float32 (its process's 2nd pass)")
            same = {SUBSET_RATIO: Ratio(1.0, 1.0, 1.0)}
            key = row.job.key
            out.append(Row(job, subset_float32(res, row.job.model),
                           all_passes(res, key, subset_pass=True), same))
        elif row.job.subset:
            out.append(row)
    return out


def row_json(row: Row) -> dict:
    j = row.job
    ratios = {t: None if r is None else vars(r) for t, r in row.ratios.items()}
    return dict(engine=j.engine, model=j.model, setting=j.setting, subset=j.subset,
                tokens_per_s=row.spread, passes=row.passes, ratios=ratios,
                padding=row.padding, gflops=row.gflops,
                mlx_peak_mib=row.peak_mib, rss_mib=row.rss_mib, load_s=row.load_s,
                p50_query_ms=row.p50_ms, min_cos=row.cosine, blas=row.blas,
                errors=row.errors)


def report(res: Results, command: str, date: str, seconds: float) -> tuple[str, dict]:
    """The run's tables (Markdown) and everything in them (JSON)."""
    rows = summarize(res)
    full = [r for r in rows if not r.job.subset]
    layers = ", ".join(f"{n} {m.layers}" for n, m in res.models.items())
    facts = run_facts(res, rows, command, date, seconds)
    out = [f"## bench_encode, layers: {layers}", "", "### Run", "", "| | |", "|---|---|"]
    out += [f"| {k} | {v} |" for k, v in facts.items()]
    out += ["", "### Tokens/s over the whole corpus", ""]
    out += speed_table(full, [t for t, _ in PEERS])
    out += ["", "### The slow settings, on the subset", ""]
    out += speed_table(subset_rows(res, rows), [SUBSET_RATIO])
    out += ["", "### Per row", ""] + detail_table(rows)
    out += ["", "### Rounds", ""] + rounds_table(res)
    if n := notes(res, rows):
        out += ["", "### Notes", ""] + [f"- {x}" for x in n]
    data = dict(facts, layers={n: m.layers for n, m in res.models.items()},
                rows=[row_json(r) for r in full],
                subset_rows=[row_json(r) for r in subset_rows(res, rows)],
                rounds=[dict(index=x.index, order=x.order, load=x.load,
                             seconds=x.seconds) for x in res.rounds], notes=n)
    return "\n".join(out) + "\n", data


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
