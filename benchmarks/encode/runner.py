"""One measurement in a fresh process: an engine's jobs.

    PYTHONPATH=benchmarks python -m encode.runner --run-dir DIR --round R KEY [KEY ...]

The run folder (rounds.py writes it) holds models.json, jobs.json and one workload per
model. Each job writes DIR/round-R/KEY.json and its vectors as KEY.npy. A job warms up with one untimed pass over the very batches it times
(every shape compiled and cached), then times `passes` passes. The benchmark runs one job
per process; only --smoke groups an engine's jobs into one process, to stay short.
"""

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

from .corpus import Workload
from .jobs import JINA, MLX_EMBEDDINGS, Job, load_jobs
from .passes import p50_ms
from .shapes import Model



def make_engine(job: Job, model: Model, process: dict):
    # Imported here: a torch process never loads MLX, nor an MLX one torch.
    if job.engine == JINA:
        from .jina_engine import MlxJina

        return MlxJina(model, job.setting)
    if job.engine == MLX_EMBEDDINGS:
        from .mlx_embeddings_engine import MlxEmbeddings

        return MlxEmbeddings(model, job.setting, job.batches)
    from .torch_engine import Transformers

    return Transformers(model, job.setting, job.batches, process["torch_threads"])


def backend_blas(uses_mlx: bool) -> str:
    from .blas import mlx_blas, torch_blas

    if uses_mlx:
        import mlx_jina  # noqa: F401 - before MLX, as in every MLX process
        import mlx.core  # noqa: F401 - maps MLX's BLAS into the process

        return mlx_blas()
    return torch_blas()


def timed_passes(engine, work: Workload, rows: list[int], passes: int):
    """One untimed pass over `rows` (the same batches, so every timed shape is warm),
    then `passes` timed ones: their figures (tokens/s the median) and the last pass."""
    engine.encode(work, rows)
    done = [engine.encode(work, rows) for _ in range(passes)]
    rates = sorted(d.real_tokens / d.seconds for d in done)
    figures = dict(
        seconds=statistics.median(d.seconds for d in done),
        real_tokens=done[-1].real_tokens,
        padded_tokens=done[-1].padded_tokens,
        tokens_per_s=statistics.median(rates),
        pass_tokens_per_s=rates,
        batches=done[-1].batches,
    )
    return figures, done[-1]


def run_job(job: Job, model: Model, work: Workload, out: Path, process: dict) -> dict:
    """Load, warm up, timed passes (the last one's vectors saved), p50 of one query."""
    engine = make_engine(job, model, process)
    t = time.perf_counter()
    engine.load()
    load_s = time.perf_counter() - t
    engine.reset_peak()
    rows = work.subset if job.subset else list(range(len(work.ids)))
    figures, done = timed_passes(engine, work, rows, process["passes"])
    result = dict(key=job.key, rows=rows, peak_mib=engine.peak_mib()) | figures
    np.save(out / f"{job.key}.npy", done.vectors.astype(np.float32))
    if job.also_subset:
        result["subset_pass"] = timed_passes(engine, work, work.subset, process["passes"])[0]
    result["p50_query_ms"] = p50_ms(lambda: engine.query(work), process["query_calls"])
    result["load_s"] = load_s
    result["blas"] = backend_blas(job.uses_mlx)
    result["peak_rss_mib"] = peak_rss_mib()
    return result


def peak_rss_mib() -> float | None:
    """This process's peak resident memory. VmHWM, not getrusage's ru_maxrss, which
    keeps the parent's peak across fork and exec."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--run-dir", type=Path, required=True)
    p.add_argument("--round", type=int, required=True)
    p.add_argument("keys", nargs="*")
    args = p.parse_args(argv)
    run = args.run_dir
    models = {
        d["name"]: Model.from_json(d)
        for d in json.loads((run / "models.json").read_text())
    }
    process = json.loads((run / "process.json").read_text())
    out = run / f"round-{args.round}"
    out.mkdir(exist_ok=True)
    started = dict(started=time.time(), load=os.getloadavg())
    jobs = load_jobs(run / "jobs.json")
    for key in args.keys:
        job = jobs[key]
        work = Workload.load(run / f"workload-{job.model}.json")
        print(f"round {args.round}: {key} ...", file=sys.stderr, flush=True)
        result = run_job(job, models[job.model], work, out, process) | started
        (out / f"{key}.json").write_text(json.dumps(result))


if __name__ == "__main__":
    main()
