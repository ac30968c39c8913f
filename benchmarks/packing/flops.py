"""FLOP accounting of padded and packed layouts: linear work saved, attention added.

A forward pass is a list of rows padded to its widest row; a row holds one text
(mlx_jina's padded batches) or several (packed). Per layer and token, the seven linears
cost 2 x their weights; attention costs 4 x heads x head_dim per query-key pair
(q.k and p.v). Which pairs a kernel computes:

    padded    the row's width squared; half (w(w+1)/2) for the causal model, whose
              "causal" mask the fused kernels (and mlx_jina's CPU blocks) skip
    mask      the row's width squared, whole: an additive mask is opaque to the kernel,
              so no masked block is skipped, causal or not
    segments  each text's own square (half when causal): the exact work

Every layer is counted in full (mlx_jina's last layer queries the pooled token only, in
both layouts alike), so the ratios hold for any depth.
"""

from __future__ import annotations

from dataclasses import dataclass

from checkpoint import head_dim, linear_shapes

Row = list[int]  # text indices
Pass = list[Row]


@dataclass(frozen=True)
class Work:
    passes: int
    tokens: int  # through the linears, padding included
    linear: float
    attention: float

    @property
    def total(self) -> float:
        return self.linear + self.attention


def linear_per_token(cfg: dict) -> int:
    return 2 * sum(o * i for o, i in linear_shapes(cfg).values())


def pair_cost(cfg: dict) -> int:
    return 4 * cfg["num_attention_heads"] * head_dim(cfg)


def square(n: int, causal: bool) -> float:
    return n * (n + 1) / 2 if causal else float(n * n)


def work(cfg: dict, causal: bool, lengths: list[int], passes: list[Pass], kind: str) -> Work:
    """FLOPs of `passes` laid out as `kind` ("padded", "mask" or "segments")."""
    tokens, pairs = 0, 0.0
    for p in passes:
        width = max(sum(lengths[i] for i in row) for row in p)
        tokens += len(p) * width
        for row in p:
            if kind == "segments":
                pairs += sum(square(lengths[i], causal) for i in row)
            else:
                pairs += square(width, causal and kind == "padded")
    layers = cfg["num_hidden_layers"]
    return Work(len(passes), tokens, layers * linear_per_token(cfg) * tokens,
                layers * pair_cost(cfg) * pairs)  # fmt: skip


def plan_flops(
    cfg: dict, causal: bool, lengths: list[int], plans: dict[str, list[Row]]
) -> dict[str, Work]:
    """Work per layout: plans["padded"] are mlx_jina's batches (one text per row), every
    other entry packed rows (one row per pass), its key the attention kind."""
    out = {}
    for kind, plan in plans.items():
        passes = [[[i] for i in b] for b in plan] if kind == "padded" else [[r] for r in plan]
        out[kind] = work(cfg, causal, lengths, passes, kind)
    return out


def narrow_passes(rows: list[Row], lengths: list[int], max_tokens: int) -> list[Pass]:
    """Packed rows of a narrow width, several per pass while rows x width fits the
    budget: bounds the masked square at the cost of a little padding."""
    rows = sorted(rows, key=lambda r: -sum(lengths[i] for i in r))
    passes: list[Pass] = []
    for row in rows:
        n = sum(lengths[i] for i in row)
        cur = passes[-1] if passes else None
        width = sum(lengths[i] for i in cur[0]) if cur else 0
        if cur and (len(cur) + 1) * max(width, n) <= max_tokens:
            cur.append(row)
        else:
            passes.append([row])
    return passes


def narrow_width(lengths: list[int]) -> int:
    """The packed row width that bounds the masked square: the longest text, rounded up
    to a multiple of 64 (every long text a row of its own, short ones filling rows)."""
    return -(-max(lengths) // 64) * 64


def compare_layouts(
    cfg: dict, causal: bool, lengths: list[int], budget: int, batch_size: int = 32
) -> dict[str, Work]:
    """The same texts under the same token budget: mlx_jina's padded plan, packed rows
    of the budget's width (masked, or attended per text), and narrow packed rows."""
    from internals import plan_batches

    from .layout import pack_plan

    plans = {"padded": plan_batches(lengths, batch_size, budget).batches,
             "mask": pack_plan(lengths, budget), "segments": pack_plan(lengths, budget)}
    out = plan_flops(cfg, causal, lengths, plans)
    narrow = narrow_passes(pack_plan(lengths, narrow_width(lengths)), lengths, budget)
    out["mask, narrow rows"] = work(cfg, causal, lengths, narrow, "mask")
    return out
