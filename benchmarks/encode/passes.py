"""One timed pass over (part of) the corpus, and the p50 of a repeated call."""

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np


@dataclass
class Pass:
    seconds: float
    vectors: np.ndarray  # (rows, dim) in the order of the rows asked for, unit length
    batches: list[list[int]]  # input indices of each forward pass
    real_tokens: int
    padded_tokens: int  # computed, padding included


def batched_pass(
    embed: Callable[[list[list[int]]], np.ndarray],
    ids: list[list[int]],
    rows: list[int],
    batches: list[list[int]],
) -> Pass:
    """Time `embed` over `batches` (input indices, all within `rows`); vectors come back
    in the order of `rows`."""
    t = time.perf_counter()
    parts = [embed([ids[i] for i in b]) for b in batches]
    seconds = time.perf_counter() - t
    where = {i: n for n, i in enumerate(i for b in batches for i in b)}
    vectors = np.concatenate(parts)[[where[i] for i in rows]]
    padded = sum(len(b) * max(len(ids[i]) for i in b) for b in batches)
    real = sum(len(ids[i]) for i in rows)
    return Pass(seconds, vectors, batches, real, padded)


def min_cos(a: np.ndarray, b: np.ndarray) -> float:
    """The lowest cosine of matching rows (both unit length)."""
    return float(np.min(np.sum(a * b, axis=1)))


def p50_ms(fn: Callable[[], object], n: int = 20, warm: int = 2) -> float:
    for _ in range(warm):
        fn()
    times = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return 1e3 * statistics.median(times)


class PretokenizedPeer:
    """What the peers share: they run pre-tokenized ids in given batches through `embed`."""

    batches: object  # the batch plan, set by the engine

    def embed(self, batch: list[list[int]]) -> np.ndarray:
        raise NotImplementedError

    def encode(self, work, rows: list[int]) -> Pass:
        return batched_pass(self.embed, work.ids, rows, self.batches)

    def query(self, work) -> None:
        self.embed([work.query_ids])
