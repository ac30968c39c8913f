"""Exact top-k search over float, int8/uint8 and binary corpora, with rescoring.

Scores are computed with MLX matmuls (on the GPU on Apple silicon), a chunk of the
corpus at a time so memory stays bounded; only each chunk's top k leaves the device.
A binary/ubinary corpus searched on the CPU by a few queries goes to bit_search.py's
numpy kernels instead (popcount, or per-byte tables for float queries): the matmul
must first unpack every sign bit to a float, which costs far more than the search.
"""

import math

import mlx.core as mx
import numpy as np

from .bit_search import bit_top_k
from .precision import (
    BINARY_PRECISIONS,
    SCALAR_PRECISIONS,
    dequantize_levels,
    normalize,
    unpack_signs,
)
from .search_inputs import Search, Vectors, check_counts, check_inputs
from .store import EmbeddingFile

# Up to this many queries (bit-packed, float) a binary corpus on the CPU is searched by
# bit_search.py; past it one unpack shared by all queries wins. Measured crossovers on a
# 2-core x86 CPU at 100k rows of 1,024 dimensions: several hundred, and about ten.
NUMPY_QUERIES = {"binary": 256, "float": 8}


def semantic_search(
    query_embeddings: np.ndarray | mx.array | EmbeddingFile,
    corpus_embeddings: np.ndarray | mx.array | EmbeddingFile,
    top_k: int = 10,
    *,
    corpus_precision: str | None = None,
    query_precision: str | None = None,
    ranges: np.ndarray | None = None,
    rescore_embeddings: np.ndarray | mx.array | EmbeddingFile | None = None,
    rescore_multiplier: int = 4,
    query_chunk_size: int = 1024,
    corpus_chunk_size: int = 32768,
) -> list[list[dict[str, int | float]]]:
    """Find the `top_k` corpus rows closest to each query, best first.

    Precision is never guessed from shapes (a `(n, 32)` uint8 array is 32-dimensional uint8
    vectors or 256-dimensional ubinary ones): float arrays are float vectors, and an
    int8/uint8 array needs its precision named, or comes as the `EmbeddingFile` from
    `load_embeddings`, which records it (and its dims and ranges).

    Args:
        query_embeddings: Float queries `(n, dim)` or `(dim,)`; or bit-packed queries
            (with `query_precision="binary"`/`"ubinary"`) for Hamming search.
        corpus_embeddings: `(m, dim)` float vectors; int8/uint8 codes or bit-packed
            `(m, ceil(dim / 8))` vectors (with `corpus_precision`); or an `EmbeddingFile`.
        corpus_precision: Needed for an int8/uint8 array, except with rescore vectors
            (their width is the corpus's dimension) or binary queries (their precision).
        ranges: The `(2, dim)` ranges the int8/uint8 arrays were quantized with (None:
            the fixed default ones). An `EmbeddingFile` carries its own.
        rescore_embeddings: Float or int8/uint8 vectors of the same rows (or a file): the
            first pass keeps `top_k * rescore_multiplier` candidates, these re-rank them.
        query_chunk_size, corpus_chunk_size: Rows scored at once; they bound memory.

    Returns:
        One list per query of `{"corpus_id": int, "score": float}`, best first (ties: the
        lower corpus_id). Scores are cosines, with dequantized int8/uint8 or +/-1 sign
        vectors; for binary queries `1 - 2 * hamming / bits`.

    Raises ValueError for inputs that would rank silently wrong: an int8/uint8 array of
    unknown precision, other dimensions, NaN/inf rows, bad ranges or rescore rows.
    """
    check_counts(top_k=top_k, rescore_multiplier=rescore_multiplier,
                 query_chunk_size=query_chunk_size, corpus_chunk_size=corpus_chunk_size)
    job = check_inputs(query_embeddings, corpus_embeddings, rescore_embeddings,
                       query_precision, corpus_precision, ranges, query_chunk_size,
                       corpus_chunk_size)  # fmt: skip
    rescoring = job.rescore is not None
    k = min(top_k * rescore_multiplier if rescoring else top_k, len(job.corpus))
    if k == 0 or len(job.queries) == 0:
        return [[] for _ in job.queries]
    ids, scores = _candidates(job, k, query_chunk_size, corpus_chunk_size)
    if rescoring:
        scores = _rescore(job.queries, ids, job.rescore)
    # Best first; among equal scores the lower corpus id first, as a full sort would.
    order = np.lexsort((ids, -scores), axis=1)[:, :top_k]
    ids, scores = np.take_along_axis(ids, order, 1), np.take_along_axis(scores, order, 1)
    return [
        [{"corpus_id": int(i), "score": float(s)} for i, s in zip(row_ids, row_scores)]
        for row_ids, row_scores in zip(ids, scores)
    ]


