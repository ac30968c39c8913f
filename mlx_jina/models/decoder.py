"""The transformer both backbones share: a pre-norm decoder stack with grouped-query
attention, RoPE and a SwiGLU MLP, returning the final hidden states (no LM head).

Module and attribute names are the checkpoints' own (`self_attn.q_proj`, `mlp.up_proj`,
`input_layernorm`), so weights load with no renaming. What differs between backbones is
a `Backbone` (models/__init__.py): causal or bidirectional attention, and whether q and
k get a per-head RMSNorm before RoPE (Qwen3 does, EuroBERT does not).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import mlx.core as mx
import mlx.nn as nn
import numpy as np

from .attention import scaled_dot_product_attention
from .base import ModelArgs

if TYPE_CHECKING:
    from . import Backbone


class Attention(nn.Module):
    def __init__(self, args: ModelArgs, qk_norm: bool):
        super().__init__()
        dim, self.head_dim = args.hidden_size, args.head_dim
        self.n_heads, self.n_kv_heads = args.num_attention_heads, args.num_key_value_heads
        self.scale = self.head_dim**-0.5
        self.rope_theta = args.rope_theta
        self.q_proj = nn.Linear(dim, self.n_heads * self.head_dim, bias=False)
        self.k_proj = nn.Linear(dim, self.n_kv_heads * self.head_dim, bias=False)
        self.v_proj = nn.Linear(dim, self.n_kv_heads * self.head_dim, bias=False)
        self.o_proj = nn.Linear(self.n_heads * self.head_dim, dim, bias=False)
        if qk_norm:
            self.q_norm = nn.RMSNorm(self.head_dim, eps=args.rms_norm_eps)
            self.k_norm = nn.RMSNorm(self.head_dim, eps=args.rms_norm_eps)

    def __call__(
        self, x: mx.array, mask: mx.array | str | None, positions: mx.array | None = None
    ) -> mx.array:
        """Attention over every token of x (B, L, D). With `positions` (B,), only the query
        at each row's position is computed: the output is (B, 1, D), and `mask` must then
        be None or a boolean key mask (B, 1, 1, L)."""
        B, L, _ = x.shape
        xq = x if positions is None else x[mx.arange(B), positions][:, None]
        # One query per row sits at its row's own position: RoPE takes it as the offset.
        q = self.queries(xq, 0 if positions is None else positions)
        k, v = self.keys_values(x)
        # Grouped K/V go in as they are; the kernel shares them across query heads.
        o = scaled_dot_product_attention(q, k, v, scale=self.scale, mask=mask)
        return self.o_proj(o.transpose(0, 2, 1, 3).reshape(B, xq.shape[1], -1))

    def queries(self, xq: mx.array, offset: int | mx.array) -> mx.array:
        """(B, H, n, D) queries of the normed states xq (B, n, D) at positions from `offset`."""
        B, n, _ = xq.shape
        q = self.q_proj(xq).reshape(B, n, self.n_heads, -1)
        if "q_norm" in self:  # Qwen3 normalizes q and k per head, before RoPE
            q = self.q_norm(q)
        return self.rope(q.transpose(0, 2, 1, 3), offset)

    def keys_values(self, x: mx.array) -> tuple[mx.array, mx.array]:
        """(B, Hkv, L, D) keys and values of the normed states x (B, L, D)."""
        B, L, _ = x.shape
        k = self.k_proj(x).reshape(B, L, self.n_kv_heads, -1)
        v = self.v_proj(x).reshape(B, L, self.n_kv_heads, -1)
        if "k_norm" in self:
            k = self.k_norm(k)
        return self.rope(k.transpose(0, 2, 1, 3), 0), v.transpose(0, 2, 1, 3)

    def rows(self, xq: mx.array, kv: tuple[mx.array, mx.array], start: int, causal: bool):
        """Attention output (1, n, D) of one unpadded row's queries start..start+n, given
        the whole row's keys and values (a long input's layer, in pieces)."""
        n = xq.shape[1]
        k, v = kv
        if causal:  # these queries see keys up to their own position
            k, v = k[:, :, : start + n], v[:, :, : start + n]
        mask = "causal" if causal and n > 1 else None  # aligned to the last key, as MLX does
        o = scaled_dot_product_attention(self.queries(xq, start), k, v, scale=self.scale, mask=mask)
        return self.o_proj(o.transpose(0, 2, 1, 3).reshape(1, n, -1))

    def rope(self, t: mx.array, offset: int | mx.array) -> mx.array:
        return mx.fast.rope(
            t, self.head_dim, traditional=False, base=self.rope_theta, scale=1.0, offset=offset
        )


class MLP(nn.Module):
    def __init__(self, dim: int, hidden_dim: int):
        super().__init__()
        self.gate_proj = nn.Linear(dim, hidden_dim, bias=False)
        self.up_proj = nn.Linear(dim, hidden_dim, bias=False)
        self.down_proj = nn.Linear(hidden_dim, dim, bias=False)

    def __call__(self, x: mx.array) -> mx.array:
        return self.down_proj(nn.silu(self.gate_proj(x)) * self.up_proj(x))


class TransformerBlock(nn.Module):
    def __init__(self, args: ModelArgs, qk_norm: bool):
        super().__init__()
        self.self_attn = Attention(args, qk_norm)
        self.mlp = MLP(args.hidden_size, args.intermediate_size)
        self.input_layernorm = nn.RMSNorm(args.hidden_size, eps=args.rms_norm_eps)
        self.post_attention_layernorm = nn.RMSNorm(args.hidden_size, eps=args.rms_norm_eps)

    def __call__(
        self, x: mx.array, mask: mx.array | str | None, positions: mx.array | None = None
    ) -> mx.array:
        """(B, L, D) states; with `positions` (B,), those of one token per row, (B, 1, D):
        keys and values still come from every token, the rest from that token only."""
        xn = self.input_layernorm(x)
        if positions is not None:
            x = x[mx.arange(x.shape[0]), positions][:, None]
        h = x + self.self_attn(xn, mask, positions)
        return h + self.mlp(self.post_attention_layernorm(h))

    def pieces(self, x: mx.array, rows: int, causal: bool) -> Iterator[mx.array]:
        """This layer over one unpadded row x (1, L, D), `rows` queries at a time: the
        output's pieces in order, each computable on its own once the keys are."""
        xn = self.input_layernorm(x)
        kv = self.self_attn.keys_values(xn)
        for start in range(0, x.shape[1], rows):
            xs = x[:, start : start + rows]
            h = xs + self.self_attn.rows(xn[:, start : start + rows], kv, start, causal)
            yield h + self.mlp(self.post_attention_layernorm(h))


