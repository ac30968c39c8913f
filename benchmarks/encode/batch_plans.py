"""The batches each engine runs, as lists of input indices.

Computed here, in the parent process, and handed to the peers' processes, so every
engine that follows a plan gets exactly the same batches.
"""

from internals import plan_batches

BATCH_SIZE = 32  # sentence-transformers' default, and mlx_jina's
MAX_BATCH_TOKENS = 8192  # mlx_jina's `encode` default


def our_plan(ids: list[list[int]]) -> list[list[int]]:
    """mlx_jina's own batches at its `encode` defaults: length-sorted, padding-bounded."""
    lengths = [len(row) for row in ids]
    return plan_batches(lengths, BATCH_SIZE, MAX_BATCH_TOKENS).batches


def input_order(n: int) -> list[list[int]]:
    """Consecutive batches of 32 in input order, each padded to its longest text."""
    return [list(range(i, min(i + BATCH_SIZE, n))) for i in range(0, n, BATCH_SIZE)]


def sentence_transformers(texts: list[str]) -> list[list[int]]:
    """sentence-transformers' `encode`: sorted by character length, longest first, then
    batches of 32, each padded to its longest."""
    order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
    return [order[i : i + BATCH_SIZE] for i in range(0, len(order), BATCH_SIZE)]


def padded_tokens(batches: list[list[int]], lengths: list[int]) -> int:
    return sum(len(b) * max(lengths[i] for i in b) for b in batches)
