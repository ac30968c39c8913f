"""What data-parallel corpus embedding costs: ranks on loopback against 1 process.

Two measurements, both through the scheduler of a corpus job (lockstep rounds over
collectives, mlx_jina.corpus.rounds):

* transport: the other ranks answer every shard with ready-made vectors (no model),
  rank 0 only hands out, so the time per shard is the protocol alone;
* model: the same shards embedded by 1 process, then by the launched ranks (rank 0
  embeds too), on a random reduced qwen3 model with the real output size (1024 dims).

    python benchmarks/bench_corpus_distributed.py [--shards 8] [--texts 8] [--ranks 2 4]

It launches itself with `mlx.launch -n N --backend ring` on 127.0.0.1 once per rank
count and prints one Markdown table. On one machine the ranks share its cores, so the
wall time with ranks says nothing about several Macs; the per-shard transport cost and
the bytes per vector are what carry over (see the README's "Several Macs").
"""

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from checkpoint import build
from internals import corpus_ranks, table, write_json

DIM = 1024  # jina-embeddings-v5-text-small's output
ITEMSIZE = {"float32": 4, "float16": 2, "int8": 1, "ubinary": 1 / 8}


def shards(count: int, texts: int) -> list[tuple[int, list[str]]]:
    """`count` shards of `texts` passages of about 100 bytes each."""
    rng = np.random.default_rng(0)
    words = ["embedding", "corpus", "shard", "vector", "rank", "ring", "model", "text"]
    return [(i, [" ".join(rng.choice(words, 14)) for _ in range(texts)]) for i in range(count)]


def embedder(folder: Path):
    import mlx_jina

    model = mlx_jina.load(folder, task="retrieval")
    return lambda texts: (model.encode(texts), model.last_stats.real_tokens)


def timed_map(pool, work) -> float:
    start = time.perf_counter()
    for _ in pool.map(work):
        pass
    return time.perf_counter() - start


def rank_job(args, folder: str, out: str) -> None:
    """Runs on every launched rank; rank 0 writes the JSON results to `out`."""
    init_group, RoundPool, serve = corpus_ranks()
    group = init_group()
    results = {"ping": ping(group) if group.size() == 2 else None}
    if group.rank() != 0:
        for precision in ITEMSIZE:  # transport: one pool per precision
            ready = np.zeros((args.transport_texts, DIM // 8 if precision == "ubinary" else DIM),
                             np.uint8 if precision == "ubinary" else np.dtype(precision))  # fmt: skip
            serve(group, lambda t, v=ready: (v, 0))
        serve(group, embedder(Path(folder)))
        return
    moved = shards(args.shards, args.transport_texts)
    for precision in ITEMSIZE:
        with RoundPool(group) as pool:
            results[f"transport {precision}"] = timed_map(pool, moved) / args.shards
    with RoundPool(group, embedder(Path(folder))) as pool:
        results["model"] = timed_map(pool, shards(args.shards, args.texts))
    results["by_rank"] = pool.shards_by_rank
    Path(out).write_text(json.dumps(results))


def ping(group, rounds: int = 20) -> float:
    """Seconds per round trip of one 64-byte message, rank 0 -> 1 -> 0."""
    import mlx.core as mx

    stream, x, peer = mx.new_stream(mx.cpu), np.zeros(8, np.int64), 1 - group.rank()
    start = time.perf_counter()
    for _ in range(rounds):
        for step in ("send", "recv") if group.rank() == 0 else ("recv", "send"):
            if step == "send":
                mx.eval(mx.distributed.send(mx.array(x), peer, group=group, stream=stream))
            else:
                mx.eval(mx.distributed.recv((8,), mx.int64, peer, group=group, stream=stream))
    return (time.perf_counter() - start) / rounds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shards", type=int, default=8)
    parser.add_argument("--texts", type=int, default=8, help="texts per shard")
    parser.add_argument("--ranks", type=int, nargs="+", default=[2, 4])
    parser.add_argument("--transport-texts", type=int, default=256,
                        help="texts per shard when measuring the transport alone (default 256)")
    parser.add_argument("--json", type=Path, help="write the figures here")
    parser.add_argument("--rank-job", nargs=2, metavar=("MODEL", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.rank_job:
        return rank_job(args, *args.rank_job)
    figures = {}
    with tempfile.TemporaryDirectory() as tmp:
        folder = build(Path(tmp) / "model", "qwen3", num_hidden_layers=1, hidden_size=DIM, intermediate_size=128,
                       num_attention_heads=2, num_key_value_heads=1, head_dim=64)  # fmt: skip
        figures["1 process, model"] = timed_map(corpus_ranks()[1](None, embedder(folder)),
                                                shards(args.shards, args.texts))  # fmt: skip
        out = Path(tmp) / "results.json"
        for ranks in args.ranks:
            cmd = ["mlx.launch", "-n", str(ranks), "--backend", "ring", "--", sys.executable, __file__,
                   "--shards", str(args.shards), "--texts", str(args.texts),
                   "--transport-texts", str(args.transport_texts), "--rank-job", str(folder), str(out)]  # fmt: skip
            subprocess.run(cmd, check=True, timeout=600)
            figures[f"{ranks} ranks"] = json.loads(out.read_text())
    print("\n".join(report(args, figures)))
    if args.json:
        write_json(args.json, figures)


def report(args, figures: dict) -> list[str]:
    texts = [t for _, shard in shards(args.shards, args.texts) for t in shard]
    text_bytes = sum(len(t.encode()) for t in texts) / len(texts)
    one, n = figures["1 process, model"], args.transport_texts
    rows = [["1 process, model", f"{one:.2f} s ({one / args.shards * 1e3:.0f} ms/shard)"]]
    for name, got in list(figures.items())[1:]:
        rows.append([f"{name}, model", f"{got['model']:.2f} s, shards by rank {got['by_rank']}"])
        if got["ping"] is not None:
            rows.append([f"{name}: one 64-byte round trip", f"{got['ping'] * 1e3:.2f} ms"])
        for precision, size in ITEMSIZE.items():
            per_shard, sent = got[f"transport {precision}"], 32 + n * (8 + text_bytes) + 64 + n * DIM * size
            rows.append([f"{name}: transport only, {n} texts/shard, {precision}",
                         f"{per_shard * 1e3:.1f} ms/shard, {DIM * size:g} B/vector, {sent / 1e3:.0f} kB/shard "
                         f"both ways, {sent / per_shard / 1e6:.0f} MB/s"])  # fmt: skip
    head = f"{args.shards} shards of {args.texts} texts (~{text_bytes:.0f} bytes each), {DIM}-d vectors, loopback ring"
    return [head, ""] + table(["measure", "value"], rows)


if __name__ == "__main__":
    main()
