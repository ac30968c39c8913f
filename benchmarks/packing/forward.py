"""The packed forward pass, over the weights and layers of a loaded mlx_jina model.

One row holds several texts. Every linear layer and norm runs on the row's real tokens
only (no padding); RoPE rotates each token by its position within its own text; and
attention stays inside each text in one of two ways:

    "mask"      one attention call over the whole row with an additive block-diagonal
                mask: what MLX's fused kernel allows, and it computes the full T x T
                score square (MLX has no variable-length attention);
    "segments"  one attention call per text, on that text's slice of q, k and v: the
                exact work, at the price of one kernel launch per text per layer.

As in `Model.embed`, the last layer computes its query, MLP and norm at each text's
pooled (last) token only. The model must have a single task merged in: the prototype
does not pick a LoRA task.
"""

from __future__ import annotations

from typing import Protocol

import mlx.core as mx
import mlx.nn as nn

from internals import scaled_dot_product_attention

from .layout import PackedRow, block_mask

ATTENTION = ("mask", "segments")


class Attend(Protocol):
    def __call__(
        self, q: mx.array, k: mx.array, v: mx.array, scale: float, queries: mx.array | None
    ) -> mx.array: ...


class MaskAttend:
    """All texts in one call; the block-diagonal mask, built once, serves every layer."""

    def __init__(self, row: PackedRow, causal: bool, dtype: mx.Dtype):
        self.mask = block_mask(row, causal, dtype)

    def __call__(self, q, k, v, scale, queries):
        mask = self.mask if queries is None else self.mask[:, :, queries]
        # mlx_jina's wrapper: the fused kernel on the GPU, query blocks on the CPU.
        return scaled_dot_product_attention(q, k, v, scale=scale, mask=mask)


class SegmentAttend:
    """One call per text on its own slice: no mask, no cross-text scores."""

    def __init__(self, row: PackedRow, causal: bool):
        self.spans, self.causal = row.spans, causal

    def __call__(self, q, k, v, scale, queries):
        outs = []
        for i, (a, b) in enumerate(self.spans):
            if queries is None:
                qi, mask = q[:, :, a:b], "causal" if self.causal and b - a > 1 else None
            else:  # the text's last token sees the whole text, causal or not
                qi, mask = q[:, :, i : i + 1], None
            outs.append(
                scaled_dot_product_attention(qi, k[:, :, a:b], v[:, :, a:b], scale=scale, mask=mask)
            )
        return mx.concatenate(outs, axis=2)


def rope_at(attn: nn.Module, t: mx.array, positions: mx.array) -> mx.array:
    """RoPE at per-token positions: t (1, L, H, D), each token made a batch row of its
    own, since `mx.fast.rope` takes one offset per batch row."""
    _, L, H, D = t.shape
    out = mx.fast.rope(
        t.reshape(L, H, 1, D), attn.head_dim, traditional=False, base=attn.rope_theta,
        scale=1.0, offset=positions,
    )  # fmt: skip
    return out.reshape(1, L, H, D)


def packed_attention(
    attn: nn.Module, x: mx.array, positions: mx.array, attend: Attend, queries: mx.array | None
) -> mx.array:
    """mlx_jina's `Attention` on a packed row x (1, T, D); with `queries` (n,), only the
    rows at those indices are queried: (1, n, D)."""
    T = x.shape[1]
    xq = x if queries is None else x[:, queries]
    q = attn.q_proj(xq).reshape(1, xq.shape[1], attn.n_heads, -1)
    k = attn.k_proj(x).reshape(1, T, attn.n_kv_heads, -1)
    v = attn.v_proj(x).reshape(1, T, attn.n_kv_heads, -1)
    if "q_norm" in attn:  # Qwen3: per-head RMSNorm before RoPE
        q, k = attn.q_norm(q), attn.k_norm(k)
    q = rope_at(attn, q, positions if queries is None else positions[queries])
    k = rope_at(attn, k, positions)
    q, k, v = (t.transpose(0, 2, 1, 3) for t in (q, k, v))
    o = attend(q, k, v, attn.scale, queries)
    return attn.o_proj(o.transpose(0, 2, 1, 3).reshape(1, xq.shape[1], -1))


def packed_block(
    layer: nn.Module, x: mx.array, positions: mx.array, attend: Attend, queries: mx.array | None
) -> mx.array:
    """mlx_jina's `TransformerBlock` on a packed row; `queries` as in `packed_attention`."""
    xn = layer.input_layernorm(x)
    if queries is not None:
        x = x[:, queries]
    h = x + packed_attention(layer.self_attn, xn, positions, attend, queries)
    return h + layer.mlp(layer.post_attention_layernorm(h))


def packed_embed(model: nn.Module, row: PackedRow, attention: str = "mask") -> mx.array:
    """Pooled float32 vectors (n, D) of the texts in `row`, in row order (graph only)."""
    if attention not in ATTENTION:
        raise ValueError(f"attention={attention!r}; choose one of {ATTENTION}.")
    causal = model.backbone.causal
    if attention == "mask":
        attend: Attend = MaskAttend(row, causal, model.norm.weight.dtype)
    else:
        attend = SegmentAttend(row, causal)
    positions = mx.array(row.positions)
    h = model.embed_tokens(mx.array(row.ids)[None])
    for layer in model.layers[:-1]:
        h = packed_block(layer, h, positions, attend, None)
    h = packed_block(model.layers[-1], h, positions, attend, mx.array(row.last))
    return model.norm(h[0]).astype(mx.float32)
