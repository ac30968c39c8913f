"""Packing against padding on the device (issue 13, item 5): one step of gpu_check.py.

`run(m, texts, smoke)` measures, in a child process, the same texts as mlx_jina plans
them (padded, and padded with fewer passes) and packed into rows under the same token
budget (block-diagonal mask; per-text spans), on the check's own random checkpoint at
the published shapes, bf16 (fp32 in --smoke): tokens/s over interleaved rounds after a
warm-up, working peak memory, the warm-up pass (kernels, cuDNN graphs), the number of
distinct attention shapes, and each layout's cosine with mlx_jina's vectors.

The child sets MLX_CUDA_SDPA_CACHE_SIZE: MLX's CUDA backend caches one cuDNN attention
graph per shape, 16 by default, and per-text spans use one shape per distinct text
length; with the default, they would rebuild graphs every layer and measure that instead.

    python benchmarks/gpu/packing.py FOLDER OPTIONS_JSON   (the child; one JSON line)
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve()
if __name__ == "__main__":  # a child: benchmarks/ first, never benchmarks/gpu/
    sys.path[0:1] = [str(HERE.parents[1]), str(HERE.parents[2])]

from internals import write_report  # noqa: E402 - benchmarks/ is on the path by now

BUDGET = 8192  # tokens per pass: encode's default, as the check's corpus rows use
REPEATS = 3
SDPA_CACHE = "4096"


def options(texts: int, smoke: bool) -> dict:
    """The corpora: the check's long-tailed corpus (same seed) and short queries."""
    return {"texts": texts, "max_len": 300 if smoke else 2000,
            "queries": 16 if smoke else 256, "repeats": 1 if smoke else REPEATS,
            "load": {"dtype": "float32" if smoke else "bfloat16"}}  # fmt: skip


def run(m, texts: int, smoke: bool, timeout: float = 150) -> dict:
    """The comparison for model `m` (a gpu.setup.Model with its folder built). It runs
    last in the check: the timeout keeps it from carrying the check past a device
    call's 600 s when the steps before it used the 420 s budget."""
    from .mlx_runs import child_env

    env = child_env() | {"MLX_CUDA_SDPA_CACHE_SIZE": SDPA_CACHE}
    cmd = [sys.executable, str(HERE), str(m.folder), json.dumps(options(texts, smoke))]
    try:
        out = subprocess.run(cmd, check=False, capture_output=True, text=True,
                             timeout=timeout, env=env)  # fmt: skip
    except subprocess.TimeoutExpired as e:  # the check notes it as this step failing
        raise RuntimeError(f"timed out after {timeout:.0f} s") from e
    line = next((s for s in reversed(out.stdout.splitlines()) if s.startswith("{")), None)
    if out.returncode or line is None:
        raise RuntimeError(f"exit {out.returncode}: {out.stderr[-400:]}")
    return json.loads(line)


def child(folder: str, opts: dict) -> dict:
    import mlx_jina  # first: it picks the BLAS

    from gpu.setup import TASK
    from packing import corpora, timing

    embedder = mlx_jina.load(folder, task=TASK, **opts["load"])
    vocab = embedder.model.args.vocab_size
    sets = {
        f"long-tailed, {opts['texts']} texts":
            corpora.long_tailed(opts["texts"], vocab, max_len=opts["max_len"]),
        f"queries, {opts['queries']} texts": corpora.queries(opts["queries"], vocab),
    }  # fmt: skip
    out = {}
    for label, ids in sets.items():
        vs = timing.variants(embedder, [len(r) for r in ids], BUDGET)
        out[label] = timing.compare(vs, ids, opts["repeats"])
    return out


def markdown(section: dict) -> str:
    """The section appended to gpu_check.md."""
    from packing.report import timing_table
    from packing.rule import verdict

    lines = ["", "## Packing against padding (issue 13, item 5)", "",
             f"Same texts, budget {BUDGET:,} tokens per pass; benchmarks/results/packing.md "
             "says how to read this and the rule it decides.", "",
             f"Decision rule: **{verdict(section)}**.", ""]  # fmt: skip
    for name, by_corpus in section.items():
        if "error" in by_corpus or "skipped" in by_corpus:
            lines += [f"{name}: {by_corpus.get('error') or by_corpus.get('skipped')}", ""]
            continue
        for corpus, rows in by_corpus.items():
            lines += timing_table(f"{name}, {corpus}", rows)
            lines += ["", "Warm-up pass s / distinct attention shapes: " + "; ".join(
                f"{k}: {r.get('warmup_s', '-')} / {r.get('attention_shapes', '-')}"
                for k, r in rows.items()), ""]  # fmt: skip
    return "\n".join(lines) + "\n"


def append_markdown(out: Path, section: dict) -> None:
    report = Path(out) / "gpu_check.md"
    write_report(report, report.read_text() + markdown(section))


if __name__ == "__main__":
    os.environ.setdefault("MLX_CUDA_SDPA_CACHE_SIZE", SDPA_CACHE)
    print(json.dumps(child(sys.argv[1], json.loads(sys.argv[2]))), flush=True)
