"""The prose of results/packing.md: the answer, the method and the decision rule, with
the figures of this run filled in (so a rerun cannot leave them stale)."""

from __future__ import annotations

from .rule import CONTROL, GAIN, MASK, MIN_COSINE, OVER_CONTROL, PADDED, SPANS, verdict


def _rows(measured: dict, name: str) -> list[dict]:
    return [row for by_corpus in measured.values() for rows in by_corpus.values()
            for key, row in rows.items() if key.startswith(name)]  # fmt: skip


def _span(values: list[float], fmt: str = "{:.2f}") -> str:
    return f"{fmt.format(min(values))}–{fmt.format(max(values))}" if values else "-"


def findings(facts: dict, measured: dict) -> list[str]:
    packed = _rows(measured, MASK) + _rows(measured, SPANS)
    cos = min((r["cosine_min"] for r in packed), default=None)
    lines = [
        "## Answer", "",
        "- **MLX 0.32 has no variable-length (segment-aware) attention.** `mx.fast` offers "
        "`scaled_dot_product_attention` with one mask, `\"causal\"` or an array; MLX's "
        "CUDA backend runs it as cuDNN SDPA with that array as a dense bias (or cuDNN's "
        "causal flag), or a one-query vector kernel; no sequence-length or ragged-offset "
        "input (mlx `backend/cuda/scaled_dot_product_attention.cpp`). The maintainers on "
        "packing masks: \"There is no equivalent in MLX and unlikely we will add it for "
        "the time being\" (ml-explore/mlx#1248). A packed row's masked attention is the "
        "whole T × T square.",
        f"- **Padding is small; the mask's square is not.** On the long-tailed corpus "
        f"packing saves {_span(facts['saved'], '{:.1%}')} of the FLOPs (the padding: "
        "mlx_jina caps it at 32 tokens per batch, so more texts means less of it). A block "
        "mask over rows of the budget's width costs "
        f"{_span(facts['mask'])}× the padded FLOPs; rows no wider than the longest text "
        f"still {_span(facts['narrow'])}×. Attention per token grows with the row width: "
        "4 · heads · head_dim · T = 67 MFLOP per layer at T = 8,192 for small against its "
        "31 MFLOP of linears.",
        "- **Attending per text (one attention call per text on its slice) saves exactly "
        "the padding**, at the price of one kernel launch per text per layer.",
    ]  # fmt: skip
    if measured:
        lines.append(_measured_line(measured, cos))
    lines += [
        "- RoPE only sees position differences, so inside a block-diagonal mask per-token "
        "positions change nothing but rounding (global row positions gave the same "
        "vectors to 1e-7 on the tiny checkpoints); the prototype uses per-token "
        "positions anyway, through `mx.fast.rope`'s per-row offsets.",
        "",
    ]
    return lines


def _measured_line(measured: dict, cos: float | None) -> str:
    def ratios(name: str, key: str) -> str:
        return _span([r[key] for r in _rows(measured, name) if key in r])

    def per_pass(name: str) -> str:
        return _span([r["computed_tokens"] / r["passes"] for r in _rows(measured, name)],
                     "{:,.0f}")

    def peaks(name: str) -> str:
        return _span([r["peak_gib"] * 1024 for r in _rows(measured, name)], "{:,.0f}") + " MiB"

    return (
        "- **Measured on the CPU** (every model and corpus, median against mlx_jina's "
        f"padded batches, wall time / tokens per CPU-second of the process): block mask "
        f"{ratios(MASK, 'vs_padded')}× / {ratios(MASK, 'cpu_vs_padded')}×, per-text spans "
        f"{ratios(SPANS, 'vs_padded')}× / {ratios(SPANS, 'cpu_vs_padded')}×, the "
        f"fewer-passes planner control {ratios(CONTROL, 'vs_padded')}× / "
        f"{ratios(CONTROL, 'cpu_vs_padded')}×. {_overlap_note(measured)} "
        f"Packed vectors against mlx_jina's, float32 at the published widths: cosine ≥ "
        f"{cos:.7f}; on tiny checkpoints against `encode` (tests/test_packing_benchmark.py) "
        f"≥ 0.99999 asserted. Working peak: padded {peaks(PADDED)}, block mask "
        f"{peaks(MASK)} (the T × T mask and score blocks), per-text spans {peaks(SPANS)} "
        f"(tokens per pass: padded {per_pass(PADDED)}, packed {per_pass(SPANS)})."
    )