class Model(nn.Module):
    def __init__(self, args: ModelArgs, backbone: Backbone):
        super().__init__()
        self.args, self.backbone = args, backbone
        self.embed_tokens = nn.Embedding(args.vocab_size, args.hidden_size)
        self.layers = [TransformerBlock(args, backbone.qk_norm) for _ in range(args.num_hidden_layers)]
        self.norm = nn.RMSNorm(args.hidden_size, eps=args.rms_norm_eps)

    def __call__(self, inputs: mx.array, lengths: np.ndarray) -> mx.array:
        """Hidden states (B, L, D) for right-padded token ids (B, L); `lengths` (B,), on
        the host, counts each row's real tokens."""
        h = self.embed_tokens(inputs)
        mask = self.attention_mask(inputs.shape[1], lengths)
        for layer in self.layers:
            h = layer(h, mask)
        return self.norm(h)

    def embed(self, inputs: mx.array, lengths: np.ndarray) -> mx.array:
        """The pooled vectors (B, D) of right-padded token ids: `pool(self(inputs, lengths))`
        without the last layer's work on tokens the pooling drops. Its keys and values still
        come from every token; its query, attention output, MLP and the final norm only
        from each row's pooled token."""
        *_, pooled = self.embed_steps(inputs, lengths)
        return pooled

    def embed_steps(
        self, inputs: mx.array, lengths: np.ndarray, rows: int | None = None
    ) -> Iterator[mx.array]:
        """`embed` in steps: the hidden states after each layer but the last, then the
        pooled vectors. With `rows` (one unpadded row only), each of those layers comes in
        pieces of `rows` queries. The server evaluates a long input's pass step by step and
        runs other requests in between."""
        positions = POOL_POSITIONS[self.backbone.pooling](lengths)
        h = self.embed_tokens(inputs)
        mask = self.attention_mask(inputs.shape[1], lengths)
        for layer in self.layers[:-1]:
            if rows is None or rows >= inputs.shape[1]:
                h = layer(h, mask)
                yield h
                continue
            pieces = []
            for piece in layer.pieces(h, rows, self.backbone.causal):
                pieces.append(piece)
                yield piece
            h = mx.concatenate(pieces, axis=1)
        h = self.layers[-1](h, self.key_mask(inputs.shape[1], lengths), mx.array(positions))
        yield self.norm(h[:, 0])

    @staticmethod
    def key_mask(L: int, lengths: np.ndarray) -> mx.array | None:
        """Boolean (B, 1, 1, L) mask of each row's real keys, None without padding: what a
        row's last real token sees under causal and bidirectional attention alike."""
        if lengths.min() == L:
            return None
        return mx.array(np.arange(L)[None] < lengths[:, None])[:, None, None, :]

    def attention_mask(self, L: int, lengths: np.ndarray) -> mx.array | str | None:
        if self.backbone.causal:
            # Right padding comes after every real token, so the fused "causal" mask is
            # exact for the real ones; one token needs none.
            return "causal" if L > 1 else None
        return self.key_mask(L, lengths)  # every query sees the real keys

    def pool(self, h: mx.array, lengths: mx.array) -> mx.array:
        """The embedding of each row, as the backbone pools it."""
        return POOLING[self.backbone.pooling](h, lengths)


