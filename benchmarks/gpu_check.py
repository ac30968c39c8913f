"""The one-command GPU check: GPU tests, speed and memory of full-size random models,
and the same weights through transformers on torch. Prints the tables, writes
DIR/gpu_check.json and DIR/gpu_check.md (DIR: --out, else $OUT, else ./gpu_check_out).

    python3 benchmarks/gpu_check.py [--out DIR] [--budget SECONDS] [--smoke]

Steps, each skipped with a note when it would pass --budget (420 s): `pytest -m gpu
tests/test_gpu.py`; MLX's bf16 matmul rate; random checkpoints (encode/shapes.py: base
layout, four adapters, float16 files) of small (28 layers) and nano (12); per model and
precision (bf16, fp32, fp16, 8-bit, 4-bit) tokens/s of `encode_ids` (mlx_jina's own
batches, one graph in flight) on a seeded lognormal corpus of random ids after a warm-up
pass over the same batches, FLOP/s against the matmul rate, `encode_query` p50/p99, peak
memory of one 8K input (32K for small) in a child process; transformers
(encode/engines.py, sdpa, adapter merged, bf16 on CUDA) on the same weights and batches,
with cosines against mlx_jina. --smoke: the same path on the CPU with tiny models in
about a minute (tests/test_gpu_check_smoke.py).
"""

import argparse
import importlib.util
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from functools import partial
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent)]  # checkpoint, encode/, internals; mlx_jina

import mlx_jina  # noqa: E402 - before MLX: on Linux it loads the system BLAS
import mlx.core as mx  # noqa: E402

from checkpoint import LLAMA_VOCAB, QWEN_VOCAB, TASKS  # noqa: E402
from encode.corpus import random_ids  # noqa: E402
from encode.engines import MlxJina, Transformers  # noqa: E402
from encode.flops import batches_flops  # noqa: E402
from encode.runner import call_ms, timed_passes  # noqa: E402
from encode.shapes import REAL, TINY_SHAPES, build_model  # noqa: E402
from internals import log, percentile, table, timed, version, write_json, write_report  # noqa: E402

TASK = "retrieval"  # the adapter merged at load, by mlx_jina and by the torch reference
QUERY = "what is the capital of france?"
# mlx_jina.load keywords per row, bf16 first (torch's row runs beside it).
PRECISIONS = {"bf16": dict(dtype="bfloat16"), "fp32": dict(dtype="float32"), "fp16": dict(dtype="float16"),
              "8-bit": dict(bits=8, dtype="bfloat16"), "4-bit": dict(bits=4, dtype="bfloat16")}  # fmt: skip
VOCAB = {"small": QWEN_VOCAB, "nano": LLAMA_VOCAB}
LONG = {"small": (8192, 32768), "nano": (8192,)}  # tokens of the peak-memory inputs
SMOKE_LONG = {"small": (128, 512), "nano": (128,)}


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
        log(f"[{self.spent():6.1f} s] {name}: {took:.1f} s")
        return out


def gpu_tests(timeout: float) -> dict:
    """`pytest -m gpu tests/test_gpu.py` in a child; its summary line and exit code."""
    if importlib.util.find_spec("pytest") is None:
        return {"summary": "not run: pytest is not installed on this machine", "exit_code": None}
    cmd = [sys.executable, "-m", "pytest", "-m", "gpu", "-q", "-rs", "-p", "no:cacheprovider", "tests/test_gpu.py"]
    try:
        run = subprocess.run(cmd, check=False, cwd=HERE.parent, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"summary": f"timed out after {timeout:.0f} s", "exit_code": None}
    tail = (run.stdout + run.stderr).strip().splitlines()
    summary = next((s for s in reversed(tail) if re.search(r"\d+ (passed|failed|skipped|error)", s)),
                   tail[-1] if tail else "")  # fmt: skip
    return {"summary": summary.strip("= "), "exit_code": run.returncode, "tail": "\n".join(tail[-40:])}


def matmul_rate(n: int, repeats: int = 5) -> dict:
    """MLX's measured bf16 FLOP/s on one (n, n) @ (n, n) product."""
    a, b = (mx.random.normal((n, n)).astype(mx.bfloat16) for _ in range(2))
    mx.eval(a @ b)
    t = time.perf_counter()
    for _ in range(repeats):
        mx.eval(a @ b)
    return {"n": n, "tflops": 2 * n**3 * repeats / (time.perf_counter() - t) / 1e12}


