"""One benchmark run: checkpoints, corpus and jobs in a run folder, then interleaved rounds.

Round r runs every job once, each in a fresh process (encode/runner.py), in an order
rotated by r/rounds of the list, so every engine takes early, middle and late places,
and records the machine's load average at its start. A process that fails leaves its
row's round empty, with the error kept as a note.
"""

import gc
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import mlx_jina

from internals import log

from .corpus import CorpusSpec, Workload, make_corpus, single_token_words, workload
from .jobs import Job, installed, plan_jobs, save_jobs
from .shapes import Model, build_model, mlx_embeddings_folder

BENCHMARKS = Path(__file__).resolve().parents[1]
TIMEOUT_S = 1800  # one process; a hung one must not hold the run forever


@dataclass
class Settings:
    spec: CorpusSpec
    shapes: dict  # name -> widths: shapes.REAL or shapes.TINY_SHAPES
    layers: int | None  # None: the published depth
    rounds: int
    grouped: bool = False  # --smoke: one process per engine
    # 1 by default: on a small shared machine torch's default (every core) measured 4x
    # slower than 1 thread on a 1 x 128 batch; --torch-threads sweeps it.
    torch_threads: int = 1
    query_calls: int = 10  # timed single queries per process (after 2 untimed)
    passes: int = 5  # timed passes per process, after one untimed pass


@dataclass
class Round:
    index: int
    order: list[str]  # job keys, in the order they ran
    load: float  # 1-minute load average at the round's start
    results: dict[str, dict] = field(default_factory=dict)  # job key -> its JSON
    errors: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0


@dataclass
class Results:
    settings: Settings
    models: dict[str, Model]
    works: dict[str, Workload]
    jobs: list[Job]  # every row, run or not
    rounds: list[Round]
    notes: list[str]
    load: tuple[str, str]  # the machine's load average, start and end


def prepare(run: Path, s: Settings) -> tuple[dict[str, Model], dict[str, Workload]]:
    """Random checkpoints, and the corpus tokenized by mlx_jina for each model."""
    models = {name: build_model(run, name, s.layers, seed=i, **shape)
              for i, (name, shape) in enumerate(s.shapes.items())}  # fmt: skip
    embedders = {name: mlx_jina.load(m.folder) for name, m in models.items()}
    words = sorted(set.intersection(*(set(single_token_words(e)) for e in embedders.values())))
    texts, kinds = make_corpus(words, s.spec)
    works = {name: workload(e, texts, kinds, s.spec) for name, e in embedders.items()}
    del embedders  # the parent holds no model while the measured processes run
    gc.collect()
    import mlx.core as mx  # here, after mlx_jina: its cpu_blas.py wants to come first

    mx.clear_cache()
    return models, works


def write_run_folder(run: Path, s: Settings, models, works, jobs) -> None:
    process = dict(torch_threads=s.torch_threads, query_calls=s.query_calls, passes=s.passes)
    (run / "process.json").write_text(json.dumps(process))
    (run / "models.json").write_text(json.dumps([m.to_json() for m in models.values()]))
    for name, work in works.items():
        work.save(run / f"workload-{name}.json")
    save_jobs(jobs, run / "jobs.json")
    if "small" in models:
        mlx_embeddings_folder(models["small"].folder)


def launch(run: Path, r: int, keys: list[str], uses_mlx: bool) -> str | None:
    """Run the runner once; None on success, else the tail of its stderr. torch's
    process gets no preloaded OpenBLAS: it multiplies with its own BLAS."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(BENCHMARKS), os.environ.get("PYTHONPATH", "")]))
    if not uses_mlx:
        preload = [p for p in env.pop("LD_PRELOAD", "").split() if "openblas" not in p]
        env |= {"LD_PRELOAD": " ".join(preload)} if preload else {}
    cmd = [sys.executable, "-m", "encode.runner", "--run-dir", str(run), "--round", str(r), *keys]
    try:
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=TIMEOUT_S, check=False)
    except subprocess.TimeoutExpired:
        return f"timed out after {TIMEOUT_S} s"
    return f"exit {done.returncode}: {done.stderr.strip()[-800:]}" if done.returncode else None


def run_round(run: Path, r: int, rounds: int, jobs: list[Job], grouped: bool) -> Round:
    """One round. `grouped` (--smoke only): one process per engine, not per job."""
    started, load = time.perf_counter(), os.getloadavg()[0]
    log(f"round {r + 1}/{rounds}: load average {load:.2f}")
    k = r * len(jobs) // max(rounds, 1)
    order = jobs[k:] + jobs[:k]
    groups = [[j] for j in order]
    if grouped:
        groups = [[j for j in order if j.engine == e] for e in dict.fromkeys(j.engine for j in order)]
    out = Round(r, [j.key for j in order], load)
    for group in groups:
        keys, t = [j.key for j in group], time.perf_counter()
        error = launch(run, r, keys, group[0].uses_mlx)
        for key in keys:
            path = run / f"round-{r}" / f"{key}.json"
            if path.exists():
                out.results[key] = json.loads(path.read_text())
            else:
                out.errors[key] = error or "no result written"
        tps = ", ".join(f"{out.results[k]['tokens_per_s']:,.0f}" for k in keys if k in out.results)
        log(f"  {' '.join(keys)}: {tps or error} tokens/s ({time.perf_counter() - t:.0f} s)")
    out.seconds = time.perf_counter() - started
    return out


def run(run_dir: Path, s: Settings) -> Results:
    load_before = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    run_dir.mkdir(parents=True, exist_ok=True)
    models, works = prepare(run_dir, s)
    log(f"corpus: {len(works['small'].ids)} texts, {works['small'].tokens():,} tokens (small's tokenizer)")
    notes: list[str] = []
    jobs = plan_jobs(works, notes)
    write_run_folder(run_dir, s, models, works, jobs)
    todo = [j for j in jobs if installed(j.engine)]
    rounds = [run_round(run_dir, r, s.rounds, todo, s.grouped) for r in range(s.rounds)]
    return Results(s, models, works, jobs, rounds, notes,
                   (load_before, ", ".join(f"{x:.2f}" for x in os.getloadavg())))  # fmt: skip
