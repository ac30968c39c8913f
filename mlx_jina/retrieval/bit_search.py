"""Exact top-k over a bit-packed (binary/ubinary) corpus with numpy, for a few queries.

search.py's MLX path unpacks every stored sign bit to a float and multiplies: 32 bytes of
floats made per stored byte before any query is scored (about 0.5 s per 100,000 rows of
1,024 dimensions for one query on a 2-core x86 CPU). For a few queries on the CPU these
kernels read the packed bytes as they are:

* bit-packed queries: XOR with each row and count the set bits (`np.bitwise_count` where
  numpy has it, else a 256-entry table): the Hamming distance, exactly. The score
  `1 - 2 * hamming / bits` is formed in float32 as the MLX path forms it, so both give
  the same scores to the last bit, and the same ranking.
* float queries: per byte position, a 256-entry table of the query's dot product with
  the byte's 8 signs (float64); a row's score is the sum of its bytes' entries. It is the
  same cosine with the unit-length sign vector, summed in another order (the two agree
  to about 1e-7; float32 matmuls differ that much from each other).

Corpus rows are read a piece at a time, so temporaries stay under TEMP_BYTES.
"""

import math

import numpy as np

TEMP_BYTES = 64 << 20
# Row v: the +/-1 signs of byte value v, most significant bit first (np.packbits order).
SIGNS = np.unpackbits(np.arange(256, dtype=np.uint8)[:, None], axis=1).astype(np.float64) * 2 - 1
BIT_COUNTS = np.count_nonzero(SIGNS > 0, axis=1).astype(np.uint8)


def bit_top_k(
    queries: np.ndarray, binary: bool, corpus, precision: str, dim: int, k: int,
    query_chunk_size: int, corpus_chunk_size: int,
) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """The k best corpus ids and scores per query (unsorted; ties: the lower id), as
    search.py's `_first_pass` gives them. `queries` are bit-packed (`binary`) or float."""
    width = corpus.shape[1]
    ids, scores = [], []
    for q0 in range(0, len(queries), query_chunk_size):
        q = queries[q0 : q0 + query_chunk_size]
        # Per corpus row: its bytes twice (a copy, then the XOR or the transpose), and the
        # float64 scores of every query twice (stacked, then merged with the best so far).
        rows = max(1, min(corpus_chunk_size, TEMP_BYTES // (2 * width + 16 * len(q) + 16)))
        scorers = _hamming(q, precision) if binary else _sign_tables(q, precision, dim, width)
        best_ids = best_scores = None
        for c0 in range(0, len(corpus), rows):
            chunk = _packed_bytes(corpus[c0 : c0 + rows])
            if not binary:
                chunk = np.ascontiguousarray(chunk.T)  # a byte position's values side by side
            s = np.stack([score(chunk) for score in scorers])
            chunk_ids = np.broadcast_to(np.arange(c0, c0 + s.shape[1]), s.shape)
            if best_ids is not None:
                s = np.concatenate([best_scores, s], axis=1)
                chunk_ids = np.concatenate([best_ids, chunk_ids], axis=1)
            best_ids, best_scores = top_k(s, chunk_ids, k)
        ids.append(best_ids)
        scores.append(best_scores)
    return np.concatenate(ids), np.concatenate(scores).astype(np.float64)


def top_k(scores: np.ndarray, ids: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The k best (score desc, id asc) per row; deterministic under ties, unsorted."""
    if scores.shape[1] <= k:
        return ids, scores
    kth = -np.partition(-scores, k - 1, axis=1)[:, k - 1 : k]
    # Everything above the k-th score is in; among scores equal to it, the lowest ids.
    big = np.iinfo(np.int64).max
    key = np.where(scores > kth, -1, np.where(scores == kth, ids, big))
    pick = np.argpartition(key, k - 1, axis=1)[:, :k]
    return np.take_along_axis(ids, pick, 1), np.take_along_axis(scores, pick, 1)


def _packed_bytes(chunk) -> np.ndarray:
    """Corpus rows (numpy, memmap or mx.array; int8 or uint8) as their raw bytes."""
    return np.ascontiguousarray(np.asarray(chunk)).view(np.uint8)


def _hamming(queries: np.ndarray, precision: str) -> list:
    """Per query, rows -> `1 - 2 * hamming / bits` in float32, as the MLX path has it."""
    # binary is ubinary ^ 0x80 byte for byte: a query stored the other way flips that bit
    # once, and XOR with a corpus row then leaves exactly the differing sign bits.
    flip = np.uint8(0x80 if (queries.dtype == np.int8) != (precision == "binary") else 0)
    bits = np.float32(queries.shape[1] * 8)  # padding bits included, as the MLX path does

    def scorer(q: np.ndarray):
        return lambda rows: (bits - 2 * popcount(rows ^ q).astype(np.float32)) / bits

    return [scorer(q) for q in queries.view(np.uint8) ^ flip]


def popcount(x: np.ndarray) -> np.ndarray:
    """Set bits per row of a C-contiguous uint8 (n, width) array, as int32."""
    if not hasattr(np, "bitwise_count"):  # numpy < 2
        return BIT_COUNTS[x].sum(axis=1, dtype=np.int32)
    words = next(w for w in (np.uint64, np.uint32, np.uint16, np.uint8)
                 if x.shape[1] % np.dtype(w).itemsize == 0)  # fmt: skip
    return np.bitwise_count(x.view(words)).sum(axis=1, dtype=np.int32)


def _sign_tables(queries: np.ndarray, precision: str, dim: int, width: int) -> list:
    """Per float query, transposed rows -> the cosine with each row's unit sign vector."""
    q = queries.astype(np.float64)
    q /= np.maximum(np.linalg.norm(q, axis=1, keepdims=True), 1e-12)
    padded = np.zeros((len(q), width * 8))
    padded[:, :dim] = q / math.sqrt(dim)  # padding bits weigh nothing, as in the MLX path
    tables = padded.reshape(len(q), width, 8) @ SIGNS.T  # (queries, width, 256)
    if precision == "binary":  # stored bytes are ubinary ^ 0x80
        tables = tables[:, :, np.arange(256) ^ 0x80]

    def scorer(table: np.ndarray):
        def score(columns: np.ndarray) -> np.ndarray:
            total = np.zeros(columns.shape[1])
            for entries, values in zip(table, columns):
                total += entries[values]
            return total

        return score

    return [scorer(t) for t in tables]