def build_models(root: Path, smoke: bool, models: dict) -> dict:
    """Base layout with all four adapters (r 32 / alpha 32 like Jina's; r 4 in --smoke),
    float16 files (half the bytes to write and read; every precision loads them). Full
    size: the published shapes and vocabularies; --smoke: 2 layers, hidden 64, a
    1,000-token vocabulary. Returns seconds per model."""
    seconds = {}
    for seed, name in enumerate(("small", "nano")):
        t = time.perf_counter()
        options = dict(TINY_SHAPES[name], vocab_size=1000, r=4, lora_alpha=8) if smoke \
            else dict(REAL[name], vocab_size=VOCAB[name])  # fmt: skip
        models[name] = build_model(root, name, 2 if smoke else None, seed, real_tokenizer=False,
                                   tasks=TASKS, dtype="float16", **options)  # fmt: skip
        seconds[name] = round(time.perf_counter() - t, 2)
    return seconds


def run_precision(m, work, load: dict, calls: int, long: tuple, long_timeout: float) -> dict:
    """One table row: load, a warm-up and a timed pass, query latency, the long inputs."""
    engine = MlxJina(m, load | {"task": TASK}, pretokenized=True)
    row = {"load_s": round(timed(engine.load)[1], 2), "texts": len(work.ids)}
    figures, done = timed_passes(engine, work, list(range(len(work.ids))), 1)
    flops = batches_flops(m.config, done.batches, [len(r) for r in work.ids])
    row |= {k: figures[k] for k in ("real_tokens", "padded_tokens")}
    row |= {"seconds": round(done.seconds, 3), "tokens_per_s": round(figures["tokens_per_s"], 1),
            "flops_per_s": flops / done.seconds, "vectors": done.vectors, "batches": done.batches}  # fmt: skip
    ms = call_ms(partial(engine.embedder.encode_query, QUERY), calls, warm=3)
    row |= {"calls": calls, "p50_ms": round(percentile(ms, 0.5), 3), "p99_ms": round(percentile(ms, 0.99), 3)}
    del engine
    mx.clear_cache()
    row["long"] = long_inputs(m.folder, load, long, long_timeout)
    return row


def long_inputs(folder: Path, load: dict, lengths: tuple, timeout: float) -> dict:
    """Peak memory (GiB) and seconds of one input of each length, in a child process:
    an out-of-memory abort there costs the lengths it had left, not the check."""
    cmd = [sys.executable, __file__, "--long-input", str(folder), json.dumps(load), *map(str, lengths)]
    try:
        run = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=timeout)
        stdout, note = run.stdout, f"exit {run.returncode}: {run.stderr[-300:]}"
    except subprocess.TimeoutExpired as e:
        stdout, note = e.stdout or "", f"timed out after {timeout:.0f} s"
        stdout = stdout.decode() if isinstance(stdout, bytes) else stdout
    out = {str(row.pop("tokens")): row for row in map(json.loads, re.findall(r"^\{.*\}$", stdout, re.M))}
    return {str(n): out.get(str(n), {"error": note.strip()}) for n in lengths}


def long_input_child(folder: str, load: str, *lengths: str) -> None:
    """Prints one JSON line per length as it finishes, so the lengths before an
    out-of-memory abort still report."""
    embedder = mlx_jina.load(folder, task=TASK, **json.loads(load))
    rng = np.random.default_rng(0)
    for n in map(int, lengths):
        row = rng.integers(10, embedder.model.args.vocab_size, n).tolist()
        mx.clear_cache()
        mx.reset_peak_memory()
        t = time.perf_counter()
        out = embedder.embed_batch([row], TASK)
        mx.eval(out)
        print(json.dumps({"tokens": n, "peak_gib": round(mx.get_peak_memory() / 2**30, 3),
                          "seconds": round(time.perf_counter() - t, 3),
                          "finite": bool(np.isfinite(np.array(out)).all())}), flush=True)  # fmt: skip


