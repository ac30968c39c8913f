"""Packing a batch into one row, against mlx_jina's padded batches (issue 13, item 5).

    LD_PRELOAD=/usr/lib/x86_64-linux-gnu/libopenblas.so.0 \
        python benchmarks/bench_packing.py [--layers 2] [--repeats 3] [--out FILE]

1. FLOPs at the published shapes (all layers): the linear work packing saves (the
   padding) against the attention a dense block-diagonal mask adds, per model, corpus
   and token budget (benchmarks/packing/flops.py);
2. measured on this machine at the published widths with --layers layers (random
   float32 weights, a 4,096-row vocabulary: the per-token work is the model's): the
   same texts as mlx_jina plans them and packed under the same budget, every layout once
   per round, --repeats rounds after a warm-up: tokens/s min / median / max, working
   peak memory, and the cosine of each layout's vectors with mlx_jina's;
3. the decision rule, with the numbers behind it.

Writes --out (default benchmarks/results/packing.md). --flops-only skips step 2 (seconds).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent)]

import mlx_jina  # noqa: E402  (first: it picks the faster BLAS when preloaded)
import mlx.core as mx  # noqa: E402
import numpy as np  # noqa: E402

from checkpoint import NANO, SMALL, build  # noqa: E402
from internals import write_report  # noqa: E402
from packing import corpora, flops, prose, report, timing  # noqa: E402

MODELS = {"small": ("qwen3", SMALL), "nano": ("eurobert", NANO)}
FLOP_CORPORA = (("long-tailed", 64), ("long-tailed", 384), ("long-tailed", 4096),
                ("queries", 256))  # fmt: skip
BUDGETS = (8192, 16384)  # encode's max_batch_tokens default; the server's


def parse(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--budget", type=int, default=8192)
    p.add_argument("--texts", type=int, default=64, help="long-tailed texts measured")
    p.add_argument("--queries", type=int, default=256, help="queries measured")
    p.add_argument("--models", default="small,nano")
    p.add_argument("--flops-only", action="store_true")
    p.add_argument("--out", type=Path, default=HERE / "results" / "packing.md")
    p.add_argument("--save-json", type=Path, help="also write the measurements here")
    p.add_argument("--load-json", type=Path, help="render these measurements, measure none")
    return p.parse_args(argv)


def flop_section() -> tuple[list[str], dict]:
    """The FLOP table, and the figures the decision rule quotes."""
    rows, facts = [], {"saved": [], "saved_384": [], "mask": [], "mask_all": [], "narrow": []}
    for name, (arch, cfg) in MODELS.items():
        for corpus, n in FLOP_CORPORA:
            lengths = [len(r) for r in corpora.CORPORA[corpus](n, 1000)]
            for budget in BUDGETS:
                works = flops.compare_layouts(cfg, arch == "qwen3", lengths, budget)
                rows.append(report.flop_row(name, f"{corpus}, {n}", budget, sum(lengths), works))
                p = works["padded"]
                facts["mask_all"].append(works["mask"].total / p.total)
                if corpus == "long-tailed":
                    saved = (p.total - works["segments"].total) / p.total
                    facts["saved"].append(saved)
                    if n == 384:
                        facts["saved_384"].append(saved)
                    facts["mask"].append(works["mask"].total / p.total)
                    facts["narrow"].append(works["mask, narrow rows"].total / p.total)
    return report.flop_table(rows), facts


def measure_model(name: str, args, root: Path) -> dict[str, dict]:
    arch, _ = MODELS[name]
    folder = build(root / name, arch, num_hidden_layers=args.layers, vocab_size=4096, tasks=())
    embedder = mlx_jina.load(folder, dtype="float32")
    out = {}
    for corpus, n in (("long-tailed", args.texts), ("queries", args.queries)):
        ids = corpora.CORPORA[corpus](n, 4096)
        vs = timing.variants(embedder, [len(r) for r in ids], args.budget)
        t = time.perf_counter()
        out[f"{corpus}, {n} texts"] = timing.compare(vs, ids, args.repeats)
        print(f"{name} {corpus}: {time.perf_counter() - t:.0f} s", file=sys.stderr, flush=True)
    del embedder
    mx.clear_cache()
    return out


def environment() -> list[str]:
    blas = "OpenBLAS preloaded" if "openblas" in os.environ.get("LD_PRELOAD", "") else "MLX's own"
    return [
        f"Date: {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC. MLX {mx.__version__} "
        f"({mx.default_device()}), mlx_jina {mlx_jina.__version__}, numpy {np.__version__}, "
        f"Python {platform.python_version()}, {platform.machine()} Linux, "
        f"{os.cpu_count()} cores; BLAS: {blas}.",
    ]


def command(argv: list[str]) -> str:
    """The measuring options as run (where the files went is left out)."""
    keep, skip = [], False
    for a in argv:
        if skip or a.split("=")[0] in ("--out", "--save-json", "--load-json"):
            skip = not skip and "=" not in a
            continue
        keep.append(a)
    preload = "LD_PRELOAD=/usr/lib/x86_64-linux-gnu/libopenblas.so.0 "
    return (preload + "python benchmarks/bench_packing.py " + " ".join(keep)).strip()


def main(argv=None) -> int:
    args = parse(argv)
    lines = ["# Packing a batch into one row: measured (issue 13, item 5)", "",
             f"Command: `{command(argv or sys.argv[1:])}`", "", *environment(), ""]  # fmt: skip
    table, facts = flop_section()
    measured: dict[str, dict] = {}
    if args.load_json:
        saved = json.loads(args.load_json.read_text())
        measured, lines = saved["measured"], saved["header"]
        vars(args).update(saved.get("settings", {}))
    elif not args.flops_only:
        load = os.getloadavg()[0]
        with tempfile.TemporaryDirectory(prefix="packing_") as tmp:
            for name in args.models.split(","):
                measured[name] = measure_model(name, args, Path(tmp))
        lines += [f"Load average (1 min) at start / end: {load:.1f} / {os.getloadavg()[0]:.1f} "
                  "(other jobs shared this machine: hence interleaved rounds).", ""]  # fmt: skip
        if args.save_json:
            settings = {k: vars(args)[k] for k in ("layers", "repeats", "budget")}
            write_report(args.save_json,
                         json.dumps({"header": lines, "measured": measured, "settings": settings}))
    lines += sections(args, table, facts, measured)
    write_report(args.out, "\n".join(lines) + "\n")  # makes the folder too
    print(f"wrote {args.out}", file=sys.stderr)
    return 0


def sections(args, table: list[str], facts: dict, measured: dict) -> list[str]:
    lines = prose.findings(facts, measured) + prose.method()
    lines += ["## FLOPs at the published shapes", "", *table, ""]
    lines += flops_notes()
    if measured:
        lines += [f"## Measured on the CPU: published widths, {args.layers} layers, float32, "
                  f"budget {args.budget:,} tokens, {args.repeats} rounds", ""]  # fmt: skip
        for name, by_corpus in measured.items():
            for corpus, rows in by_corpus.items():
                lines += report.timing_table(f"{name}, {corpus}", rows, cpu=True) + [""]
    return lines + prose.decision(facts, measured)


def flops_notes() -> list[str]:
    return [
        "Each cell: the attention FLOPs a layout adds, as a share of the padded total, then "
        "its total against padded (below 1 is a saving). Linear FLOPs saved are the same "
        "for every packed layout: all the padding. \"narrow rows\": rows no wider than the "
        "longest text (rounded up to 64), several per pass under the budget. Corpora: "
        "`long-tailed, n` is the GPU check's (lognormal, median ~150, 20–2,000 tokens, seed "
        "7); `queries` are 8–32 tokens.",
        "",
    ]


if __name__ == "__main__":
    sys.exit(main())
