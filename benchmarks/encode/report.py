"""The rounds into rows (min / median / max tokens/s over every timed pass, ratios of
medians with their per-round spread, padding efficiency, executed GFLOP/s, memory,
agreement), then the run's tables (Markdown) and the same figures as JSON."""

import platform
import statistics
from dataclasses import dataclass, field, replace

import numpy as np

from internals import machine, table, version

from .flops import batches_flops
from .jobs import JINA, MLX_EMBEDDINGS, Job
from .shapes import describe
from .suite import Results

# The ratio columns: (title, job key suffix of the peer each row is divided by).
PEERS = [
    ("× mlx-emb (README)", "mlx-embeddings-documented"),
    ("× mlx-emb (our plan)", "mlx-embeddings-plan"),
    ("× torch (ST)", "transformers-documented"),
    ("× torch (our plan)", "transformers-plan"),
]
SUBSET_RATIO = "× mlx_jina float32 (subset)"


@dataclass
class Ratio:
    median: float  # median tokens/s over the peer's median tokens/s
    low: float  # lowest and highest of the per-round ratios (same round, same state)
    high: float


# The per-row figures: (column title, JSON key, format).
DETAIL = [("padding eff.", "padding", ".1%"), ("executed GFLOP/s", "gflops", ".1f"),
          ("MLX peak MiB", "mlx_peak_mib", ",.0f"), ("process peak RSS MiB", "rss_mib", ",.0f"),
          ("load s", "load_s", ".2f"), ("p50 query ms", "p50_query_ms", ".1f"),
          ("min cos vs mlx_jina float32", "min_cos", ".5f"), ("BLAS", "blas", "")]  # fmt: skip


@dataclass
class Row:
    job: Job
    tps: dict[int, float]  # round -> median tokens/s of its passes
    passes: list[float] = field(default_factory=list)  # every timed pass, every round
    ratios: dict[str, Ratio | None] = field(default_factory=dict)  # column title -> ratio
    figures: dict = field(default_factory=dict)  # DETAIL's keys
    errors: list[str] = field(default_factory=list)

    @property
    def spread(self) -> tuple[float, float, float] | None:
        v = self.passes or list(self.tps.values())
        return (min(v), statistics.median(v), max(v)) if v else None


def results_of(res: Results, key: str, subset_pass: bool = False) -> dict[int, dict]:
    """Round index -> the job's result (or its process's pass over the subset)."""
    found = {x.index: x.results[key] for x in res.rounds if key in x.results}
    found = {i: r.get("subset_pass") if subset_pass else r for i, r in found.items()}
    return {i: r for i, r in found.items() if r}


def per_round(res: Results, key: str, subset_pass: bool = False) -> dict[int, float]:
    return {i: r["tokens_per_s"] for i, r in results_of(res, key, subset_pass).items()}


def timed_row(res: Results, job: Job, subset_pass: bool = False) -> Row:
    found = results_of(res, job.key, subset_pass).values()
    passes = [x for r in found for x in r.get("pass_tokens_per_s", [r["tokens_per_s"]])]
    return Row(job, per_round(res, job.key, subset_pass), passes)


def ratio(a: dict[int, float], b: dict[int, float]) -> Ratio | None:
    each = [a[r] / b[r] for r in sorted(set(a) & set(b))]
    if not each:
        return None
    return Ratio(statistics.median(a.values()) / statistics.median(b.values()), min(each), max(each))


def agreement(res: Results, job: Job) -> float | None:
    """Lowest min-cosine over the rounds against mlx_jina float32's first vectors."""
    ref_key = f"{job.model}-{JINA}-float32"
    ref_round = next((x for x in res.rounds if ref_key in x.results), None)
    if ref_round is None:
        return None
    run = res.models[job.model].folder.parent
    ref = np.load(run / f"round-{ref_round.index}" / f"{ref_key}.npy")
    cosines = [float(np.min(np.sum(np.load(run / f"round-{i}" / f"{job.key}.npy") * ref[r["rows"]], axis=1)))
               for i, r in results_of(res, job.key).items()]  # fmt: skip
    return min(cosines, default=None)


def figures(res: Results, job: Job, results: list[dict]) -> dict:
    """DETAIL's figures over the rounds; GFLOP/s as executed (the FLOPs as batched, over
    the wall time), median over the rounds."""
    model, lengths = res.models[job.model], [len(r) for r in res.works[job.model].ids]
    flops = [batches_flops(model.config, r["batches"], lengths, job.engine == JINA, model.causal) for r in results]
    return dict(padding=results[0]["real_tokens"] / results[0]["padded_tokens"],
                gflops=statistics.median(f / r["seconds"] / 1e9 for f, r in zip(flops, results, strict=True)),
                mlx_peak_mib=max((r["peak_mib"] for r in results if r["peak_mib"] is not None), default=None),
                rss_mib=max((r["peak_rss_mib"] for r in results if r["peak_rss_mib"]), default=None),
                load_s=statistics.median(r["load_s"] for r in results),
                p50_query_ms=statistics.median(r["p50_query_ms"] for r in results),
                min_cos=agreement(res, job), blas="; ".join(sorted({r["blas"] for r in results})))  # fmt: skip


def summarize(res: Results) -> list[Row]:
    rows = []
    for job in res.jobs:
        row, results = timed_row(res, job), list(results_of(res, job.key).values())
        row.errors = [f"round {x.index + 1}: {x.errors[job.key]}" for x in res.rounds if job.key in x.errors]
        row.figures = figures(res, job, results) if results else {}
        if job.subset:
            row.ratios[SUBSET_RATIO] = ratio(row.tps, per_round(res, f"{job.model}-{JINA}-float32", True))
        else:
            row.ratios = {title: ratio(row.tps, per_round(res, f"{job.model}-{suffix}")) for title, suffix in PEERS}
        rows.append(row)
    return rows


