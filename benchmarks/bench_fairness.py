"""Latency of one-word queries while large requests run through the server's Worker
(fair queuing, batch by batch), against a query alone and one full batch alone.

A tiny random model is built in-process (tests/builders) and the Worker is driven from
threads, no HTTP: two clients send large requests back to back, and a third sends a
one-word query every 100 ms whatever happens to the earlier ones. It prints a table and
writes its figures as JSON. About half a minute on a 2-core Linux box:

    python benchmarks/bench_fairness.py [--seconds 20] [--json results.json]

With --huge-text-mb or --slowloris the same mix runs over HTTP against `mlx-jina serve`
in a subprocess (so its RSS is the server's own), with the Qwen tokenizer and a context
of 8,192: one client posts one text of that many MB with "truncate": true, and/or N
sockets send one header byte a second, reconnecting when closed. Queries then go on
fresh connections, and the table adds refused queries and the server's peak RSS. To
compare with another checkout, run the same command with PYTHONPATH pointing at it (the
server inherits it):

    python benchmarks/bench_fairness.py --huge-text-mb 15 --slowloris 200 --seconds 30

Needs the server extra; the random checkpoint is built with numpy.
"""

import argparse
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
from checkpoint import QWEN_TOKENIZER, QWEN_VOCAB, TINY, build
from internals import log, percentile, proc_mib, table, timed, write_json

Job, Limits, Worker = internals.server()

BATCH_TOKENS = 1024  # per forward pass: ~8 rows of a large request
LARGE = (128, 128)  # rows, tokens a row: 16 batches
QUERY = [311, 4, 2]  # token ids, as long as a one-word query
QUERY_EVERY = 0.1  # seconds
CONTEXT = 8192  # over HTTP: the model's positions, where the huge text is cut
WORDS = "the of and to in is was for on that with as by at from his it an were are".split()


def mix(large, query, seconds: float, settle: float, others=()) -> tuple[list, list]:
    """Two clients call `large` back to back and `others` run, while `query` starts in a
    thread of its own every QUERY_EVERY s for `seconds`: (answer, seconds) of each query
    and of each large request."""
    stop, queries, larges = threading.Event(), [], []

    def client() -> None:
        while not stop.is_set():
            larges.append(timed(large))

    threads = [threading.Thread(target=client) for _ in range(2)]
    threads += [threading.Thread(target=fn, args=(stop,)) for fn in others]
    for t in threads:
        t.start()
    time.sleep(settle)  # the large requests are running (the slow sockets open)
    begin = time.perf_counter()
    while time.perf_counter() - begin < seconds:
        threads.append(threading.Thread(target=lambda: queries.append(timed(query))))
        threads[-1].start()
        time.sleep(QUERY_EVERY)
    stop.set()
    for t in threads:
        t.join(60)  # a huge text still running after that is reported as such
    return queries, larges


