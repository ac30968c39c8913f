"""One benchmark run: checkpoints, corpus and jobs in a run folder, then the rounds."""

import gc
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import mlx_jina

from .corpus import CorpusSpec, Workload, make_corpus, single_token_words, workload
from .jobs import Job, plan_jobs, runnable, save_jobs
from .progress import log
from .rounds import Round, run_round
from .shapes import Model, build_model, mlx_embeddings_folder


@dataclass
class Settings:
    spec: CorpusSpec
    shapes: dict  # name -> (arch, widths): shapes.REAL or shapes.TINY
    layers: int | None  # None: the published depth
    rounds: int
    grouped: bool = False  # --smoke: one process per engine
    # 1 by default: on a small shared machine torch's default (every core) measured 4x
    # slower than 1 thread on a 1 x 128 batch; --torch-threads sweeps it.
    torch_threads: int = 1
    query_calls: int = 10  # timed single queries per process (after 2 untimed)
    passes: int = 5  # timed passes per process, after one untimed pass


@dataclass
class Results:
    settings: Settings
    models: dict[str, Model]
    works: dict[str, Workload]
    jobs: list[Job]  # every row, run or not
    rounds: list[Round]
    notes: list[str] = field(default_factory=list)
    load: tuple[str, str] = ("?", "?")  # the machine's load average, start and end


def prepare(run: Path, s: Settings) -> tuple[dict[str, Model], dict[str, Workload]]:
    """Random checkpoints, and the corpus tokenized by mlx_jina for each model."""
    models = {
        name: build_model(run, name, arch, s.layers, seed=i, **shape)
        for i, (name, (arch, shape)) in enumerate(s.shapes.items())
    }
    embedders = {name: mlx_jina.load(m.folder) for name, m in models.items()}
    words = sorted(
        set.intersection(*(set(single_token_words(e)) for e in embedders.values()))
    )
    texts, kinds = make_corpus(words, s.spec)
    works = {name: workload(e, texts, kinds, s.spec) for name, e in embedders.items()}
    # The parent holds no model while the measured processes run.
    del embedders
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


def load_average() -> str:
    return ", ".join(f"{x:.2f}" for x in os.getloadavg())


def run(run_dir: Path, s: Settings) -> Results:
    load_before = load_average()
    run_dir.mkdir(parents=True, exist_ok=True)
    models, works = prepare(run_dir, s)
    n = len(works["small"].ids)
    log(f"corpus: {n} texts, {works['small'].tokens():,} tokens (small's tokenizer)")
    notes: list[str] = []
    jobs = plan_jobs(works, notes)
    write_run_folder(run_dir, s, models, works, jobs)
    todo = runnable(jobs)
    rounds = [
        run_round(run_dir, r, s.rounds, todo, s.grouped)
        for r in range(s.rounds)
    ]
    res = Results(s, models, works, jobs, rounds, notes)
    res.load = (load_before, load_average())
    return res