def subset_rows(res: Results, rows: list[Row]) -> list[Row]:
    """The subset rows, each model's after mlx_jina float32 on the same subset."""
    out = []
    for row in rows:
        if row.job.also_subset:
            same = timed_row(res, replace(row.job, setting="float32 (its process's 2nd pass)"), True)
            out.append(replace(same, ratios={SUBSET_RATIO: Ratio(1.0, 1.0, 1.0)}))
        elif row.job.subset:
            out.append(row)
    return out


def engine_name(job: Job) -> str:
    names = {JINA: f"mlx_jina {version('mlx-jina')}", MLX_EMBEDDINGS: f"mlx-embeddings {version('mlx-embeddings')}"}
    return names.get(job.engine, f"transformers {version('transformers')} (torch CPU)")


def cell(x, spec: str) -> str:
    return "—" if x is None else format(x, spec)


def ratio_cell(r: Ratio | None) -> str:
    if r is None:
        return "—"
    same = f"{r.low:.2f}" == f"{r.high:.2f}"
    return f"{r.median:.2f}" if same else f"{r.median:.2f} ({r.low:.2f}–{r.high:.2f})"


def speed_table(rows: list[Row], titles: list[str]) -> list[str]:
    lines = []
    for row in rows:
        j, s = row.job, row.spread
        if s is None:
            why = "not installed" if not row.errors else "failed (see notes)"
            lines.append([engine_name(j), j.model, j.setting, why, "—", "—"] + ["—"] * len(titles))
        else:
            lines.append([engine_name(j), j.model, j.setting, *(f"{v:,.0f}" for v in s),
                          *(ratio_cell(row.ratios.get(t)) for t in titles)])  # fmt: skip
    return table(["engine", "model", "weights / batching", "tokens/s min", "median", "max", *titles], lines)


def detail_table(rows: list[Row]) -> list[str]:
    return table(["engine", "model", "weights / batching", *(title for title, _, _ in DETAIL)],
                 [[engine_name(r.job), r.job.model, r.job.setting, *(cell(r.figures.get(k), f) for _, k, f in DETAIL)]
                  for r in rows if r.spread is not None])  # fmt: skip


def run_facts(res: Results, rows: list[Row], command: str, date: str, seconds: float) -> dict:
    s, small = res.settings, res.works[next(iter(res.works))]
    kinds = {k: small.kinds.count(k) for k in ("query", "passage", "document")}
    blas: dict[str, set[str]] = {}
    for row in rows:
        if row.figures.get("blas"):
            blas.setdefault(engine_name(row.job), set()).update(row.figures["blas"].split("; "))
    return {
        "command": command, "date": date, "machine": machine(),
        "load average at start / end": f"{res.load[0]} / {res.load[1]}",
        "versions": f"Python {platform.python_version()}, MLX {version('mlx')}, mlx_jina "
        f"{version('mlx-jina')}, torch {version('torch')}, transformers "
        f"{version('transformers')}, mlx-embeddings {version('mlx-embeddings')}",
        **{f"model {n}": describe(m) for n, m in res.models.items()},
        "corpus": f"{len(small.ids):,} texts ({kinds}), {small.tokens():,} tokens",
        "subset (slow settings)": f"{len(small.subset)} texts, {small.tokens(small.subset):,} tokens",
        "rounds x timed passes": f"{s.rounds} x {s.passes}, each after an untimed pass",
        "torch threads": s.torch_threads,
        **{f"BLAS, {e}": ", ".join(sorted(b)) for e, b in blas.items()},
        "seconds": round(seconds),
    }  # fmt: skip


def row_json(row: Row) -> dict:
    j = row.job
    return dict(engine=j.engine, model=j.model, setting=j.setting, subset=j.subset, tokens_per_s=row.spread,
                passes=row.passes, ratios={t: None if r is None else vars(r) for t, r in row.ratios.items()},
                **{k: row.figures.get(k) for _, k, _ in DETAIL}, errors=row.errors)  # fmt: skip


def report(res: Results, command: str, date: str, seconds: float) -> tuple[str, dict]:
    """The run's tables (Markdown) and everything in them (JSON)."""
    rows = summarize(res)
    full, subset = [r for r in rows if not r.job.subset], subset_rows(res, rows)
    layers = {n: m.config["num_hidden_layers"] for n, m in res.models.items()}
    facts = run_facts(res, rows, command, date, seconds)
    notes = res.notes + [f"{row.job.key}: {e}" for row in rows for e in row.errors]
    rounds = [dict(index=x.index, order=x.order, load=x.load, seconds=x.seconds) for x in res.rounds]
    out = [f"## bench_encode, layers: {', '.join(f'{n} {d}' for n, d in layers.items())}", "", "### Run", ""]
    out += table(["", ""], facts.items()) + ["", "### Tokens/s over the whole corpus", ""]
    out += speed_table(full, [t for t, _ in PEERS]) + ["", "### The slow settings, on the subset", ""]
    out += speed_table(subset, [SUBSET_RATIO]) + ["", "### Per row", ""] + detail_table(rows)
    out += ["", "### Rounds", ""] + table(["round", "load avg", "wall s", "order"], [
        [x["index"] + 1, f"{x['load']:.2f}", f"{x['seconds']:.0f}", ", ".join(x["order"])] for x in rounds])
    out += (["", "### Notes", ""] + [f"- {x}" for x in notes]) if notes else []
    data = dict(facts, layers=layers, rows=[row_json(r) for r in full],
                subset_rows=[row_json(r) for r in subset], rounds=rounds, notes=notes)  # fmt: skip
    return "\n".join(out) + "\n", data
