"""Rows of packed texts: which texts share a row, where each starts, each token's
position within its own text, and the block-diagonal mask that keeps texts apart."""

from __future__ import annotations

from dataclasses import dataclass

import mlx.core as mx
import numpy as np


@dataclass(frozen=True)
class PackedRow:
    """Texts laid end to end in one row of `total` tokens."""

    ids: np.ndarray  # (T,) int32 token ids, text after text
    lengths: np.ndarray  # (n,) tokens per text, in row order

    @property
    def starts(self) -> np.ndarray:
        return np.concatenate([[0], np.cumsum(self.lengths)[:-1]]).astype(np.int32)

    @property
    def total(self) -> int:
        return int(self.lengths.sum())

    @property
    def last(self) -> np.ndarray:
        """Row index of each text's last token: the one pooled."""
        return (self.starts + self.lengths - 1).astype(np.int32)

    @property
    def positions(self) -> np.ndarray:
        """Each token's position within its own text (what RoPE sees)."""
        return (np.arange(self.total) - np.repeat(self.starts, self.lengths)).astype(np.int32)

    @property
    def segments(self) -> np.ndarray:
        """Each token's text number within the row."""
        return np.repeat(np.arange(len(self.lengths)), self.lengths).astype(np.int32)

    @property
    def spans(self) -> list[tuple[int, int]]:
        return [(int(a), int(a + n)) for a, n in zip(self.starts, self.lengths)]


def pack(rows: list[list[int]]) -> PackedRow:
    """`rows` laid end to end, in the order given."""
    lengths = np.array([len(r) for r in rows], dtype=np.int32)
    ids = np.fromiter((t for r in rows for t in r), dtype=np.int32, count=int(lengths.sum()))
    return PackedRow(ids, lengths)


def pack_plan(lengths: list[int], max_tokens: int) -> list[list[int]]:
    """First-fit decreasing: texts longest first, each into the first row with room for
    it under `max_tokens`; a text longer than the budget gets a row of its own.

    The padded planner's token budget bounds rows * width; here it bounds the row's real
    tokens, so both plans put the same most tokens through one forward pass."""
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    rows: list[list[int]] = []
    room: list[int] = []
    for i in order:
        n = lengths[i]
        # Rows are few (corpus tokens / budget): a linear scan is fast enough.
        slot = next((r for r, free in enumerate(room) if free >= n), None)
        if slot is None:
            rows.append([i])
            room.append(max_tokens - n)
        else:
            rows[slot].append(i)
            room[slot] -= n
    return rows


def block_mask(row: PackedRow, causal: bool, dtype: mx.Dtype) -> mx.array:
    """Additive (1, 1, T, T) mask: 0 where a query may see a key (same text, and not a
    later token when causal), -inf elsewhere. Built on the device: no T x T host copy."""
    seg = mx.array(row.segments)
    allowed = seg[:, None] == seg[None, :]
    if causal:
        idx = mx.arange(row.total)
        allowed = allowed & (idx[:, None] >= idx[None, :])
    zero, neg = mx.array(0, dtype=dtype), mx.array(-np.inf, dtype=dtype)
    return mx.where(allowed, zero, neg)[None, None]
