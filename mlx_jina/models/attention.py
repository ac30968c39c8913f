"""Scaled dot-product attention that stays memory-bounded without a fused kernel.

On the GPU `mx.fast.scaled_dot_product_attention` is a fused kernel. On MLX's CPU
backend it falls back to plain ops that build the whole (B, H, L, L) score matrix:
64 GiB for one 32K-token input to v5-small. There we attend in blocks of queries, so
memory grows about linearly with length; under causal attention each block also skips
the keys after it, which saves up to half the attention work.
"""

import mlx.core as mx

# Most score elements per block on the CPU: 64M float32 = 256 MiB.
SCORE_BUDGET = 1 << 26
# n causal blocks skip (1 - 1/n) / 2 of the scores; on the CPU, blocks of 128 queries
# attended a 4K-token input faster than 256, 512 or 1024 (benchmarks/bench_encode.py).
CAUSAL_BLOCK = 128
MIN_BLOCK = 32


def fused_available() -> bool:
    """Whether the default device has MLX's fused attention kernel (the CPU hasn't)."""
    return mx.default_device().type != mx.DeviceType.cpu


def query_block_size(
    batch: int, heads: int, queries: int, keys: int, causal: bool
) -> int:
    """Queries per block on the CPU: all of them when the scores fit the budget."""
    rows = max(MIN_BLOCK, SCORE_BUDGET // (batch * heads * keys))
    if causal:
        rows = min(rows, CAUSAL_BLOCK)
    return min(rows, queries)


def scaled_dot_product_attention(
    q: mx.array,
    k: mx.array,
    v: mx.array,
    *,
    scale: float,
    mask: mx.array | str | None,
    block_size: int | None = None,
) -> mx.array:
    """`mx.fast.scaled_dot_product_attention`, in query blocks on the CPU.

    q is (B, Hq, L, D); k and v are (B, Hkv, S, D) with Hkv dividing Hq, passed as they
    are (grouped-query attention stays native). `mask` is "causal" (aligned to the last
    key, as MLX does), a boolean mask broadcastable to (B, Hq, L, S), or None.
    `block_size` forces a block size (tests); None picks one from the memory budget.
    """
    B, H, L, _ = q.shape
    S = k.shape[2]
    causal = isinstance(mask, str)
    if block_size is None:
        if fused_available():
            block_size = L
        else:
            block_size = query_block_size(B, H, L, S, causal)
    if block_size >= L:
        return mx.fast.scaled_dot_product_attention(q, k, v, scale=scale, mask=mask)

    blocks = []
    for start in range(0, L, block_size):
        stop = min(start + block_size, L)
        if causal:
            # Queries start..stop see keys up to their own position: drop later keys.
            last = S - L + stop
            kb, vb, mb = k[:, :, :last], v[:, :, :last], mask
        else:
            kb, vb = k, v
            per_query = mask is not None and mask.ndim >= 2 and mask.shape[-2] > 1
            mb = mask[..., start:stop, :] if per_query else mask
        qb = q[:, :, start:stop]
        if blocks:
            # Else MLX's breadth-first scheduler builds many blocks' scores at once.
            qb = mx.depends(qb, blocks[-1])
        blocks.append(
            mx.fast.scaled_dot_product_attention(qb, kb, vb, scale=scale, mask=mb)
        )
    return mx.concatenate(blocks, axis=2)