def _candidates(job: Search, k: int, q_chunk: int, c_chunk: int) -> tuple[np.ndarray, np.ndarray]:
    """The first pass: bit_search.py's numpy kernels for a few queries on a binary corpus
    on the CPU (the same ranking for far less work), else the MLX matmuls."""
    if (job.precision in BINARY_PRECISIONS and mx.default_device().type == mx.cpu
            and len(job.queries) <= NUMPY_QUERIES["binary" if job.binary else "float"]):
        return bit_top_k(job.queries, job.binary, job.corpus, job.precision, job.dim, k,
                         q_chunk, c_chunk)  # fmt: skip
    return _first_pass(job, k, q_chunk, c_chunk)


def _first_pass(job: Search, k: int, q_chunk: int, c_chunk: int) -> tuple[np.ndarray, np.ndarray]:
    """The k best corpus ids and scores per query, a chunk of each at a time."""
    ids, scores = [], []
    for q0 in range(0, len(job.queries), q_chunk):
        q = _query_matrix(job.queries[q0 : q0 + q_chunk], job.binary)
        best_ids = best_scores = None
        for c0 in range(0, len(job.corpus), c_chunk):
            chunk = job.corpus[c0 : c0 + c_chunk]
            s = q @ _corpus_matrix(chunk, job.precision, job.dim, job.ranges, job.binary).T
            if job.binary:
                s = s / job.dim  # +/-1 dot product = bits - 2 * hamming
            chunk_ids = mx.broadcast_to(mx.arange(c0, c0 + s.shape[1]), s.shape)
            if best_ids is not None:
                s = mx.concatenate([best_scores, s], axis=1)
                chunk_ids = mx.concatenate([best_ids, chunk_ids], axis=1)
            best_ids, best_scores = _top_k(s, chunk_ids, k)
            mx.eval(best_ids, best_scores)
        ids.append(np.array(best_ids))
        scores.append(np.array(best_scores))
    return np.concatenate(ids), np.concatenate(scores).astype(np.float64)


def _to_mx(x) -> mx.array:
    if isinstance(x, mx.array):
        return x
    x = np.asarray(x)
    # float64 has no GPU kernels in MLX; search in float32 (check_finite refuses overflow).
    with np.errstate(over="ignore"):
        return mx.array(x.astype(np.float32) if x.dtype == np.float64 else x)


def _query_matrix(queries: np.ndarray, binary: bool) -> mx.array:
    q = mx.array(queries)
    if binary:
        return unpack_signs(q, "binary" if queries.dtype == np.int8 else "ubinary")
    return normalize(q.astype(mx.float32))


def _corpus_matrix(chunk, precision: str, dim: int, ranges, query_binary: bool) -> mx.array:
    """One corpus chunk as float32 rows that a float (or +/-1) query row can dot with."""
    chunk = _to_mx(chunk)
    if precision in BINARY_PRECISIONS:
        signs = unpack_signs(chunk, precision)
        # A float query scores against the unit-length sign vector; padding bits go.
        return signs if query_binary else signs[:, :dim] / math.sqrt(dim)
    if precision in SCALAR_PRECISIONS:
        return normalize(dequantize_levels(chunk, precision, ranges))
    return normalize(chunk.astype(mx.float32))


def _top_k(scores: mx.array, ids: mx.array, k: int) -> tuple[mx.array, mx.array]:
    """The k best (score desc, id asc) per row; deterministic under ties, unsorted."""
    if scores.shape[1] <= k:
        return ids, scores
    kth = mx.topk(scores, k, axis=1).min(axis=1, keepdims=True)
    # Everything above the k-th score is in; among scores equal to it, the lowest ids.
    big = mx.array(np.iinfo(np.int32).max, dtype=mx.int32)
    key = mx.where(scores > kth, -1, mx.where(scores == kth, ids.astype(mx.int32), big))
    pick = mx.argpartition(key, kth=k - 1, axis=1)[:, :k]
    return mx.take_along_axis(ids, pick, 1), mx.take_along_axis(scores, pick, 1)


def _rescore(queries: np.ndarray, ids: np.ndarray, rescore: Vectors) -> np.ndarray:
    """Cosine of each float query with the higher-precision vectors of its candidates."""
    vectors, precision = rescore.data, rescore.precision
    q = normalize(mx.array(queries).astype(mx.float32))
    flat = ids.reshape(-1)
    rows = vectors[mx.array(flat)] if isinstance(vectors, mx.array) else _to_mx(vectors[flat])
    if precision in SCALAR_PRECISIONS:
        rows = dequantize_levels(rows, precision, rescore.ranges)
    cand = normalize(rows.astype(mx.float32)).reshape(*ids.shape, -1)  # (q, k, dim)
    return np.array((cand @ q[:, :, None])[..., 0]).astype(np.float64)
