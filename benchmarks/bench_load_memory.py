"""Peak memory and time of `load(bits=4)` from float weights, each in a fresh process.

    python benchmarks/bench_load_memory.py                  # build (once) and measure
    python benchmarks/bench_load_memory.py --bits 8 --runs 2
    python benchmarks/bench_load_memory.py --activations    # 4-bit: fp32 vs 16-bit activations
    git archive HEAD~1 mlx_jina | tar -x -C /tmp/before     # measure an older copy:
    python benchmarks/bench_load_memory.py --pythonpath /tmp/before

A random qwen3 checkpoint (hidden 1024, 8 layers, the real 151,936-token vocabulary,
one LoRA adapter, float32: about 1.1 GB of weights) is written under --dir once. Each
measurement is a new Python process, so the peak (VmHWM) belongs to that load
alone; the RSS after load is read from /proc/self/statm. `--activations` times one
encode batch of a 4-bit model with float32 against bfloat16/float16 activations.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from checkpoint import QWEN_VOCAB, build
from internals import table, write_json

SHAPE = dict(num_hidden_layers=8, vocab_size=QWEN_VOCAB)  # small's widths, 8 layers
TEXTS = [f"passage {i}: mlx quantizes weights layer by layer" for i in range(8)]

CHILD = r"""
import json, os, sys, time
rss = lambda: int(open("/proc/self/statm").read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
# VmHWM, not ru_maxrss: Linux carries ru_maxrss over exec from the parent
peak = lambda: [int(l.split()[1]) * 1024 for l in open("/proc/self/status") if l.startswith("VmHWM")][0]
import mlx_jina  # before MLX: on Linux it loads the system BLAS
import mlx.core as mx
from mlx_jina import loading  # mlx_jina imports lazily: the loader's modules count in base
base = rss()
folder, bits, dtype, texts = json.loads(sys.argv[1])
t = time.perf_counter()
model = mlx_jina.load(folder, task="retrieval", bits=bits, dtype=dtype)
out = dict(base=base, load_peak=peak(), load_rss=rss(), load_s=time.perf_counter() - t)
t = time.perf_counter()
model.encode(texts[:4])
out["first_encode_s"] = time.perf_counter() - t
t = time.perf_counter()
model.encode(texts)
out |= dict(encode_s=time.perf_counter() - t, encode_peak=peak(), encode_rss=rss())
print(json.dumps(out))
"""


def measure(folder: Path, bits, dtype=None, pythonpath: str | None = None) -> dict:
    """One load and two encodes in a new process; `pythonpath` puts another copy of
    mlx_jina first (e.g. `git archive <commit> mlx_jina | tar -x -C /tmp/before`)."""
    env = dict(os.environ, PYTHONPATH=pythonpath) if pythonpath else None
    # cwd: not the repository, as `-c` puts the working folder first on sys.path
    done = subprocess.run([sys.executable, "-c", CHILD, json.dumps([str(folder), bits, dtype, TEXTS])],
                          capture_output=True, text=True, check=False, env=env, cwd=folder)  # fmt: skip
    if done.returncode:
        raise RuntimeError(done.stderr[-2000:])
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dir", type=Path, default=Path(tempfile.gettempdir()) / "mlx-jina-bench")
    p.add_argument("--bits", type=int, default=4)
    p.add_argument("--runs", type=int, default=1)
    p.add_argument("--activations", action="store_true")
    p.add_argument("--pythonpath", help="a folder holding another mlx_jina to measure")
    p.add_argument("--json", type=Path, help="write the figures here")
    a = p.parse_args()
    folder = a.dir / "load-memory-qwen3"
    if not (folder / "model.safetensors").exists():
        build(folder, "qwen3", tasks=("retrieval",), seed=0, **SHAPE)
    gib = (folder / "model.safetensors").stat().st_size / (1 << 30)
    print(f"{folder}: float32 weights {gib:.2f} GiB\n")
    if a.activations:
        runs = [dict(measure(folder, a.bits, dtype, a.pythonpath), bits=a.bits, dtype=dtype)
                for dtype in ("float32", "bfloat16", "float16")]  # fmt: skip
        print("\n".join(table(["bits", "activations", "encode 8 texts"],
                              [[r["bits"], r["dtype"], f"{r['encode_s']:.2f} s"] for r in runs])))
    else:
        runs = [dict(measure(folder, bits, pythonpath=a.pythonpath), bits=bits)
                for _ in range(a.runs) for bits in (None, a.bits)]  # fmt: skip
        g = 1 << 30
        print("\n".join(table(
            ["weights", "load peak", "after load", "load", "first encode", "peak after encode", "import"],
            [["float (bits=None)" if r["bits"] is None else f"bits={r['bits']}", f"{r['load_peak'] / g:.2f} GiB",
              f"{r['load_rss'] / g:.2f} GiB", f"{r['load_s']:.1f} s", f"{r['first_encode_s']:.2f} s",
              f"{r['encode_peak'] / g:.2f} GiB", f"{r['base'] / g:.2f} GiB"] for r in runs])))  # fmt: skip
    if a.json:
        write_json(a.json, runs)


if __name__ == "__main__":
    main()
