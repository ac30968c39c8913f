"""Rounds into rows: min / median / max tokens/s over every timed pass, ratios of medians
with their per-round spread, padding efficiency, executed GFLOP/s, memory, agreement."""

import statistics
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .flops import batches_flops
from .jobs import JINA, Job
from .passes import min_cos
from .suite import Results

# The ratio columns: (title, job key suffix of the peer each row is divided by).
PEERS = [
    ("× mlx-emb (README)", "mlx-embeddings-documented"),
    ("× mlx-emb (our plan)", "mlx-embeddings-plan"),
    ("× torch (ST)", "transformers-documented"),
    ("× torch (our plan)", "transformers-plan"),
]


@dataclass
class Ratio:
    median: float  # median tokens/s over the peer's median tokens/s
    low: float  # lowest and highest of the per-round ratios (same round, same state)
    high: float


@dataclass
class Row:
    job: Job
    tps: dict[int, float]  # round -> median tokens/s of its passes
    passes: list[float] = field(default_factory=list)  # every timed pass, every round
    ratios: dict[str, Ratio | None] = field(
        default_factory=dict
    )  # column title -> ratio
    padding: float | None = None
    gflops: float | None = None  # FLOPs as executed / time, median over the rounds
    peak_mib: float | None = None
    rss_mib: float | None = None
    load_s: float | None = None
    p50_ms: float | None = None
    blas: str = ""
    cosine: float | None = None
    errors: list[str] = field(default_factory=list)

    @property
    def spread(self) -> tuple[float, float, float] | None:
        v = self.passes or list(self.tps.values())
        return (min(v), statistics.median(v), max(v)) if v else None


def results_of(res: Results, key: str, subset_pass: bool = False) -> dict[int, dict]:
    out = {}
    for rnd in res.rounds:
        if (r := rnd.results.get(key)) is not None:
            r = r.get("subset_pass") if subset_pass else r
            if r:
                out[rnd.index] = r
    return out


def per_round(res: Results, key: str, subset_pass: bool = False) -> dict[int, float]:
    return {i: r["tokens_per_s"] for i, r in results_of(res, key, subset_pass).items()}


def all_passes(res: Results, key: str, subset_pass: bool = False) -> list[float]:
    found = results_of(res, key, subset_pass).values()
    return [x for r in found for x in r.get("pass_tokens_per_s", [r["tokens_per_s"]])]


def ratio(a: dict[int, float], b: dict[int, float]) -> Ratio | None:
    both = sorted(set(a) & set(b))
    if not both:
        return None
    each = [a[r] / b[r] for r in both]
    med = statistics.median(a.values()) / statistics.median(b.values())
    return Ratio(med, min(each), max(each))


def flop_rate(res: Results, job: Job) -> float | None:
    """Median executed GFLOP/s over the rounds (the FLOPs as batched, over wall time)."""
    model, work = res.models[job.model], res.works[job.model]
    lengths = [len(r) for r in work.ids]
    gflops = []
    for rnd in res.rounds:
        if (r := rnd.results.get(job.key)) is not None:
            f = batches_flops(model.config, model.causal, job.engine, r["batches"], lengths)
            gflops.append(f / r["seconds"] / 1e9)
    return statistics.median(gflops) if gflops else None


def agreement(res: Results, job: Job) -> float | None:
    """Lowest min-cosine over the rounds against mlx_jina float32's first vectors."""
    ref_key = f"{job.model}-{JINA}-float32"
    ref_round = next((x for x in res.rounds if ref_key in x.results), None)
    if ref_round is None:
        return None
    run = res.models[job.model].folder.parent
    ref = np.load(run / f"round-{ref_round.index}" / f"{ref_key}.npy")
    worst = None
    for rnd in res.rounds:
        if (r := rnd.results.get(job.key)) is None:
            continue
        vectors = np.load(Path(run / f"round-{rnd.index}" / f"{job.key}.npy"))
        cos = min_cos(vectors, ref[r["rows"]])
        worst = cos if worst is None else min(worst, cos)
    return worst


def summarize(res: Results) -> list[Row]:
    rows = []
    for job in res.jobs:
        results = [x.results[job.key] for x in res.rounds if job.key in x.results]
        row = Row(job, per_round(res, job.key), all_passes(res, job.key))
        row.errors = [
            f"round {x.index + 1}: {x.errors[job.key]}"
            for x in res.rounds
            if job.key in x.errors
        ]
        if results:
            first = results[0]
            row.padding = first["real_tokens"] / first["padded_tokens"]
            row.gflops = flop_rate(res, job)
            peaks = [r["peak_mib"] for r in results if r["peak_mib"] is not None]
            row.peak_mib = max(peaks) if peaks else None
            rss = [r["peak_rss_mib"] for r in results if r["peak_rss_mib"]]
            row.rss_mib = max(rss) if rss else None
            row.load_s = statistics.median(r["load_s"] for r in results)
            row.p50_ms = statistics.median(r["p50_query_ms"] for r in results)
            row.blas = "; ".join(sorted({r["blas"] for r in results}))
            row.cosine = agreement(res, job)
        rows.append(row)
    for row in rows:
        add_ratios(res, row)
    return rows


def add_ratios(res: Results, row: Row) -> None:
    job = row.job
    if job.subset:
        base = per_round(res, f"{job.model}-{JINA}-float32", subset_pass=True)
        row.ratios["× mlx_jina float32 (subset)"] = ratio(row.tps, base)
        return
    for title, suffix in PEERS:
        row.ratios[title] = ratio(row.tps, per_round(res, f"{job.model}-{suffix}"))


def subset_float32(res: Results, model: str) -> dict[int, float]:
    """mlx_jina float32 on the subset (its process's second pass), per round."""
    return per_round(res, f"{model}-{JINA}-float32", subset_pass=True)
