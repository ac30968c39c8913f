"""What data-parallel corpus embedding costs: ranks on loopback against 1 process.

Two measurements, both through the scheduler of a corpus job (lockstep rounds over
collectives, mlx_jina.corpus.rounds):

* transport: the other ranks answer every shard with ready-made vectors (no model),
  rank 0 only hands out, so the time per shard is the protocol alone;
* model: the same shards embedded by 1 process, then by the launched ranks (rank 0
  embeds too), on a random reduced qwen3 model with the real output size (1024 dims).

    python benchmarks/bench_corpus_distributed.py [--shards 8] [--texts 8] [--ranks 2 4]

It launches itself with `mlx.launch -n N --backend ring` on 127.0.0.1 once per rank
count and prints one Markdown table. On one
machine the ranks share its cores, so the wall time with ranks says nothing about
several Macs; the per-shard transport cost and the bytes per vector are what carry over
(see the README's "Several Macs").
"""

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

DIM = 1024  # jina-embeddings-v5-text-small's output
TRANSPORT_TEXTS = 256  # texts per shard in the transport measurement (--transport-texts)
ITEMSIZE = {"float32": 4, "float16": 2, "int8": 1, "ubinary": 1 / 8}


def shards(count: int, texts: int) -> list[tuple[int, list[str]]]:
    """`count` shards of `texts` passages of about 100 bytes each."""
    rng = np.random.default_rng(0)
    words = ["embedding", "corpus", "shard", "vector", "rank", "ring", "model", "text"]
    make = lambda: " ".join(rng.choice(words, 14))
    return [(i, [make() for _ in range(texts)]) for i in range(count)]


def build_model(root: Path) -> Path:
    sys.path.insert(0, str(Path(__file__).parent))
    from checkpoint import build

    return build(
        root / "model", "qwen3", num_hidden_layers=1, hidden_size=DIM,
        intermediate_size=128, num_attention_heads=2, num_key_value_heads=1, head_dim=64,
    )  # fmt: skip


def embedder(folder: Path):
    import mlx_jina

    model = mlx_jina.load(folder, task="retrieval")
    return lambda texts: (model.encode(texts), model.last_stats.real_tokens)


def timed_map(pool, work) -> tuple[float, int]:
    start, n = time.perf_counter(), 0
    for _ in pool.map(work):
        n += 1
    return time.perf_counter() - start, n


def rank_job(folder: str, out: str, count: int, texts: int) -> None:
    """Runs on every launched rank; rank 0 writes the JSON results to `out`."""
    from internals import corpus_ranks

    init_group, RoundPool, serve = corpus_ranks()
    group = init_group()
    work, moved = shards(count, texts), shards(count, TRANSPORT_TEXTS)
    results = {"ping": ping(group) if group.size() == 2 else None}
    if group.rank() != 0:
        for precision in ITEMSIZE:  # transport: one pool per precision
            ready = fake_vectors(TRANSPORT_TEXTS, precision)
            serve(group, lambda t, v=ready: (v, 0))
        serve(group, embedder(Path(folder)))
        return
    for precision in ITEMSIZE:
        with RoundPool(group) as pool:
            seconds, n = timed_map(pool, moved)
        results[f"transport {precision}"] = seconds / n
    with RoundPool(group, embedder(Path(folder))) as pool:
        seconds, _ = timed_map(pool, work)
    results["model"] = seconds
    results["by_rank"] = pool.shards_by_rank
    results["scheduler"] = type(pool).__name__
    Path(out).write_text(json.dumps(results))


def ping(group, rounds: int = 20) -> float:
    """Seconds per round trip of one 64-byte message, rank 0 -> 1 -> 0."""
    import mlx.core as mx

    stream, x = mx.new_stream(mx.cpu), np.zeros(8, np.int64)
    start = time.perf_counter()
    for _ in range(rounds):
        peer = 1 - group.rank()
        for step in ("send", "recv") if group.rank() == 0 else ("recv", "send"):
            if step == "send":
                mx.eval(mx.distributed.send(mx.array(x), peer, group=group, stream=stream))
            else:
                mx.eval(mx.distributed.recv((8,), mx.int64, peer, group=group, stream=stream))
    return (time.perf_counter() - start) / rounds


def fake_vectors(texts: int, precision: str) -> np.ndarray:
    if precision == "ubinary":
        return np.zeros((texts, DIM // 8), np.uint8)
    return np.zeros((texts, DIM), np.dtype(precision))


def main() -> None:
    global TRANSPORT_TEXTS
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shards", type=int, default=8)
    parser.add_argument("--texts", type=int, default=8, help="texts per shard")
    parser.add_argument("--ranks", type=int, nargs="+", default=[2, 4])
    parser.add_argument("--transport-texts", type=int, default=TRANSPORT_TEXTS,
                        help="texts per shard when measuring the transport alone")
    parser.add_argument("--json", type=Path, help="write the figures here")
    parser.add_argument("--rank-job", nargs=2, metavar=("MODEL", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    TRANSPORT_TEXTS = args.transport_texts
    if args.rank_job:
        return rank_job(*args.rank_job, args.shards, args.texts)
    from internals import corpus_ranks

    RoundPool = corpus_ranks()[1]
    runs = [(n, "rounds") for n in args.ranks]
    with tempfile.TemporaryDirectory() as tmp:
        folder, out = build_model(Path(tmp)), Path(tmp) / "results.json"
        work = shards(args.shards, args.texts)
        one, _ = timed_map(RoundPool(None, embedder(folder)), work)
        results = {}
        for ranks, mode in runs:
            cmd = ["mlx.launch", "-n", str(ranks), "--backend", "ring", "--", sys.executable,
                   __file__, "--shards", str(args.shards), "--texts", str(args.texts),
                   "--transport-texts", str(TRANSPORT_TEXTS), "--rank-job", str(folder), str(out)]  # fmt: skip
            subprocess.run(cmd, check=True, timeout=600)
            results[ranks, mode] = json.loads(out.read_text())
    report(args, work, one, results)
    if args.json:
        from internals import write_report

        figures = {f"{r} ranks, {m}": got for (r, m), got in results.items()}
        write_report(args.json, json.dumps(figures | {"1 process, model": one}, indent=1))


def report(args, work, one: float, results: dict) -> None:
    text_bytes = sum(len(t.encode()) for _, s in work for t in s) / (args.shards * args.texts)
    print(f"{args.shards} shards of {args.texts} texts (~{text_bytes:.0f} bytes each), "
          f"{DIM}-d vectors, loopback ring\n")  # fmt: skip
    print("| measure | value |\n|---|---|")
    print(f"| 1 process, model | {one:.2f} s ({one / args.shards * 1e3:.0f} ms/shard) |")
    n = TRANSPORT_TEXTS
    for (ranks, mode), got in results.items():
        print(f"| {ranks} ranks, {mode}, model | {got['model']:.2f} s, shards by rank {got['by_rank']} |")
        if got["ping"] is not None:
            print(f"| {ranks} ranks, {mode}: one 64-byte round trip | {got['ping'] * 1e3:.2f} ms |")
        for precision, size in ITEMSIZE.items():
            per_shard = got[f"transport {precision}"]
            sent = 32 + n * (8 + text_bytes) + 64 + n * DIM * size
            print(f"| {ranks} ranks, {mode}: transport only, {n} texts/shard, {precision} | "
                  f"{per_shard * 1e3:.1f} ms/shard, {DIM * size:g} B/vector, {sent / 1e3:.0f} kB/shard "
                  f"both ways, {sent / per_shard / 1e6:.0f} MB/s |")  # fmt: skip


if __name__ == "__main__":
    main()
