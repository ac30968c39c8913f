"""The one-command GPU check: GPU tests, speed and memory of full-size random models,
and the same weights through transformers on torch. Prints the tables, writes
DIR/gpu_check.json and DIR/gpu_check.md (DIR: --out, else $OUT, else ./gpu_check_out).

    python3 benchmarks/gpu_check.py [--out DIR] [--budget SECONDS] [--smoke]

Steps, each skipped with a note when it would pass --budget (420 s): `pytest -m gpu
tests/test_gpu.py`; MLX's bf16 matmul rate; random checkpoints (tests/builders, base
layout, four adapters, float16 files) of small (28 layers) and nano (12); per model and
precision (bf16, fp32, fp16, 8-bit, 4-bit) tokens/s on a seeded lognormal corpus of random
ids after a warm-up pass over the same batches, FLOP/s against the matmul rate,
`encode_query` p50/p99, peak memory of one 8K input (32K for small) in a child process;
transformers (encode/torch_engine.py, sdpa, adapter merged, bf16 on CUDA) on the same
weights and batches, with cosines against mlx_jina. --smoke: the same path on the CPU
with tiny models in about a minute (tests/test_gpu_check_smoke.py).
"""

import argparse
import importlib.util
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent)]  # checkpoint, gpu/, internals; mlx_jina

import mlx_jina  # noqa: E402,F401 - before MLX: on Linux it loads the system BLAS
from gpu import mlx_runs, report, setup  # noqa: E402

ORDER = ("bf16", "fp32", "fp16", "8-bit", "4-bit")


class Budget:
    """Runs steps while the time spent plus the longest step of the same kind so far
    fits (the kind is the name's first word: gpu, matmul, checkpoints, mlx, torch)."""

    def __init__(self, seconds: float, notes: list[str]):
        self.seconds, self.notes = seconds, notes
        self.start, self.longest = time.perf_counter(), {}

    def spent(self) -> float:
        return time.perf_counter() - self.start

    def run(self, name: str, fn, *args):
        kind = name.split()[0]
        if self.spent() + self.longest.get(kind, 0.0) > self.seconds:
            note = f"skipped: {self.spent():.0f} s spent, budget {self.seconds:.0f} s"
            self.notes.append(f"{name} {note}")
            return {"skipped": note}
        t = time.perf_counter()
        try:
            out = fn(*args)
        except Exception as e:  # noqa: BLE001 - one failed step is a row, not the end
            self.notes.append(f"{name} failed: {type(e).__name__}: {e}")
            out = {"error": f"{type(e).__name__}: {str(e)[:300]}"}
        took = time.perf_counter() - t
        self.longest[kind] = max(self.longest.get(kind, 0.0), took)
        print(f"[{self.spent():6.1f} s] {name}: {took:.1f} s", file=sys.stderr, flush=True)
        return out


def gpu_tests(timeout: float, smoke: bool) -> dict:
    """`pytest -m gpu tests/test_gpu.py` in a child; its summary line and exit code."""
    if importlib.util.find_spec("pytest") is None:
        return {"summary": "not run: pytest is not installed on this machine", "exit_code": None}
    cmd = [sys.executable, "-m", "pytest", "-m", "gpu", "-q", "-rs", "-p", "no:cacheprovider",
           "tests/test_gpu.py"]
    try:
        run = subprocess.run(cmd, check=False, cwd=HERE.parent, capture_output=True, text=True,
                             timeout=timeout, env=mlx_runs.child_env())
    except subprocess.TimeoutExpired:
        return {"summary": f"timed out after {timeout:.0f} s", "exit_code": None}
    tail = (run.stdout + run.stderr).strip().splitlines()
    summary = next((s for s in reversed(tail) if re.search(r"\d+ (passed|failed|skipped|error)", s)),
                   tail[-1] if tail else "")
    return {"summary": summary.strip("= "), "exit_code": run.returncode,
            "tail": "\n".join(tail[-40:])}


def parse(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path,
                   default=Path(os.environ.get("OUT") or "gpu_check_out"))
    p.add_argument("--budget", type=float, default=420.0, help="seconds (default 420)")
    p.add_argument("--smoke", action="store_true", help="CPU, tiny models, < 1 minute")
    p.add_argument("--texts", type=int, help="corpus size (default 384; --smoke 16)")
    p.add_argument("--skip-tests", action="store_true", help="leave out pytest -m gpu")
    return p.parse_args(argv)