def last_token_pool(h: mx.array, lengths: mx.array) -> mx.array:
    """Hidden state of each row's last real token, for right-padded rows."""
    return h[mx.arange(h.shape[0]), lengths - 1]


POOLING = {"last": last_token_pool}
# The one position per row each pooling reads, from the host lengths: `Model.embed`
# computes the last layer there only.
POOL_POSITIONS = {"last": lambda lengths: np.asarray(lengths, dtype=np.int32) - 1}


def weight_shapes(args: ModelArgs, backbone: Backbone) -> dict[str, tuple[int, ...]]:
    """Every tensor a checkpoint must hold, by module path: checked before building."""
    D, F, hd = args.hidden_size, args.intermediate_size, args.head_dim
    q, kv = args.num_attention_heads * hd, args.num_key_value_heads * hd
    layer = {
        "self_attn.q_proj.weight": (q, D),
        "self_attn.k_proj.weight": (kv, D),
        "self_attn.v_proj.weight": (kv, D),
        "self_attn.o_proj.weight": (D, q),
        "mlp.gate_proj.weight": (F, D),
        "mlp.up_proj.weight": (F, D),
        "mlp.down_proj.weight": (D, F),
        "input_layernorm.weight": (D,),
        "post_attention_layernorm.weight": (D,),
    }
    if backbone.qk_norm:
        layer |= {"self_attn.q_norm.weight": (hd,), "self_attn.k_norm.weight": (hd,)}
    shapes = {"embed_tokens.weight": (args.vocab_size, D), "norm.weight": (D,)}
    for i in range(args.num_hidden_layers):
        shapes.update({f"layers.{i}.{k}": v for k, v in layer.items()})
    return shapes
