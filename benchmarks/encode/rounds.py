"""Interleaved rounds of fresh processes.

Round r runs every job once, each in a process of its own, in an order rotated by
r/rounds of the list, and records the machine's load average at its start. A process
that fails leaves its row's round empty, with the error kept as a note.
"""

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from .blas import torch_env
from .jobs import Job, rotated
from .progress import log

BENCHMARKS = Path(__file__).resolve().parents[1]
TIMEOUT_S = 1800  # one process; a hung one must not hold the run forever


@dataclass
class Round:
    index: int
    order: list[str]  # job keys, in the order they ran
    load: float  # 1-minute load average at the round's start
    results: dict[str, dict] = field(default_factory=dict)  # job key -> its JSON
    errors: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0


def launch(run: Path, r: int, args: list[str], env: dict[str, str]) -> str | None:
    """Run the runner once; None on success, else the tail of its stderr."""
    env = dict(env, PYTHONPATH=os.pathsep.join([str(BENCHMARKS), env.get("PYTHONPATH", "")]))
    cmd = [sys.executable, "-m", "encode.runner", "--run-dir", str(run), "--round", str(r)]
    try:
        done = subprocess.run(cmd + args, env=env, capture_output=True, text=True,
                              timeout=TIMEOUT_S, check=False)
    except subprocess.TimeoutExpired:
        return f"timed out after {TIMEOUT_S} s"
    if done.returncode:
        return f"exit {done.returncode}: {done.stderr.strip()[-800:]}"
    return None


def run_round(
    run: Path, r: int, rounds: int, jobs: list[Job], grouped: bool
) -> Round:
    """One round. `grouped` (--smoke only): one process per engine, not per job."""
    started = time.perf_counter()
    load = os.getloadavg()[0]
    log(f"round {r + 1}/{rounds}: load average {load:.2f}")
    order = rotated(jobs, r, rounds)
    batches = [[j] for j in order]
    if grouped:
        engines = list(dict.fromkeys(j.engine for j in order))
        batches = [[j for j in order if j.engine == e] for e in engines]
    out = Round(r, [j.key for j in order], load)
    for group in batches:
        keys = [j.key for j in group]
        t = time.perf_counter()
        env = dict(os.environ) if group[0].uses_mlx else torch_env()
        error = launch(run, r, keys, env)
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