def measure_models(args, budget: Budget, ms, result: dict) -> None:
    """The mlx_jina rows (bf16 first) and the torch rows right after each model's bf16
    (fp32 in --smoke: torch runs float32 on the CPU)."""
    import mlx.core as mx

    smoke = args.smoke
    calls, long_timeout = (5, 60) if smoke else (100, 90)
    torch_label = "fp32" if smoke else "bf16"
    order = ("fp32", "bf16") if smoke else ORDER
    kwargs = dict(setup.PRECISIONS)
    if smoke:  # the CPU runs quantized weights with bf16 activations several times slower
        kwargs |= {k: v | {"dtype": "float32"} for k, v in kwargs.items() if "bits" in v}
    rate = result["matmul"].get("tflops")
    corpora = {m.name: setup.corpus(args.texts, m.config["vocab_size"],
                                    300 if smoke else 2000, seed=7) for m in ms}
    for label in order + tuple(k for k in ORDER if k not in order):
        for m in ms:
            ids = corpora[m.name]
            row = budget.run(f"mlx {m.name} {label}", mlx_runs.run_precision, m, ids,
                             kwargs[label], calls, long_timeout)
            if rate and "flops_per_s" in row:
                row["matmul_fraction"] = round(row["flops_per_s"] / (rate * 1e12), 4)
            result["mlx"].setdefault(m.name, {})[label] = row
            if label == torch_label:
                result["torch"][m.name] = torch_step(budget, m, ids, row, smoke)
            row.pop("vectors", None), row.pop("batches", None)
            mx.clear_cache()


def torch_step(budget: Budget, m, ids, row: dict, smoke: bool) -> dict:
    if "vectors" not in row:
        return {"skipped": "no mlx_jina row to compare with"}
    try:
        import torch
        import transformers  # noqa: F401
    except ImportError as e:
        return {"skipped": f"not importable: {e}"}
    if not smoke and not torch.cuda.is_available():
        return {"skipped": "torch has no CUDA here (a full-size CPU run would not fit)"}
    out = budget.run(f"torch {m.name}", run_torch, m, ids, row["batches"], row["vectors"])
    if "tokens_per_s" in out:
        out["mlx_ratio"] = round(row["tokens_per_s"] / out["tokens_per_s"], 3)
    return out


def run_torch(m, ids: list[list[int]], batches, mlx_vectors: np.ndarray) -> dict:
    """transformers on mlx_jina's batches, after a warm-up pass over the same batches;
    tokens/s and the cosine of each vector with mlx_jina's (run in the same dtype)."""
    import torch
    from encode.passes import batched_pass
    from encode.torch_engine import Transformers

    cuda = torch.cuda.is_available()
    engine = Transformers(m, "mlx_jina's batches", batches, None, setup.TASK, cuda)
    t = time.perf_counter()
    engine.load()
    load_s = time.perf_counter() - t
    rows = list(range(len(ids)))
    batched_pass(engine.embed, ids, rows, batches)  # warm-up: every timed shape
    done = batched_pass(engine.embed, ids, rows, batches)
    cos = (done.vectors * mlx_vectors).sum(1)
    del engine
    if cuda:
        torch.cuda.empty_cache()
    return {"device": "cuda" if cuda else "cpu", "dtype": "bfloat16" if cuda else "float32",
            "load_s": round(load_s, 2), "seconds": round(done.seconds, 3),
            "tokens_per_s": round(done.real_tokens / done.seconds, 1),
            "cosine_min": round(float(cos.min()), 6), "cosine_mean": round(float(cos.mean()), 6)}


def main(argv=None) -> int:
    args = parse(argv)
    args.texts = args.texts or (16 if args.smoke else 384)
    notes: list[str] = []
    budget = Budget(args.budget, notes)
    result = {"mode": "smoke: CPU, tiny models" if args.smoke else "full size",
              "budget_s": args.budget, "notes": notes, "mlx": {}, "torch": {}}
    result["environment"] = setup.device_facts()
    if not (mlx_embeddings := result["environment"]["mlx_embeddings"]):
        notes.append("mlx-embeddings is not installed here: no mlx-embeddings rows.")
    else:  # say so, or a reader would look for rows that this check never runs
        notes.append(f"mlx-embeddings {mlx_embeddings} is installed, but this check runs no "
                     "mlx-embeddings rows (benchmarks/bench_encode.py compares it on the CPU).")
    if args.smoke:
        notes.append("--smoke: CPU, 2-layer hidden-64 models; figures test the path only.")
    elif not result["environment"]["gpu_available"]:
        notes.append("MLX sees no GPU: these are CPU figures at full size.")
    notes.append("FLOP/s counts the linears of every layer on every padded token and the "
                 "full L x L attention square; tokens/s counts real tokens.")
    if args.skip_tests:
        result["gpu_tests"] = {"skipped": "--skip-tests"}
    else:
        result["gpu_tests"] = budget.run("gpu tests", gpu_tests, min(210, args.budget / 2),
                                         args.smoke)
    n = 256 if args.smoke else 8192
    result["matmul"] = budget.run(
        "matmul", lambda: {"n": n, "tflops": mlx_runs.matmul_rate(n) / 1e12})
    ms = setup.models(args.smoke)
    with tempfile.TemporaryDirectory(prefix="gpu_check_") as tmp:
        result["checkpoints"] = budget.run("checkpoints", setup.build_checkpoints,
                                           Path(tmp), ms, args.smoke)
        if "error" not in result["checkpoints"]:
            measure_models(args, budget, ms, result)
    result["seconds"] = round(budget.spent(), 1)
    report.write(args.out, result)
    print(f"wrote {args.out}/gpu_check.json and gpu_check.md", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