def run(folder: Path, seconds: float) -> dict:
    """Query latencies and large-request throughput through the Worker."""
    worker = Worker(lambda: mlx_jina.load(folder, task="retrieval"),
                    limits=Limits(max_batch_tokens=BATCH_TOKENS)).start()  # fmt: skip
    rng = random.Random(0)
    rows, width = LARGE
    large = [[rng.randrange(20, 500) for _ in range(width)] for _ in range(rows)]

    def send(rows) -> None:
        worker.submit(Job("retrieval", rows, None, True, "float32")).result()

    def median_ms(rows, times: int) -> float:
        return 1000 * statistics.median(timed(send, rows)[1] for _ in range(times))

    send(large[:16])  # warm up, then a query and a full batch alone
    alone_ms, batch_ms = median_ms([QUERY], 20), median_ms(large[: BATCH_TOKENS // width], 5)
    queries, larges = mix(lambda: send(large), lambda: send([QUERY]), seconds, 0.5)
    worker.stop()
    latencies = [s for _, s in queries]
    return {"alone_ms": alone_ms, "batch_ms": batch_ms, "queries": len(latencies),
            "p50_ms": 1000 * percentile(latencies, 0.5), "p99_ms": 1000 * percentile(latencies, 0.99),
            "max_ms": 1000 * max(latencies), "large_done": len(larges),
            "large_s": statistics.median(s for _, s in larges) if larges else float("nan")}  # fmt: skip


def slowloris(port: int, sockets: int, tally: Counter, stop: threading.Event) -> None:
    """`sockets` connections that each send one header byte a second, and reconnect."""
    head = b"POST /v1/embeddings HTTP/1.1\r\nHost: localhost\r\nX-Pad: " + b"a" * 100_000
    held: dict[int, list] = {}  # socket index -> [socket, bytes sent]
    while not stop.is_set():
        for i in range(sockets):
            try:
                if i not in held:
                    held[i] = [socket.create_connection(("127.0.0.1", port), timeout=2), 0]
                    held[i][0].setblocking(False)
                    tally["connects"] += 1
                s, sent = held[i]
                try:
                    s.recv(4096)
                    raise ConnectionError("answered (408, 503) or closed")  # reconnect
                except BlockingIOError:
                    pass
                held[i][1] += s.send(head[sent : sent + 1])
            except OSError:
                if i in held:
                    held.pop(i)[0].close()
        stop.wait(1.0)
    for s, _ in held.values():
        s.close()


def serve(folder: Path) -> tuple[subprocess.Popen, int]:
    """`mlx-jina serve` on a free port, once it answers /health."""
    import httpx

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "mlx_jina", "serve", "-m", str(folder), "--task", "retrieval",
                             "--port", str(port), "--max-batch-tokens", str(BATCH_TOKENS), "--log-level", "error"],
                            stdout=subprocess.DEVNULL)  # fmt: skip
    deadline = time.monotonic() + 120
    while True:
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError(f"the server did not start (exit {proc.poll()})")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                return proc, port
        except httpx.TransportError:
            time.sleep(0.2)


