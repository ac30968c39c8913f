"""Padded and packed passes over the same texts, interleaved: tokens/s, peak memory and
the vectors of each layout (their cosines with mlx_jina's say the packing is right)."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import mlx.core as mx
import numpy as np

from internals import plan_batches

from .forward import packed_embed
from .layout import pack, pack_plan

Step = Callable[[list[list[int]]], mx.array]  # one pass's rows -> (n, D), graph only


@dataclass
class Variant:
    name: str
    plan: list[list[int]]  # text indices of each forward pass, in output order
    step: Step
    computed: int  # tokens through the linears, padding included
    shapes: int  # distinct (queries, keys) attention shapes: cuDNN builds a graph per shape


# The control: mlx_jina's planner with no cap on rows and more padding allowed per
# batch, so it makes about as few passes as packing. If packing wins on a device only by
# running fewer passes, this wins too, with no second forward path.
LOOSE_ROWS, LOOSE_PADDING = 1024, 256


def variants(embedder, lengths: list[int], budget: int, batch_size: int = 32) -> list[Variant]:
    """mlx_jina's own padded batches and pass (`Embedder.embed_batch`), the control with
    fewer passes, then the same texts packed under the same token budget, attended by
    mask and by per-text spans."""
    plan = plan_batches(lengths, batch_size, budget)
    loose = plan_batches(lengths, LOOSE_ROWS, budget, LOOSE_PADDING)
    rows = pack_plan(lengths, budget)
    model, real = embedder.model, sum(lengths)

    def packed(attention: str) -> Step:
        return lambda r: packed_embed(model, pack(r), attention)

    def widths(batches: list[list[int]]) -> int:
        return len({(len(b), max(lengths[i] for i in b)) for b in batches})

    spans = len({lengths[i] for r in rows for i in r})
    return [
        Variant("padded (mlx_jina)", plan.batches, embedder.embed_batch, plan.padded_tokens,
                widths(plan.batches)),
        Variant(f"padded, fewer passes (max_padding {LOOSE_PADDING})", loose.batches,
                embedder.embed_batch, loose.padded_tokens, widths(loose.batches)),
        Variant("packed, block mask", rows, packed("mask"), real,
                len({sum(lengths[i] for i in r) for r in rows})),
        Variant("packed, per-text spans", rows, packed("segments"), real, spans),
    ]  # fmt: skip


def one_pass(v: Variant, ids: list[list[int]]) -> tuple[float, np.ndarray]:
    """The engine's loop (one graph in flight): seconds, and vectors in input order."""
    done: list[mx.array] = []
    t = time.perf_counter()
    for batch in v.plan:
        out = v.step([ids[i] for i in batch])
        mx.async_eval(out)
        if done:
            mx.eval(done[-1])
        done.append(out)
    mx.eval(done[-1])
    seconds = time.perf_counter() - t
    vectors = np.zeros((len(ids), done[0].shape[1]), dtype=np.float32)
    vectors[[i for b in v.plan for i in b]] = np.concatenate([np.array(d) for d in done])
    return seconds, vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def timed(v: Variant, ids: list[list[int]]) -> tuple[float, float, float]:
    """One pass from an empty buffer cache: wall seconds, CPU seconds of this process
    (all its threads: what a shared machine's other load disturbs least), working peak
    GiB."""
    mx.clear_cache()
    mx.reset_peak_memory()
    base = mx.get_active_memory()  # the weights: the same for every layout
    cpu = time.process_time()
    seconds, _ = one_pass(v, ids)
    cpu = time.process_time() - cpu
    return seconds, cpu, (mx.get_peak_memory() - base) / 2**30


def compare(vs: list[Variant], ids: list[list[int]], repeats: int) -> dict[str, dict]:
    """A warm-up pass of each, then `repeats` rounds with every layout once per round,
    so drift (heat, other load) falls on all of them alike."""
    real = sum(map(len, ids))
    vectors, warmup = {}, {}
    for v in vs:  # the first pass pays for compiling kernels and building cuDNN graphs
        t = time.perf_counter()
        vectors[v.name] = one_pass(v, ids)[1]
        warmup[v.name] = round(time.perf_counter() - t, 3)
    runs: dict[str, list[tuple[float, float, float]]] = {v.name: [] for v in vs}
    for _ in range(repeats):
        for v in vs:
            runs[v.name].append(timed(v, ids))
    reference = vectors[vs[0].name]
    out = {}
    for v in vs:
        rates = [real / s for s, _, _ in runs[v.name]]
        out[v.name] = {
            "passes": len(v.plan),
            "computed_tokens": v.computed,
            "real_tokens": real,
            "tokens_per_s": [round(r, 1) for r in rates],
            "min": round(min(rates), 1),
            "median": round(statistics.median(rates), 1),
            "max": round(max(rates), 1),
            "per_cpu_s": round(statistics.median(real / c for _, c, _ in runs[v.name]), 1),
            "peak_gib": round(max(p for _, _, p in runs[v.name]), 3),
            "cosine_min": round(float((vectors[v.name] * reference).sum(1).min()), 8),
            "warmup_s": warmup[v.name],
            "attention_shapes": v.shapes,
        }
    base = out[vs[0].name]["median"]
    base_cpu = out[vs[0].name]["per_cpu_s"]
    for row in out.values():
        row["vs_padded"] = round(row["median"] / base, 3)
        row["cpu_vs_padded"] = round(row["per_cpu_s"] / base_cpu, 3)
    return out
