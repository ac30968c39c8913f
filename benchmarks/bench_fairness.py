"""Latency of one-word queries while large requests run through the server's Worker
(fair queuing, batch by batch), against a query alone and one full batch alone.

A tiny random model is built in-process (tests/builders) and the Worker is driven from
threads, no HTTP: two clients send large requests back to back, and a third sends a
one-word query every 100 ms whatever happens to the earlier ones. It prints a table and
writes its figures as JSON. About half a minute on a 2-core Linux box:

    python benchmarks/bench_fairness.py [--seconds 20] [--json results.json]

With --huge-text-mb or --slowloris the same mix runs over HTTP against `mlx-jina serve`
in a subprocess (so its RSS is the server's own), with the Qwen tokenizer: one client
posts one text of that many MB with "truncate": true, and/or N sockets send one header
byte a second, reconnecting when closed. Queries then go on fresh connections, and the
table adds refused queries and the server's peak RSS. To compare with another checkout,
run the same command with PYTHONPATH pointing at it (the server inherits it):

    python benchmarks/bench_fairness.py --huge-text-mb 15 --slowloris 200 --seconds 30

Needs the server extra; the random checkpoint is built with numpy.
"""

import argparse
import os
import platform
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import mlx_jina

import internals
from checkpoint import QWEN_TOKENIZER, TINY, build
from internals import percentile, write_json

Job, Limits, Worker = internals.server()

BATCH_TOKENS = 1024  # per forward pass: ~8 rows of a large request
LARGE = (128, 128)  # rows, tokens a row: 16 batches
QUERY = [311, 4, 2]  # token ids, as long as a one-word query
QUERY_EVERY = 0.1  # seconds


def log(*args) -> None:
    print(*args, file=sys.stderr, flush=True)


def build_model(root: Path, context: int | None = None) -> Path:
    """The tiny model; with `context`, the Qwen tokenizer and that many positions (HTTP)."""
    if context is None:
        folder = root / "model"
        return build(folder, "qwen3", tasks=["retrieval"], r=4, lora_alpha=8, **TINY["qwen3"])
    config = {**TINY["qwen3"], "vocab_size": 151_936, "max_position_embeddings": context}
    return build(root / "model_http", "qwen3", tokenizer=QWEN_TOKENIZER, tasks=["retrieval"],
                 r=4, lora_alpha=8, **config)  # fmt: skip


