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

sys.path.insert(0, str(Path(__file__).resolve().parent))

from checkpoint import QWEN_VOCAB, build  # noqa: E402
from internals import write_report  # noqa: E402

SHAPE = dict(num_hidden_layers=8, vocab_size=QWEN_VOCAB)  # small's widths, 8 layers
TEXTS = [f"passage {i}: mlx quantizes weights layer by layer" for i in range(8)]

CHILD = r"""
import json, sys, time
def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * __import__("os").sysconf("SC_PAGE_SIZE")
def peak():  # VmHWM, not ru_maxrss: Linux carries ru_maxrss over exec from the parent
    with open("/proc/self/status") as f:
        return [int(l.split()[1]) * 1024 for l in f if l.startswith("VmHWM")][0]
import mlx_jina  # before MLX: on Linux it loads the system BLAS
import mlx.core as mx
from mlx_jina import loading  # mlx_jina imports lazily: the loader's modules count in base
base = rss()
folder, bits, dtype, texts = json.loads(sys.argv[1])
t = time.perf_counter()
model = mlx_jina.load(folder, task="retrieval", bits=bits, dtype=dtype)
load_s = time.perf_counter() - t
out = dict(base=base, load_peak=peak(), load_rss=rss(), load_s=load_s)
t = time.perf_counter()
model.encode(texts[:4])
out["first_encode_s"] = time.perf_counter() - t
t = time.perf_counter()
model.encode(texts)
out["encode_s"] = time.perf_counter() - t
out["encode_peak"] = peak()
out["encode_rss"] = rss()
print(json.dumps(out))
"""


def measure(folder: Path, bits, dtype=None, pythonpath: str | None = None) -> dict:
    """One load and two encodes in a new process; `pythonpath` puts another copy of
    mlx_jina first (e.g. `git archive <commit> mlx_jina | tar -x -C /tmp/before`)."""
    arg = json.dumps([str(folder), bits, dtype, TEXTS])
    env = dict(os.environ, PYTHONPATH=pythonpath) if pythonpath else None
    done = subprocess.run(
        [sys.executable, "-c", CHILD, arg],
        capture_output=True,
        text=True,
        check=False,
        env=env,
        cwd=folder,  # not the repository: `-c` puts the working folder first on sys.path
    )
    if done.returncode:
        raise RuntimeError(done.stderr[-2000:])
    return json.loads(done.stdout.strip().splitlines()[-1])


def weights_bytes(folder: Path) -> int:
    return (folder / "model.safetensors").stat().st_size


def checkpoint(root: Path) -> Path:
    folder = root / "load-memory-qwen3"
    if not (folder / "model.safetensors").exists():
        build(folder, "qwen3", tasks=("retrieval",), seed=0, **SHAPE)
    return folder


def report(name: str, r: dict) -> None:
    gb = 1 << 30
    print(
        f"{name:<22} peak {r['load_peak'] / gb:5.2f} GiB  after load {r['load_rss'] / gb:5.2f} GiB"
        f"  load {r['load_s']:5.1f} s  first encode {r['first_encode_s']:5.2f} s"
        f"  peak after encode {r['encode_peak'] / gb:5.2f} GiB  (import {r['base'] / gb:.2f} GiB)"
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dir", type=Path, default=Path(tempfile.gettempdir()) / "mlx-jina-bench")
    p.add_argument("--bits", type=int, default=4)
    p.add_argument("--runs", type=int, default=1)
    p.add_argument("--activations", action="store_true")
    p.add_argument("--pythonpath", help="a folder holding another mlx_jina to measure")
    p.add_argument("--json", type=Path, help="write the figures here")
    a = p.parse_args()
    runs = []
    folder = checkpoint(a.dir)
    print(f"{folder}: float32 weights {weights_bytes(folder) / (1 << 30):.2f} GiB")
    if a.activations:
        for dtype in ("float32", "bfloat16", "float16"):
            r = measure(folder, a.bits, dtype, a.pythonpath)
            print(f"bits={a.bits} dtype={dtype:<9} encode 8 texts {r['encode_s']:6.2f} s")
            runs.append(dict(r, bits=a.bits, dtype=dtype))
    for _ in range(0 if a.activations else a.runs):
        for bits in (None, a.bits):
            runs.append(dict(measure(folder, bits, pythonpath=a.pythonpath), bits=bits))
            report("float (bits=None)" if bits is None else f"bits={bits}", runs[-1])
    if a.json:
        write_report(a.json, json.dumps(runs, indent=1) + "\n")


if __name__ == "__main__":
    main()
