"""One measurement in a fresh process: an engine's jobs.

    PYTHONPATH=benchmarks python -m encode.runner --run-dir DIR --round R KEY [KEY ...]

The run folder (suite.py writes it) holds models.json, jobs.json, process.json and one
workload per model. Each job warms up with one untimed pass over the very batches it
times (every shape compiled and cached), times `passes` passes, and writes
DIR/round-R/KEY.json and its vectors as KEY.npy, with the BLAS the process multiplied
float32 with: MLX's Linux CPU wheel links a bundled reference BLAS (netlib, a few
GFLOP/s) unless mlx_jina loads the system OpenBLAS first (bench_blas.py compares the
two); MLX's 16-bit and quantized matmuls never call BLAS; torch brings its own (MKL in
the x86 CPU wheels).
"""

import argparse
import json
import os
import statistics
import time
from pathlib import Path

import numpy as np

from internals import log, mlx_blas, proc_mib, timed

from .corpus import Workload
from .jobs import JINA, LOAD, MLX_EMBEDDINGS, Job, load_jobs
from .shapes import Model

def make_engine(job: Job, model: Model, process: dict):
    # Imported here: a torch process never loads MLX, nor an MLX one torch.
    from .engines import MlxEmbeddings, MlxJina, Transformers

    if job.engine == JINA:
        return MlxJina(model, LOAD[job.setting])
    if job.engine == MLX_EMBEDDINGS:
        return MlxEmbeddings(model, job.batches)
    return Transformers(model, job.batches, process["torch_threads"])


def blas(uses_mlx: bool) -> str:
    """What this process multiplied float32 with."""
    if uses_mlx:
        return mlx_blas()
    import torch

    name = "torch's own BLAS"
    for line in torch.__config__.show().splitlines():
        if "Math Kernel Library Version" in line:
            name = f"MKL {line.split('Version')[1].split('-')[0].strip()} (bundled with torch)"
    return f"{name}, threads: {torch.get_num_threads()}"


def timed_passes(engine, work: Workload, rows: list[int], passes: int):
    """One untimed pass over `rows` (the same batches, so every timed shape is warm),
    then `passes` timed ones: their figures (tokens/s the median) and the last pass."""
    engine.encode(work, rows)
    done = [engine.encode(work, rows) for _ in range(passes)]
    rates = sorted(d.real_tokens / d.seconds for d in done)
    figures = dict(seconds=statistics.median(d.seconds for d in done), real_tokens=done[-1].real_tokens,
                   padded_tokens=done[-1].padded_tokens, tokens_per_s=statistics.median(rates),
                   pass_tokens_per_s=rates, batches=done[-1].batches)  # fmt: skip
    return figures, done[-1]


def call_ms(fn, calls: int, warm: int = 2) -> list[float]:
    """Milliseconds of each of `calls` calls of `fn`, after `warm` untimed ones."""
    for _ in range(warm):
        fn()
    return [timed(fn)[1] * 1e3 for _ in range(calls)]


def run_job(job: Job, model: Model, work: Workload, out: Path, process: dict) -> dict:
    """Load, warm up, timed passes (the last one's vectors saved), p50 of one query."""
    engine = make_engine(job, model, process)
    load_s = timed(engine.load)[1]
    engine.reset_peak()
    rows = work.subset if job.subset else list(range(len(work.ids)))
    figures, done = timed_passes(engine, work, rows, process["passes"])
    result = dict(key=job.key, rows=rows, peak_mib=engine.peak_mib()) | figures
    np.save(out / f"{job.key}.npy", done.vectors.astype(np.float32))
    if job.also_subset:
        result["subset_pass"] = timed_passes(engine, work, work.subset, process["passes"])[0]
    query_ms = call_ms(lambda: engine.query(work), process["query_calls"])
    return result | dict(p50_query_ms=statistics.median(query_ms), load_s=load_s,
                         blas=blas(job.uses_mlx), peak_rss_mib=proc_mib("VmHWM"))  # fmt: skip


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--run-dir", type=Path, required=True)
    p.add_argument("--round", type=int, required=True)
    p.add_argument("keys", nargs="*")
    args = p.parse_args(argv)
    run = args.run_dir
    models = {d["name"]: Model.from_json(d) for d in json.loads((run / "models.json").read_text())}
    process = json.loads((run / "process.json").read_text())
    out = run / f"round-{args.round}"
    out.mkdir(exist_ok=True)
    started = dict(started=time.time(), load=os.getloadavg())
    jobs = load_jobs(run / "jobs.json")
    for key in args.keys:
        job = jobs[key]
        work = Workload.load(run / f"workload-{job.model}.json")
        log(f"round {args.round}: {key} ...")
        result = run_job(job, models[job.model], work, out, process) | started
        (out / f"{key}.json").write_text(json.dumps(result))


if __name__ == "__main__":
    main()