def run(folder: Path, seconds: float) -> dict:
    """Query latencies and large-request throughput."""
    worker = Worker(
        lambda: mlx_jina.load(folder, task="retrieval"),
        limits=Limits(max_batch_tokens=BATCH_TOKENS),
    ).start()
    rng = random.Random(0)
    rows, width = LARGE
    large = [[rng.randrange(20, 500) for _ in range(width)] for _ in range(rows)]

    def job(rows) -> Job:
        return Job("retrieval", rows, None, True, "float32")

    def median_ms(rows, times: int) -> float:
        seconds = []
        for _ in range(times):
            start = time.perf_counter()
            worker.submit(job(rows)).result()
            seconds.append(time.perf_counter() - start)
        return 1000 * statistics.median(seconds)

    # Warm up, then time a query and a full batch alone.
    worker.submit(job(large[:16])).result()
    alone_ms, batch_ms = median_ms([QUERY], 20), median_ms(large[: BATCH_TOKENS // width], 5)

    stop = threading.Event()
    done_large: list[float] = []

    def large_client() -> None:
        while not stop.is_set():
            start = time.perf_counter()
            worker.submit(job(large)).result()
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
        future = worker.submit(job([QUERY]))
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
        "alone_ms": alone_ms,
        "batch_ms": batch_ms,
        "queries": len(latencies),
        "p50_ms": 1000 * percentile(latencies, 0.5),
        "p99_ms": 1000 * percentile(latencies, 0.99),
        "max_ms": 1000 * max(latencies),
        "large_done": len(done_large),
        "large_s": statistics.median(done_large) if done_large else float("nan"),
        "elapsed": elapsed,
    }


# ---------------------------------------------------------------------------
# over HTTP: a huge text and slow clients in the mix

WORDS = "the of and to in is was for on that with as by at from his it an were are".split()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        line = next(ln for ln in f if ln.startswith("VmRSS:"))
    return int(line.split()[1]) / 1024


def slowloris(port: int, sockets: int, stop: threading.Event, tally: Counter) -> None:
    """`sockets` connections that each send one header byte a second, and reconnect."""
    head = b"POST /v1/embeddings HTTP/1.1\r\nHost: localhost\r\nX-Pad: " + b"a" * 100_000
    held: dict[int, tuple[socket.socket, int]] = {}

    def drop(i: int) -> None:
        held.pop(i)[0].close()

    while not stop.is_set():
        for i in range(sockets):
            if i not in held:
                try:
                    s = socket.create_connection(("127.0.0.1", port), timeout=2)
                    s.setblocking(False)
                    held[i] = (s, 0)
                    tally["connects"] += 1
                except OSError:
                    continue
            s, sent = held[i]
            try:
                s.recv(4096)  # an answer (408, 503) or a close: reconnect
                drop(i)
                continue
            except BlockingIOError:
                pass
            except OSError:
                drop(i)
                continue
            try:
                s.send(head[sent : sent + 1])
                held[i] = (s, sent + 1)
            except OSError:
                drop(i)
        stop.wait(1.0)
    for s, _ in held.values():
        s.close()


def run_http(folder: Path, seconds: float, huge_mb: float, loris: int) -> dict:
    """Query latencies over HTTP while large requests, a huge text and slow clients run."""
    import httpx

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen(
        [sys.executable, "-m", "mlx_jina", "serve", "-m", str(folder), "--task", "retrieval",
         "--port", str(port), "--max-batch-tokens", str(BATCH_TOKENS), "--log-level", "error"],
        stdout=subprocess.DEVNULL, env=os.environ.copy(),
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while True:
            assert proc.poll() is None and time.monotonic() < deadline, "server did not start"
            try:
                if httpx.get(url + "/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.2)
        rng = random.Random(0)
        rows, width = LARGE
        large = [" ".join(rng.choice(WORDS) for _ in range(width)) for _ in range(rows)]
        embed = url + "/v1/embeddings"
        httpx.post(embed, json={"input": large[:16]}, timeout=120)  # warm up
        rss = {"start": rss_mib(proc.pid), "peak": 0.0}
        stop, sampled, tally = threading.Event(), threading.Event(), Counter()

        def sample_rss() -> None:
            while not sampled.is_set():
                rss["peak"] = max(rss["peak"], rss_mib(proc.pid))
                stop.wait(0.2)

        def large_client() -> None:
            with httpx.Client(timeout=300) as http:
                while not stop.is_set():
                    tally[f"large {http.post(embed, json={'input': large}).status_code}"] += 1

        huge: dict = {}

        def huge_client() -> None:
            text = ("The quick brown fox jumps over the lazy dog. " * (1 + int(huge_mb * 2**20) // 45))
            body = {"input": text[: int(huge_mb * 2**20)], "truncate": True}
            start = time.perf_counter()
            try:
                r = httpx.post(embed, json=body, timeout=600)
            except httpx.HTTPError:
                return
            huge.update(status=r.status_code, seconds=time.perf_counter() - start)

        sampler = threading.Thread(target=sample_rss)
        sampler.start()
        threads = [threading.Thread(target=large_client) for _ in range(2)]
        if loris:
            threads.append(threading.Thread(target=slowloris, args=(port, loris, stop, tally)))
        for t in threads:
            t.start()
        if huge_mb:
            threads.append(threading.Thread(target=huge_client))
            threads[-1].start()
        time.sleep(2.0)  # the slow sockets are open, the huge text is in
        answers: list[tuple[int, float]] = []

        def query() -> None:
            start = time.perf_counter()
            try:
                status = httpx.post(embed, json={"input": "hello"}, timeout=60).status_code
            except httpx.HTTPError:
                status = 0
            answers.append((status, time.perf_counter() - start))

        queries = []
        begin = time.perf_counter()
        while time.perf_counter() - begin < seconds:
            queries.append(threading.Thread(target=query))
            queries[-1].start()
            time.sleep(QUERY_EVERY)
        stop.set()
        for t in queries + threads:
            t.join(60)  # a huge text still running after that is reported as such
        sampled.set()
        sampler.join()
        ok = [s for status, s in answers if status == 200]
        return {
            "queries": len(answers),
            "refused": dict(Counter(status for status, _ in answers if status != 200)),
            "p50_ms": 1000 * percentile(ok, 0.5),
            "p99_ms": 1000 * percentile(ok, 0.99),
            "max_ms": 1000 * percentile(ok, 1.0),
            "huge": huge,
            "loris_connects": tally["connects"],
            "large_done": tally["large 200"],
            "rss_start_mib": rss["start"],
            "rss_peak_mib": rss["peak"],
        }
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()


def http_table(r: dict, args) -> str:
    huge = r["huge"]
    if not args.huge_text_mb:
        huge_text = "-"
    elif huge:
        huge_text = f"{huge['status']} in {huge['seconds']:.1f} s"
    else:
        huge_text = "no answer by the end"
    return "\n".join([
        f"One-word queries every {QUERY_EVERY * 1000:g} ms on fresh connections, for "
        f"{args.seconds:g} s, while 2 clients send {LARGE[0]} texts of {LARGE[1]} words back "
        f"to back, one client posts a {args.huge_text_mb:g} MB text with truncate, and "
        f"{args.slowloris} slow sockets send a header byte a second; `mlx-jina serve` on a "
        f"tiny random Qwen3 (hidden 64, 2 layers, context {args.context}, Qwen tokenizer), "
        f"{platform.machine()} CPU.",
        "",
        "| queries | refused | query p50 | query p99 | query max | large done | huge text "
        "| slow connects | server RSS start | server RSS peak |",
        "|---|---|---|---|---|---|---|---|---|---|",
        f"| {r['queries']} | {r['refused'] or 0} | {r['p50_ms']:.0f} ms | {r['p99_ms']:.0f} ms "
        f"| {r['max_ms']:.0f} ms | {r['large_done']} | {huge_text} | {r['loris_connects']} "
        f"| {r['rss_start_mib']:.0f} MiB | {r['rss_peak_mib']:.0f} MiB |",
    ])  # fmt: skip


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
    parser.add_argument("--seconds", type=float, default=20, help="query time per schedule")
    parser.add_argument("--json", help="also write the figures as JSON to this file")
    parser.add_argument("--huge-text-mb", type=float, default=0,
                        help="over HTTP: one client posts one text of this many MB")
    parser.add_argument("--slowloris", type=int, default=0, metavar="N",
                        help="over HTTP: N sockets trickle header bytes and reconnect")
    parser.add_argument("--context", type=int, default=8192,
                        help="over HTTP: the model's context, where the huge text is cut")
    args = parser.parse_args(argv)
    if args.huge_text_mb or args.slowloris:
        with tempfile.TemporaryDirectory() as tmp:
            log("[INFO] building a tiny random model with the Qwen tokenizer")
            folder = build_model(Path(tmp), args.context)
            log(f"[INFO] over HTTP: {args.seconds:g} s of queries")
            result = run_http(folder, args.seconds, args.huge_text_mb, args.slowloris)
        print(http_table(result, args))
    else:
        with tempfile.TemporaryDirectory() as tmp:
            log("[INFO] building a tiny random model")
            folder = build_model(Path(tmp))
            log(f"[INFO] {args.seconds:g} s of queries")
            result = {"fair queuing": run(folder, args.seconds)}
        print(table(result))
    if args.json:
        write_json(args.json, result)


if __name__ == "__main__":
    main()
