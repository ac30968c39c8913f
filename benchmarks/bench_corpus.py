"""Memory of a corpus job as the corpus grows: `embed_corpus` must stay flat.

For each size (10k and 100k short lines; 1M with --full) a fresh process loads a tiny
random model (tests/builders), embeds the corpus file into a job folder and
reports its peak RSS, next to the RSS it had before the job (Python, MLX, the model) and
the size of the result. A job that held the corpus or its vectors would grow with it;
this one holds one shard of texts and vectors at a time. Then the result is opened with
`load_embeddings(DIR)` (memory-mapped) and searched, and the RSS after that is reported.

    python benchmarks/bench_corpus.py [--sizes 10000,100000] [--full] [--shard-size N]

Runs on the CPU anywhere; the model is tiny, so the time is tokenization and batching.
"""

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from checkpoint import TINY, build
from internals import proc_mib, table, write_json

TASK = "retrieval"
SHAPE = TINY["qwen3"] | dict(num_hidden_layers=1, intermediate_size=128)


def peak_mb() -> float:
    """This process's peak RSS: VmHWM, else (no /proc) getrusage's."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return proc_mib("VmHWM") or (peak / 2**20 if sys.platform == "darwin" else peak / 1024)  # bytes vs KiB


def child(model: str, corpus: str, out: str, shard_size: int) -> None:
    """One job in this process; prints one JSON line of figures."""
    import mlx_jina

    embedder = mlx_jina.load(model, task=TASK)
    embedder.encode(["warm up"])
    before = proc_mib("VmRSS") or peak_mb()
    started = time.perf_counter()
    result = mlx_jina.embed_corpus(embedder, corpus, out, shard_size=shard_size, prompt="", batch_size=256)
    seconds, job_peak = time.perf_counter() - started, peak_mb()
    loaded = mlx_jina.load_embeddings(out)
    hits = mlx_jina.semantic_search(embedder.encode_query(["item 7"]), loaded.embeddings, 5)
    print(json.dumps({
        "texts": result.rows, "shards": result.shards, "seconds": seconds,
        "rss_before_mb": before, "job_peak_mb": job_peak, "rss_after_search_mb": proc_mib("VmRSS") or peak_mb(),
        "result_mb": (Path(out) / "embeddings.safetensors").stat().st_size / 2**20,
        "memmap": type(loaded.embeddings).__name__, "found": len(hits[0]),
    }))  # fmt: skip


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="10000,100000", help="comma-separated line counts")
    parser.add_argument("--full", action="store_true", help="add 1,000,000 lines (slow on a CPU)")
    parser.add_argument("--shard-size", type=int, default=10_000)
    parser.add_argument("--json", type=Path, help="write the figures here")
    parser.add_argument("--child", nargs=3, metavar=("MODEL", "CORPUS", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        return child(*args.child, args.shard_size)
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench_corpus_") as tmp:
        root = Path(tmp)
        model = build(root / "model", "qwen3", tasks=(TASK,), r=4, lora_alpha=8, **SHAPE)
        for n in [int(s) for s in args.sizes.split(",")] + ([1_000_000] if args.full else []):
            corpus = root / f"corpus-{n}.txt"
            corpus.write_text("".join(f"item {i} of the corpus\n" for i in range(n)), encoding="utf-8")
            cmd = [sys.executable, __file__, "--child", str(model), str(corpus),
                   str(root / f"job-{n}"), "--shard-size", str(args.shard_size)]  # fmt: skip
            proc = subprocess.run(cmd, capture_output=True, text=True, check=True)
            rows.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    print(f"\nShard size {args.shard_size:,}; tiny model ({SHAPE['hidden_size']}-d, 1 layer).\n")
    print("\n".join(table(["texts", "shards", "time", "RSS before the job", "peak RSS of the job", "result file",
                           "RSS after load_embeddings(DIR) + search"], [
        [f"{r['texts']:,}", r["shards"], f"{r['seconds']:.0f} s ({r['texts'] / r['seconds']:,.0f} texts/s)",
         f"{r['rss_before_mb']:.0f} MB", f"{r['job_peak_mb']:.0f} MB", f"{r['result_mb']:.1f} MB",
         f"{r['rss_after_search_mb']:.0f} MB"] for r in rows])))  # fmt: skip
    if args.json:
        write_json(args.json, rows)


if __name__ == "__main__":
    main()
