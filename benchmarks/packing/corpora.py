"""The corpora of the packing comparison: random token ids of realistic lengths."""

from __future__ import annotations

import numpy as np

from gpu.setup import corpus as long_tailed_ids  # the GPU check's own corpus


def long_tailed(n: int, vocab: int, seed: int = 7, max_len: int = 2000) -> list[list[int]]:
    """The GPU check's corpus: lognormal lengths (median ~150) clipped to 20..max_len."""
    return long_tailed_ids(n, vocab, max_len, seed=seed)


def queries(n: int, vocab: int, seed: int = 7) -> list[list[int]]:
    """Short queries: 8-32 tokens (a prompt plus a question of a few words)."""
    rng = np.random.default_rng(seed)
    return [rng.integers(10, vocab, int(k)).tolist() for k in rng.integers(8, 33, n)]


CORPORA = {"long-tailed": long_tailed, "queries": queries}