def _overlap_note(measured: dict) -> str:
    """How many tables' rounds of each layout overlap padded's (min..max): the ones
    the rounds cannot tell from padded on this machine."""
    tables = [rows for by_corpus in measured.values() for rows in by_corpus.values()]

    def overlapping(name: str) -> int:
        count = 0
        for rows in tables:
            got = next(r for k, r in rows.items() if k.startswith(name))
            base = next(r for k, r in rows.items() if k.startswith(PADDED))
            count += got["min"] <= base["max"] and base["min"] <= got["max"]
        return count

    return (
        f"Rounds overlapping padded's (min–max) in: block mask {overlapping(MASK)}, per-text "
        f"spans {overlapping(SPANS)}, control {overlapping(CONTROL)} of {len(tables)} tables."
    )


def method() -> list[str]:
    return [
        "## What is compared", "",
        f"- `{PADDED}`: `Embedder.embed_batch` over `plan_batches(lengths, 32, budget)`, "
        "the engine's loop (one graph in flight).",
        f"- `{CONTROL} (max_padding 256)`: the same code and planner with no row cap and "
        "256 padding tokens allowed per batch: about as few passes as packing, with more "
        "padding. It separates \"fewer passes\" from \"no padding\".",
        f"- `{MASK}`: texts first-fit-decreasing into rows of at most `budget` real "
        "tokens; one row per pass; mlx_jina's own layers; RoPE at each token's position "
        "in its text; an additive block-diagonal mask (causal inside each block for "
        "small) through mlx_jina's attention (fused on the GPU, query blocks on the CPU).",
        f"- `{SPANS}`: the same rows, attention called once per text on its slice "
        "(`\"causal\"` for small, no mask for nano): the exact FLOPs.",
        "- All four compute the last layer at the pooled token only, as `Model.embed` "
        "does. Each round runs every layout once (after one warm-up pass each), so load "
        "drift falls on all alike; the working peak is MLX's peak minus the weights.",
        "",
    ]  # fmt: skip


def decision(facts: dict, measured: dict) -> list[str]:
    best, at_384 = max(facts["saved"], default=0.0), max(facts["saved_384"], default=0.0)
    lines = [
        "## Decision rule (benchmarks/packing/rule.py applies it)", "",
        "1. **Block-diagonal mask packing (the issue's proposal): do not adopt.** With no "
        f"kernel that skips masked blocks it computes {_span(facts['mask_all'])}× the FLOPs "
        "of padding on every corpus here at the budgets mlx_jina uses, so no device can "
        "make it pay. Revisit only if MLX ships variable-length attention (cu_seqlens / "
        "segment ids); it would then cost what the per-text spans cost, in one launch per "
        "layer.",
        "2. **Per-text spans: adopt only if the GPU check's packing table shows, for both "
        "models in bf16 on the long-tailed corpus (384 texts),** (a) median tokens/s ≥ "
        f"{GAIN:.2f}× `{PADDED}` with every packed round faster than every padded round, "
        f"(b) ≥ {OVER_CONTROL:.2f}× the fewer-passes control, (c) ≥ 1.00× padded on the "
        f"queries, and (d) cosine ≥ {MIN_COSINE} with mlx_jina's vectors.",
        f"3. Why {GAIN - 1:.0%}: packing saves {at_384:.1%} of the FLOPs on that corpus "
        f"(at most {best:.1%} on any long-tailed corpus here): the padding. More than "
        "that can only come from running fewer passes (58 → 10 there), which the planner "
        "control also does with one constant changed and no second forward path, "
        f"per-token positions or per-text launches to keep correct. {GAIN - 1:.0%} is "
        "that FLOP ceiling plus ~2% for the round-to-round spread of a repeated pass "
        "(condition (a) also asks the rounds not to overlap); "
        f"{OVER_CONTROL - 1:.0%} over the control is the spread plus a margin for the "
        "extra code.",
        "4. If the control alone passes (a): raise `BATCH_PADDING` / the row cap for the "
        "GPU instead of packing.",
        "6. On the CPU, none of it: the CPU is FLOP-bound and the FLOPs say at most the "
        "padding back, which these rounds cannot even resolve.",
    ]  # fmt: skip
    if measured:
        lines.insert(-1, f"5. Applied to the CPU tables above: **{verdict(measured)}**.")
    return lines + ["", *gpu_note()]


def gpu_note() -> list[str]:
    return [
        "## On the GPU (to run)", "",
        "`benchmarks/gpu_check.py` (step 5, `benchmarks/gpu/packing.py`) runs the same four "
        "layouts at the published depth (28 / 12 layers), bf16, on its own 384-text "
        "long-tailed corpus and 256 queries, 3 rounds after a warm-up, in a child process "
        "per model with `MLX_CUDA_SDPA_CACHE_SIZE=4096` (MLX caches one cuDNN attention "
        "graph per shape, 16 by default; per-text spans have one shape per distinct text "
        "length). Its table ends gpu_check.md with this rule's verdict, the warm-up pass "
        "time and the distinct attention shapes per layout. `--smoke` runs it on the CPU.",
        "",
    ]  # fmt: skip