def run_http(folder: Path, seconds: float, huge_mb: float, loris: int) -> dict:
    """Query latencies over HTTP while large requests, a huge text and slow clients run."""
    import httpx

    proc, port = serve(folder)
    embed = f"http://127.0.0.1:{port}/v1/embeddings"
    rng = random.Random(0)
    large = [" ".join(rng.choice(WORDS) for _ in range(LARGE[1])) for _ in range(LARGE[0])]
    text = "The quick brown fox jumps over the lazy dog. " * (1 + int(huge_mb * 2**20) // 45)
    huge, tally, sampling, rss = [], Counter(), threading.Event(), {"peak": 0.0}

    def post(body: dict, timeout: float) -> int:
        try:
            return httpx.post(embed, json=body, timeout=timeout).status_code
        except httpx.HTTPError:
            return 0

    def sample_rss() -> None:
        while not sampling.wait(0.2):
            rss["peak"] = max(rss["peak"], proc_mib("VmRSS", f"/proc/{proc.pid}/status") or 0.0)

    def huge_client(stop) -> None:
        huge.append(timed(post, {"input": text[: int(huge_mb * 2**20)], "truncate": True}, 600))

    others = ([lambda stop: slowloris(port, loris, tally, stop)] if loris else []) + ([huge_client] if huge_mb else [])
    sampler = threading.Thread(target=sample_rss)
    try:
        post({"input": large[:16]}, 120)  # warm up
        rss["start"] = proc_mib("VmRSS", f"/proc/{proc.pid}/status")
        sampler.start()
        queries, larges = mix(lambda: post({"input": large}, 300), lambda: post({"input": "hello"}, 60),
                              seconds, 2.0, others)  # fmt: skip
        sampling.set()
        sampler.join()
    finally:
        sampling.set()
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
    ok = [s for status, s in queries if status == 200]
    return {"queries": len(queries), "refused": dict(Counter(status for status, _ in queries if status != 200)),
            "p50_ms": 1000 * percentile(ok, 0.5), "p99_ms": 1000 * percentile(ok, 0.99),
            "max_ms": 1000 * percentile(ok, 1.0), "huge": dict(zip(("status", "seconds"), huge[0])) if huge else {},
            "loris_connects": tally["connects"], "large_done": sum(status == 200 for status, _ in larges),
            "rss_start_mib": rss["start"], "rss_peak_mib": rss["peak"]}  # fmt: skip


def http_table(r: dict, args) -> list[str]:
    huge = f"{r['huge']['status']} in {r['huge']['seconds']:.1f} s" if r["huge"] else "no answer by the end"
    huge = huge if args.huge_text_mb else "-"
    return [f"One-word queries every {QUERY_EVERY * 1000:g} ms on fresh connections, for {args.seconds:g} s, while "
            f"2 clients send {LARGE[0]} texts of {LARGE[1]} words back to back, one client posts a "
            f"{args.huge_text_mb:g} MB text with truncate, and {args.slowloris} slow sockets send a header byte a "
            f"second; `mlx-jina serve` on a tiny random Qwen3 (hidden 64, 2 layers, context {CONTEXT}, Qwen "
            f"tokenizer), {platform.machine()} CPU.", "",
            *table(["queries", "refused", "query p50", "query p99", "query max", "large done", "huge text",
                    "slow connects", "server RSS start", "server RSS peak"],
                   [[r["queries"], r["refused"] or 0, f"{r['p50_ms']:.0f} ms", f"{r['p99_ms']:.0f} ms",
                     f"{r['max_ms']:.0f} ms", r["large_done"], huge, r["loris_connects"],
                     f"{r['rss_start_mib']:.0f} MiB", f"{r['rss_peak_mib']:.0f} MiB"]])]  # fmt: skip


def worker_table(results: dict[str, dict]) -> list[str]:
    rows, width = LARGE
    return [f"One-word queries every {QUERY_EVERY * 1000:g} ms while 2 clients send {rows}x{width}-token requests "
            f"back to back ({rows * width // BATCH_TOKENS} batches of {BATCH_TOKENS} tokens each); tiny random "
            f"Qwen3 (hidden 64, 2 layers), {platform.machine()} CPU.", "",
            *table(["worker", "query alone", "one batch", "queries", "query p50", "query p99", "query max",
                    "large requests done", "large request p50"],
                   [[name, f"{r['alone_ms']:.1f} ms", f"{r['batch_ms']:.0f} ms", r["queries"], f"{r['p50_ms']:.0f} ms",
                     f"{r['p99_ms']:.0f} ms", f"{r['max_ms']:.0f} ms", r["large_done"], f"{r['large_s']:.2f} s"]
                    for name, r in results.items()])]  # fmt: skip


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=20, help="query time per schedule")
    parser.add_argument("--json", help="also write the figures as JSON to this file")
    parser.add_argument("--huge-text-mb", type=float, default=0,
                        help="over HTTP: one client posts one text of this many MB")
    parser.add_argument("--slowloris", type=int, default=0, metavar="N",
                        help="over HTTP: N sockets trickle header bytes and reconnect")
    args = parser.parse_args(argv)
    http = args.huge_text_mb or args.slowloris
    tiny = dict(tasks=["retrieval"], r=4, lora_alpha=8, **TINY["qwen3"])
    with tempfile.TemporaryDirectory() as tmp:
        log(f"[INFO] a tiny random model, then {args.seconds:g} s of queries{' over HTTP' if http else ''}")
        if http:
            folder = build(Path(tmp) / "model", "qwen3", tokenizer=QWEN_TOKENIZER, vocab_size=QWEN_VOCAB,
                           max_position_embeddings=CONTEXT, **tiny)  # fmt: skip
            result = run_http(folder, args.seconds, args.huge_text_mb, args.slowloris)
        else:
            result = {"fair queuing": run(build(Path(tmp) / "model", "qwen3", **tiny), args.seconds)}
    print("\n".join(http_table(result, args) if http else worker_table(result)))
    if args.json:
        write_json(args.json, result)


if __name__ == "__main__":
    main()