def measure_models(smoke: bool, budget: Budget, models: dict, result: dict) -> None:
    """The mlx_jina rows (bf16 first) and the torch rows right after each model's bf16
    (fp32 in --smoke: torch runs float32 on the CPU)."""
    calls, long_timeout, first = (5, 60, "fp32") if smoke else (100, 90, "bf16")
    loads = dict(PRECISIONS)
    if smoke:  # the CPU runs quantized weights with bf16 activations several times slower
        loads |= {k: v | {"dtype": "float32"} for k, v in loads.items() if "bits" in v}
    rate = result["matmul"].get("tflops")
    works = {name: random_ids(16 if smoke else 384, m.config["vocab_size"], 300 if smoke else 2000, seed=7)
             for name, m in models.items()}  # fmt: skip
    for label in [first] + [k for k in PRECISIONS if k != first]:
        for name, m in models.items():
            row = budget.run(f"mlx {name} {label}", run_precision, m, works[name], loads[label], calls,
                             (SMOKE_LONG if smoke else LONG)[name], long_timeout)  # fmt: skip
            if rate and "flops_per_s" in row:
                row["matmul_fraction"] = round(row["flops_per_s"] / (rate * 1e12), 4)
            result["mlx"].setdefault(name, {})[label] = row
            if label == first:
                result["torch"][name] = budget.run(f"torch {name}", run_torch, m, works[name], row, smoke)
            row.pop("vectors", None), row.pop("batches", None)
            mx.clear_cache()


def run_torch(m, work, row: dict, smoke: bool) -> dict:
    """transformers on mlx_jina's batches (`row`'s), after a warm-up pass over the same
    batches: tokens/s and the cosine of each vector with mlx_jina's (run in the same dtype)."""
    if "vectors" not in row:
        return {"skipped": "no mlx_jina row to compare with"}
    if not all(importlib.util.find_spec(n) for n in ("torch", "transformers")):
        return {"skipped": "torch or transformers is not installed"}
    import torch

    cuda = torch.cuda.is_available()
    if not (smoke or cuda):
        return {"skipped": "torch has no CUDA here (a full-size CPU run would not fit)"}
    engine = Transformers(m, row["batches"], None, TASK, cuda)
    load_s = timed(engine.load)[1]
    figures, done = timed_passes(engine, work, list(range(len(work.ids))), 1)
    cos, tps = (done.vectors * row["vectors"]).sum(1), figures["tokens_per_s"]
    del engine
    if cuda:
        torch.cuda.empty_cache()
    return {"device": "cuda" if cuda else "cpu", "dtype": "bfloat16" if cuda else "float32",
            "load_s": round(load_s, 2), "seconds": round(done.seconds, 3), "tokens_per_s": round(tps, 1),
            "mlx_ratio": round(row["tokens_per_s"] / tps, 3),
            "cosine_min": round(float(cos.min()), 6), "cosine_mean": round(float(cos.mean()), 6)}  # fmt: skip


def device_facts() -> dict:
    """MLX's device, versions, and which optional peers are installed."""
    facts = {"mlx": mx.__version__, "python": platform.python_version(),
             "default_device": str(mx.default_device()), "gpu_available": bool(mx.is_available(mx.gpu))}  # fmt: skip
    try:
        facts["device_info"] = {k: v if isinstance(v, (int, float, str)) else str(v)
                                for k, v in mx.device_info().items()}  # fmt: skip
    except Exception as e:  # noqa: BLE001 - informative only
        facts["device_info"] = f"unavailable: {e}"
    facts |= {n: version(n.replace("_", "-")) for n in ("torch", "transformers", "peft", "mlx_embeddings", "starlette")}
    facts["torch_cuda"] = False
    if importlib.util.find_spec("torch") is not None:
        import torch

        facts["torch_cuda"] = bool(torch.cuda.is_available())
        if facts["torch_cuda"]:
            facts["torch_device"] = torch.cuda.get_device_name(0)
    return facts


