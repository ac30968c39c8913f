"""The local index (mlx_jina.index): search latency as it grows, indexing throughput.

1. Search latency, one query at a time, p50 and p99, over synthetic unit vectors (DIMS,
   default 1024: the small model's size) at 10k and 100k items (1M with --full):
   binary Hamming search + int8 rescoring of the best k x 4 (what the index does), next
   to exact float16 search; recall@10 of the binary path against the exact one. Up to
   --sqlite-max items the vectors also go through a real index file: the cold load of
   the vectors from SQLite and the whole `rank` call (search + fetching the k items).
   Random vectors have no real neighbourhoods (ranks 2-10 are near-ties around cosine 0),
   so recall@10 against the exact ranking is a pessimistic figure; "planted first" counts
   the queries (a stored vector plus noise) whose top hit is the item they were made from.
2. Indexing throughput vs corpus-job throughput, in one run on one random model
   (benchmarks/checkpoint.py, all four adapters, loaded multitask as the index loads it;
   tiny, or with --layers N the small model's width and tokenizer at N layers):
   `Index.index_folder` over a synthetic folder (chunks per second, SQLite writes,
   chunking and hashing included), then `embed_corpus` over the same chunk texts; ROUNDS
   passes, alternating; the median of the passes' ratios and their range.

    python benchmarks/bench_index.py [--sizes 10000,100000] [--full] [--dims 1024]
        [--skip-throughput] [--files 100] [--layers 0] [--out FILE (the figures as JSON)]
"""

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

import mlx_jina
from checkpoint import QWEN_TOKENIZER, TOKENIZERS_PIP, build
from internals import write_json
from mlx_jina.index import Index, load_model
from mlx_jina.index.search import rank
from mlx_jina.index.store import Item, Store

K = 10
ROUNDS = 7  # throughput: alternating passes of each; the median ratio and its range
TINY = dict(hidden_size=64, num_hidden_layers=1, intermediate_size=128,
            num_attention_heads=4, num_key_value_heads=2, head_dim=16)  # fmt: skip
WORDS = ("index search memory agent vector query document chunk model folder note file "
         "planet coffee launch keys bread volcano river summer").split()  # fmt: skip


def unit_rows(rng, n: int, dims: int, step: int = 100_000) -> np.ndarray:
    """n random unit vectors, float16, made a block at a time (bounded float32 memory)."""
    out = np.empty((n, dims), np.float16)
    for i in range(0, n, step):
        x = rng.standard_normal((min(step, n - i), dims), dtype=np.float32)
        out[i : i + len(x)] = x / np.linalg.norm(x, axis=1, keepdims=True)
    return out


def percentiles(seconds: list[float]) -> tuple[float, float]:
    return float(np.percentile(seconds, 50) * 1e3), float(np.percentile(seconds, 99) * 1e3)


def search_row(n: int, dims: int, queries: int, sqlite_max: int, root: Path) -> dict:
    rng = np.random.default_rng(n)
    floats = unit_rows(rng, n, dims)
    ubinary = np.concatenate([mlx_jina.quantize_embeddings(floats[i : i + 100_000], "ubinary")
                              for i in range(0, n, 100_000)])  # fmt: skip
    int8 = np.concatenate([mlx_jina.quantize_embeddings(floats[i : i + 100_000], "int8")
                           for i in range(0, n, 100_000)])  # fmt: skip
    # Queries near a stored item, so each has true neighbours to find.
    noise = rng.standard_normal((queries, dims), dtype=np.float32) * 0.04
    planted = rng.integers(n, size=queries)
    q = floats[planted].astype(np.float32) + noise
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    binary_s, float_s, recall, first = [], [], [], []
    for row, source in zip(q, planted):
        t = time.perf_counter()
        got = mlx_jina.semantic_search(row, ubinary, K, corpus_precision="ubinary",
                                       rescore_embeddings=int8)[0]  # fmt: skip
        binary_s.append(time.perf_counter() - t)
        t = time.perf_counter()
        exact = mlx_jina.semantic_search(row, floats, K, corpus_precision="float16")[0]
        float_s.append(time.perf_counter() - t)
        recall.append(len({h["corpus_id"] for h in got} & {h["corpus_id"] for h in exact}) / K)
        first.append(got[0]["corpus_id"] == source)
    out = {"items": n, "dims": dims, "queries": queries,
           "binary_int8_ms": percentiles(binary_s[1:]), "float16_ms": percentiles(float_s[1:]),
           "recall_at_10": float(np.mean(recall)), "planted_first": float(np.mean(first)),
           "bytes_per_item": ubinary.shape[1] + int8.shape[1]}  # fmt: skip
    if n <= sqlite_max:
        out.update(sqlite_row(root / f"synthetic-{n}.db", floats, ubinary, int8, q))
    return out


