"""Latency of one-word queries while large requests run through the server's Worker
(fair queuing, batch by batch), against a query alone and one full batch alone.

A tiny random model is built in-process (tests/builders) and the Worker is driven from
threads, no HTTP: two clients send large requests back to back, and a third sends a
one-word query every 100 ms whatever happens to the earlier ones. It prints a table and
writes its figures as JSON. About half a minute on a 2-core Linux box:

    python benchmarks/bench_fairness.py [--seconds 20] [--json results.json]

Needs the server extra; the random checkpoint is built with numpy.
"""

import argparse
import json
import platform
import random
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import mlx_jina

import internals
from checkpoint import TINY, build

Job, Limits, Worker = internals.server()

BATCH_TOKENS = 1024  # per forward pass: ~8 rows of a large request
LARGE = (128, 128)  # rows, tokens a row: 16 batches
QUERY = [311, 4, 2]  # token ids, as long as a one-word query
QUERY_EVERY = 0.1  # seconds



def log(*args) -> None:
    print(*args, file=sys.stderr, flush=True)


def build_model(root: Path) -> Path:
    folder = root / "model"
    # the tests' tiny Qwen3, with 512 embedding rows for the made-up ids above
    return build(folder, "qwen3", tasks=["retrieval"], r=4, lora_alpha=8, **TINY["qwen3"])


def percentile(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, round(q * (len(values) - 1)))]


def run(folder: Path, seconds: float) -> dict:
    """Query latencies and large-request throughput."""
    worker = Worker(
        lambda: mlx_jina.load(folder, task="retrieval"),
        limits=Limits(max_batch_tokens=BATCH_TOKENS),
    ).start()
    rng = random.Random(0)
    rows, width = LARGE
    large = [[rng.randrange(20, 500) for _ in range(width)] for _ in range(rows)]

    def query() -> Job:
        return Job("retrieval", [QUERY], None, True, "float32")

    # Warm up, then time a query and a full batch alone.
    worker.submit(Job("retrieval", large[:16], None, True, "float32")).result()
    alone = []
    for _ in range(20):
        start = time.perf_counter()
        worker.submit(query()).result()
        alone.append(time.perf_counter() - start)
    batch = []
    for _ in range(5):
        start = time.perf_counter()
        worker.submit(
            Job("retrieval", large[: BATCH_TOKENS // width], None, True, "float32")
        ).result()
        batch.append(time.perf_counter() - start)

    stop = threading.Event()
    done_large: list[float] = []

    def large_client() -> None:
        while not stop.is_set():
            start = time.perf_counter()
            worker.submit(Job("retrieval", large, None, True, "float32")).result()
            done_large.append(time.perf_counter() - start)

    clients = [threading.Thread(target=large_client) for _ in range(2)]
    for c in clients:
        c.start()
    time.sleep(0.5)  # both large requests are running
    latencies: list[float] = []
    futures = []
    begin = time.perf_counter()
    while time.perf_counter() - begin < seconds:
        sent = time.perf_counter()
        future = worker.submit(query())
        future.add_done_callback(lambda f, sent=sent: latencies.append(time.perf_counter() - sent))
        futures.append(future)
        time.sleep(QUERY_EVERY)
    elapsed = time.perf_counter() - begin
    stop.set()
    for f in futures:
        f.result()
    for c in clients:
        c.join()
    worker.stop()
    return {
        "alone_ms": 1000 * statistics.median(alone),
        "batch_ms": 1000 * statistics.median(batch),
        "queries": len(latencies),
        "p50_ms": 1000 * percentile(latencies, 0.5),
        "p99_ms": 1000 * percentile(latencies, 0.99),
        "max_ms": 1000 * max(latencies),
        "large_done": len(done_large),
        "large_s": statistics.median(done_large) if done_large else float("nan"),
        "elapsed": elapsed,
    }


def table(results: dict[str, dict]) -> str:
    rows, width = LARGE
    lines = [
        f"One-word queries every {QUERY_EVERY * 1000:g} ms while 2 clients send "
        f"{rows}x{width}-token requests back to back ({rows * width // BATCH_TOKENS} "
        f"batches of {BATCH_TOKENS} tokens each); tiny random Qwen3 (hidden 64, 2 layers), "
        f"{platform.machine()} CPU.",
        "",
        "| worker | query alone | one batch | queries | query p50 | query p99 | query max "
        "| large requests done | large request p50 |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, r in results.items():
        lines.append(
            f"| {name} | {r['alone_ms']:.1f} ms | {r['batch_ms']:.0f} ms | {r['queries']} "
            f"| {r['p50_ms']:.0f} ms | {r['p99_ms']:.0f} ms | {r['max_ms']:.0f} ms "
            f"| {r['large_done']} | {r['large_s']:.2f} s |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=20, help="seconds of queries")
    parser.add_argument("--json", type=Path, help="write the figures here")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        log("[INFO] building a tiny random model")
        folder = build_model(Path(tmp))
        log(f"[INFO] {args.seconds:g} s of queries")
        results = {"fair queuing": run(folder, args.seconds)}
    print(table(results))
    if args.json:
        internals.write_report(args.json, json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