def markdown(result: dict) -> str:
    env, tests, mm = result["environment"], result.get("gpu_tests", {}), result.get("matmul", {})
    lines = [f"# GPU check ({result['mode']})", "",
             f"MLX {env['mlx']} on `{env['default_device']}` ({env.get('device_info', {})}); torch "
             f"{env['torch']} (CUDA: {env['torch_cuda']}, {env.get('torch_device', 'no GPU')}); Python "
             f"{env['python']}. Total {result['seconds']:.0f} s of a {result['budget_s']:.0f} s budget.", "",
             "## GPU tests (`pytest -m gpu tests/test_gpu.py`)", "",
             f"`{tests.get('summary', tests.get('skipped', '-'))}`", ""]  # fmt: skip
    if "tflops" in mm:
        lines += [f"MLX bf16 matmul ({mm['n']}²): {mm['tflops']:.3g} TFLOP/s measured.", ""]
    for name, section in result.get("mlx", {}).items():
        lengths = sorted({n for r in section.values() for n in r.get("long", {})}, key=int)
        head = ["weights", "tokens/s", "FLOP/s ÷ bf16 matmul", "query p50 / p99 ms", "load s"]
        rows = [[label, row.get("skipped") or row.get("error")] if "tokens_per_s" not in row else
                [label, f"{row['tokens_per_s']:,.0f}",
                 f"{row['matmul_fraction']:.1%}" if "matmul_fraction" in row else "-",
                 f"{row['p50_ms']:.2f} / {row['p99_ms']:.2f}", f"{row['load_s']:.1f}",
                 *(memory_cell(row["long"].get(n)) for n in lengths)]
                for label, row in section.items()]  # fmt: skip
        lines += [f"### mlx_jina, {name}", ""]
        lines += table(head + [f"peak mem / time, {n} tokens" for n in lengths], rows) + [""]
    lines += ["### transformers on torch, same weights and batches", ""]
    lines += table(["model", "device / dtype", "tokens/s", "vs mlx_jina", "cosine min / mean"], [
        [name, row.get("skipped") or row.get("error")] if "tokens_per_s" not in row else
        [name, f"{row['device']} / {row['dtype']}", f"{row['tokens_per_s']:,.0f}",
         f"mlx_jina {row['mlx_ratio']:.2f}x", f"{row['cosine_min']:.6f} / {row['cosine_mean']:.6f}"]
        for name, row in result.get("torch", {}).items()])  # fmt: skip
    return "\n".join(lines + ["", "## Notes", ""] + [f"- {n}" for n in result["notes"]]) + "\n"


def memory_cell(cell: dict | None) -> str:
    if not cell or "error" in cell:
        return "failed" if cell else "-"
    gib = cell["peak_gib"]
    return f"{f'{gib:.2f} GiB' if gib >= 1 else f'{gib * 1024:.0f} MiB'} / {cell['seconds']:.2f} s"


def notes_for(smoke: bool, env: dict) -> list[str]:
    emb = env["mlx_embeddings"]
    return [  # mlx-embeddings either way, or a reader would look for rows this check never runs
        "mlx-embeddings is not installed here: no mlx-embeddings rows." if emb == "not installed" else
        f"mlx-embeddings {emb} is installed, but this check runs no mlx-embeddings rows "
        "(benchmarks/bench_encode.py compares it on the CPU).",
        *(["--smoke: CPU, 2-layer hidden-64 models; figures test the path only."] if smoke else
          [] if env["gpu_available"] else ["MLX sees no GPU: these are CPU figures at full size."]),
        "FLOP/s counts the linears of every layer on every padded token and the full L x L attention square; "
        "tokens/s counts real tokens."]  # fmt: skip


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, default=Path(os.environ.get("OUT") or "gpu_check_out"))
    p.add_argument("--budget", type=float, default=420.0, help="seconds (default 420)")
    p.add_argument("--smoke", action="store_true", help="CPU, tiny models, < 1 minute")
    p.add_argument("--long-input", nargs="+", help=argparse.SUPPRESS)  # the child's arguments
    args = p.parse_args(argv)
    if args.long_input:
        return long_input_child(*args.long_input)
    env = device_facts()
    notes = notes_for(args.smoke, env)
    budget = Budget(args.budget, notes)
    result = {"mode": "smoke: CPU, tiny models" if args.smoke else "full size", "budget_s": args.budget,
              "notes": notes, "mlx": {}, "torch": {}, "environment": env}  # fmt: skip
    result["gpu_tests"] = budget.run("gpu tests", gpu_tests, min(210, args.budget / 2))
    result["matmul"] = budget.run("matmul", matmul_rate, 256 if args.smoke else 8192)
    models: dict = {}
    with tempfile.TemporaryDirectory(prefix="gpu_check_") as tmp:
        result["checkpoints"] = budget.run("checkpoints", build_models, Path(tmp), args.smoke, models)
        if "error" not in result["checkpoints"]:
            measure_models(args.smoke, budget, models, result)
    result["seconds"] = round(budget.spent(), 1)
    args.out.mkdir(parents=True, exist_ok=True)
    write_json(args.out / "gpu_check.json", result)
    write_report(args.out / "gpu_check.md", markdown(result))
    print(markdown(result))
    log(f"wrote {args.out}/gpu_check.json and gpu_check.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