def sqlite_row(db: Path, floats, ubinary, int8, q) -> dict:
    """The same vectors in a real index file: cold load, then the index's rank()."""
    n, dims = floats.shape
    with Store(db) as store:
        store.set_meta("fingerprint", {"dims": dims})
        with store.transaction() as con:
            for i in range(0, n, 10_000):
                items = [Item(f"item-{j}", f"text {j}", {"n": j % 10})
                         for j in range(i, min(n, i + 10_000))]  # fmt: skip
                part = {"ubinary": ubinary[i : i + 10_000], "int8": int8[i : i + 10_000]}
                store.write_items(con, items, ["-"] * len(items), part)
    with Store(db) as store:
        t = time.perf_counter()
        store.vectors()
        load = time.perf_counter() - t
        seconds = []
        for row in q:
            t = time.perf_counter()
            rank(store, row, K)
            seconds.append(time.perf_counter() - t)
    return {"sqlite_cold_load_s": load, "sqlite_rank_ms": percentiles(seconds[1:]),
            "file_mb": db.stat().st_size / 2**20}  # fmt: skip


def write_folder(root: Path, files: int, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    for f in range(files):
        paragraphs = []
        for _ in range(int(rng.integers(3, 9))):
            lines = [" ".join(rng.choice(WORDS, int(rng.integers(6, 14))))
                     for _ in range(int(rng.integers(2, 6)))]  # fmt: skip
            paragraphs.append("\n".join(lines))
        path = root / f"d{f % 10}" / f"note-{f}.md"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("\n\n".join(paragraphs) + "\n")


def bench_model(root: Path, layers: int) -> tuple[Path, str]:
    """The tiny random model, or (--layers N) the small model's published width and
    tokenizer at N layers: encoding then costs per token what one real layer costs."""
    if not layers:
        return build(root / "model", "qwen3", r=4, lora_alpha=8, **TINY), (
            f"qwen3 {TINY['hidden_size']}-d, 1 layer, tiny tokenizer, 4 adapters, multitask")
    if QWEN_TOKENIZER is None:
        sys.exit(f"--layers needs the Qwen tokenizer: {TOKENIZERS_PIP}")
    folder = build(root / "model", "qwen3", tokenizer=QWEN_TOKENIZER, num_hidden_layers=layers)
    return folder, f"qwen3 1024-d, {layers} layer(s), Qwen tokenizer, 4 adapters, multitask"


def throughput(root: Path, files: int, chunk_tokens: int, layers: int) -> dict:
    folder, name = bench_model(root, layers)
    model = load_model(folder)
    model.encode(["warm up"] * 8, task="retrieval")
    docs = root / "docs"
    write_folder(docs, files)
    index_s, corpus_s = [], []  # (wall, CPU of all this process's threads) seconds
    for attempt in range(ROUNDS):  # alternating, so both see the same machine load
        with Index(root / f"throughput-{attempt}.db", model) as index:
            t = time.perf_counter(), time.process_time()
            summary = index.index_folder(docs, chunk_tokens=chunk_tokens, overlap=16,
                                         show_progress_bar=False)  # fmt: skip
            index_s.append((time.perf_counter() - t[0], time.process_time() - t[1]))
            texts = [it.text for it in index.list(10**9)]
        corpus = root / "chunks.jsonl"
        corpus.write_text("".join(json.dumps(t) + "\n" for t in texts))
        t = time.perf_counter(), time.process_time()
        result = mlx_jina.embed_corpus(model, corpus, root / f"job-{attempt}", task="retrieval",
                                       prompt_name="document", show_progress_bar=False)  # fmt: skip
        corpus_s.append((time.perf_counter() - t[0], time.process_time() - t[1]))
    # Index throughput / corpus job's per pass: wall clock, and CPU time (less disturbed by others)
    ratios = (np.array(corpus_s) / np.array(index_s)).T
    return {"files": files, "chunks": result.rows, "tokens": result.tokens, "model": name,
            "index_s": index_s, "corpus_s": corpus_s, "same": summary["chunks"] == result.rows,
            "index_chunks_per_s": result.rows / np.median(index_s, axis=0)[0],
            "corpus_texts_per_s": result.rows / np.median(corpus_s, axis=0)[0],
            "ratio": float(np.median(ratios[0])), "cpu_ratio": float(np.median(ratios[1])),
            "ratios": ratios[0].tolist(), "cpu_ratios": ratios[1].tolist()}  # fmt: skip


def report(rows: list[dict], tp: dict | None) -> str:
    lines = [
        f"Search latency, one query, k={K} (ms, p50 / p99)\n",
        "| items | dims | binary + int8 rescoring | float16 exact | recall@10 | planted first "
        "| bytes/item | SQLite: cold load | SQLite: rank() |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        sqlite = "| - | - |"
        if "sqlite_rank_ms" in r:
            sqlite = "| {:.2f} s | {:.1f} / {:.1f} |".format(r["sqlite_cold_load_s"],
                                                            *r["sqlite_rank_ms"])
        lines.append(
            f"| {r['items']:,} | {r['dims']} | {r['binary_int8_ms'][0]:.1f} / "
            f"{r['binary_int8_ms'][1]:.1f} | {r['float16_ms'][0]:.1f} / {r['float16_ms'][1]:.1f} "
            f"| {r['recall_at_10']:.3f} | {r['planted_first']:.2f} | {r['bytes_per_item']} "
            + sqlite)
    if tp:
        lines += [
            f"\nIndexing vs corpus job, {tp['model']}; ratios: median of {ROUNDS} (range)\n",
            "| files | chunks | index_folder | embed_corpus | ratio, wall | ratio, CPU time |",
            "|---|---|---|---|---|---|",
            f"| {tp['files']} | {tp['chunks']} | {tp['index_chunks_per_s']:.0f} chunks/s "
            f"| {tp['corpus_texts_per_s']:.0f} texts/s | "
            + " | ".join(f"{tp[k]:.2f} ({min(tp[k + 's']):.2f}-{max(tp[k + 's']):.2f})"
                         for k in ("ratio", "cpu_ratio")) + " |"]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="10000,100000", help="comma-separated item counts")
    parser.add_argument("--full", action="store_true", help="add 1,000,000 items")
    parser.add_argument("--dims", type=int, default=1024)
    parser.add_argument("--queries", type=int, default=30, help="queries per size (+1 warm-up)")
    parser.add_argument("--sqlite-max", type=int, default=100_000,
                        help="largest size also measured through a real index file")
    parser.add_argument("--files", type=int, default=100, help="files for the throughput run")
    parser.add_argument("--chunk-tokens", type=int, default=128)
    parser.add_argument("--layers", type=int, default=0,
                        help="throughput model: published width at this depth (0: tiny)")
    parser.add_argument("--skip-throughput", action="store_true")
    parser.add_argument("--out", type=Path, help="also write the figures as JSON here")
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",") if s] + ([1_000_000] if args.full else [])
    rows, tp = [], None
    with tempfile.TemporaryDirectory(prefix="bench_index_") as tmp:
        for n in sizes:
            rows.append(search_row(n, args.dims, args.queries + 1, args.sqlite_max, Path(tmp)))
            print(json.dumps(rows[-1]), flush=True)
        if not args.skip_throughput:
            tp = throughput(Path(tmp), args.files, args.chunk_tokens, args.layers)
            print(json.dumps(tp), flush=True)
    print(report(rows, tp))
    if args.out:
        write_json(args.out, {"search": rows, "throughput": tp})


if __name__ == "__main__":
    main()
