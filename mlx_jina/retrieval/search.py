"""Exact top-k search over float, int8/uint8 and binary corpora, with rescoring.

Scores are computed with MLX matmuls (on the GPU on Apple silicon), a chunk of the
corpus at a time so memory stays bounded; only each chunk's top k leaves the device.
"""

import math
from dataclasses import dataclass

import mlx.core as mx
import numpy as np

from .precision import (
    BINARY_PRECISIONS,
    PRECISIONS,
    SCALAR_PRECISIONS,
    dequantize_levels,
    normalize,
    scalar_ranges,
    storage,
    unpack_signs,
)



def semantic_search(
    query_embeddings: np.ndarray | mx.array,
    corpus_embeddings: np.ndarray | mx.array,
    top_k: int = 10,
    *,
    corpus_precision: str | None = None,
    ranges: np.ndarray | None = None,
    rescore_embeddings: np.ndarray | mx.array | None = None,
    rescore_multiplier: int = 4,
    query_chunk_size: int = 1024,
    corpus_chunk_size: int = 32768,
) -> list[list[dict[str, int | float]]]:
    """Find the `top_k` corpus rows closest to each query, best first.

    Args:
        query_embeddings: Float queries `(n, dim)` or `(dim,)`; or bit-packed
            `binary`/`ubinary` queries for Hamming search over a binary corpus.
        corpus_embeddings: `(m, dim)` float, int8/uint8 (see `quantize_embeddings`), or
            bit-packed binary/ubinary `(m, ceil(dim / 8))`.
        top_k: Results per query (fewer if the corpus is smaller).
        corpus_precision: A precision name; None infers it from the dtypes and shapes.
        ranges: The `(2, dim)` ranges the int8/uint8 vectors (corpus or rescore) were
            quantized with; None means the fixed default ranges.
        rescore_embeddings: Higher-precision vectors for the same corpus rows (float or
            int8/uint8). The first pass keeps `top_k * rescore_multiplier` candidates,
            then these vectors re-rank them against the float queries.
        rescore_multiplier: How many candidates per result the first pass keeps.
        query_chunk_size, corpus_chunk_size: Rows scored at once; they bound memory.

    Returns:
        One list per query of `{"corpus_id": int, "score": float}`, highest score first
        (ties: lower corpus_id first). Scores are cosine similarities: float queries
        against float, dequantized int8/uint8 or +/-1 sign vectors; for binary queries,
        `1 - 2 * hamming / bits`.

    Raises:
        ValueError: Inputs that would rank silently wrong (NaN/inf rows, a dtype not
            `corpus_precision`'s, unused or malformed ranges, rescore rows of another shape).
    """
    for name, value in (("top_k", top_k), ("rescore_multiplier", rescore_multiplier),
                        ("query_chunk_size", query_chunk_size),
                        ("corpus_chunk_size", corpus_chunk_size)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{name}={value!r}; use a positive integer.")
    job = _check_inputs(query_embeddings, corpus_embeddings, corpus_precision, ranges,
                        rescore_embeddings, query_chunk_size, corpus_chunk_size)
    rescoring = job.rescore is not None
    k = min(top_k * rescore_multiplier if rescoring else top_k, len(job.corpus))
    if k == 0 or len(job.queries) == 0:
        return [[] for _ in job.queries]
    ids, scores = _first_pass(job, k, query_chunk_size, corpus_chunk_size)
    if rescoring:
        scores = _rescore(job.queries, ids, job.rescore, job.ranges)
    # Best first; among equal scores the lower corpus id first, as a full sort would.
    order = np.lexsort((ids, -scores), axis=1)[:, :top_k]
    ids, scores = np.take_along_axis(ids, order, 1), np.take_along_axis(scores, order, 1)
    return [
        [{"corpus_id": int(i), "score": float(s)} for i, s in zip(row_ids, row_scores)]
        for row_ids, row_scores in zip(ids, scores)
    ]


@dataclass
class _Search:
    """Checked inputs of one search."""

    queries: np.ndarray  # float32 rows, or bit-packed int8/uint8 rows
    binary: bool  # bit-packed queries: Hamming search
    corpus: np.ndarray | mx.array
    precision: str
    dim: int
    ranges: np.ndarray | None
    rescore: np.ndarray | mx.array | None


def _check_inputs(
    query_embeddings, corpus_embeddings, corpus_precision, ranges, rescore, q_chunk, c_chunk
) -> _Search:
    queries = np.atleast_2d(np.array(query_embeddings))
    binary = _check_queries(queries)
    if not binary:
        queries = queries.astype(np.float32)
    corpus = corpus_embeddings
    if not isinstance(corpus, mx.array):
        corpus = np.asarray(corpus)
    precision = corpus_precision or _infer_precision(queries, corpus)
    if precision not in PRECISIONS:
        raise ValueError(f"corpus_precision={precision!r}; choose one of {', '.join(PRECISIONS)}.")
    if binary and precision not in BINARY_PRECISIONS:
        raise ValueError(
            f"Bit-packed queries need a binary or ubinary corpus, not {precision}. "
            "Pass float queries instead."
        )
    if binary and rescore is not None:
        raise ValueError("Rescoring needs float queries; pass the float query vectors.")
    dim = queries.shape[1] * 8 if binary else queries.shape[1]
    want, width = storage(dim, precision)
    if corpus.ndim != 2 or corpus.shape[1] != width:
        raise ValueError(
            f"corpus_embeddings has shape {tuple(corpus.shape)}; a {precision} corpus "
            f"for {dim}-dimensional queries needs (n, {width}). Encode both with the same "
            "truncate_dim."
        )
    _check_corpus_dtype(corpus, precision, want)
    if rescore is not None:
        rescore = _check_rescore(rescore, corpus.shape[0], dim, c_chunk)
    # A NaN row scores NaN against every query, and one NaN breaks the whole top k.
    _check_finite("query_embeddings", queries, q_chunk)
    if precision in ("float32", "float16"):
        _check_finite("corpus_embeddings", corpus, c_chunk)
    ranges = _checked_ranges(ranges, dim, precision, rescore)
    return _Search(queries, binary, corpus, precision, dim, ranges, rescore)


def _first_pass(job: _Search, k: int, q_chunk: int, c_chunk: int) -> tuple[np.ndarray, np.ndarray]:
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
    # float64 has no GPU kernels in MLX; search in float32 (_check_finite refuses overflow).
    with np.errstate(over="ignore"):
        return mx.array(x.astype(np.float32) if x.dtype == np.float64 else x)


def _dtype(x) -> str:
    return str(x.dtype).rsplit(".", 1)[-1]  # "float32" for numpy and mx alike


def _infer_precision(queries: np.ndarray, corpus) -> str:
    kind = _dtype(corpus)
    if kind.startswith(("float", "bfloat")):
        return "float32"
    if kind not in ("int8", "uint8"):
        raise ValueError(f"corpus_embeddings has dtype {kind}; expected float, int8 or uint8.")
    if queries.dtype in (np.int8, np.uint8) or corpus.shape[-1] != queries.shape[-1]:
        return "binary" if kind == "int8" else "ubinary"
    return kind


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


def _rescore(queries: np.ndarray, ids: np.ndarray, vectors, ranges) -> np.ndarray:
    """Cosine of each float query with the higher-precision vectors of its candidates."""
    precision = _dtype(vectors) if _dtype(vectors) in SCALAR_PRECISIONS else "float32"
    q = normalize(mx.array(queries).astype(mx.float32))
    flat = ids.reshape(-1)
    rows = vectors[mx.array(flat)] if isinstance(vectors, mx.array) else _to_mx(vectors[flat])
    rows = dequantize_levels(rows, precision, ranges) if precision in SCALAR_PRECISIONS else rows
    cand = normalize(rows.astype(mx.float32)).reshape(*ids.shape, -1)  # (q, k, dim)
    return np.array((cand @ q[:, :, None])[..., 0]).astype(np.float64)


def _check_queries(queries: np.ndarray) -> bool:
    """Whether the queries are bit-packed; refuse dtypes and shapes that are neither."""
    if queries.dtype.kind != "f" and queries.dtype not in (np.int8, np.uint8):
        raise ValueError(
            f"query_embeddings has dtype {queries.dtype}; pass the float vectors encode() "
            "returns, or bit-packed binary/ubinary ones (int8/uint8)."
        )
    if queries.ndim != 2 or queries.shape[1] == 0:
        raise ValueError(
            f"query_embeddings has shape {queries.shape}; pass (n, dim) or (dim,) with dim >= 1."
        )
    return queries.dtype.kind != "f"


def _check_corpus_dtype(corpus, precision: str, want: np.dtype) -> None:
    """An int8 corpus read as uint8 (or floats as int8) would rank by garbage scores."""
    kind = _dtype(corpus)
    if precision in ("float32", "float16"):
        ok, want = kind.startswith(("float", "bfloat")), "float"
    else:
        ok, want = kind == want.name, want.name
    if not ok:
        raise ValueError(
            f"corpus_embeddings is {kind}, but corpus_precision={precision!r} means {want} "
            "vectors. Pass the precision it was quantized to, or None to infer it."
        )


def _checked_ranges(ranges, dim: int, precision: str, rescore) -> np.ndarray | None:
    """The (2, dim) int8/uint8 ranges where some vectors are int8/uint8; else refuse any."""
    if precision in SCALAR_PRECISIONS or (
        rescore is not None and _dtype(rescore) in SCALAR_PRECISIONS
    ):
        return scalar_ranges(dim, ranges)
    if ranges is not None:
        raise ValueError(
            f"ranges apply to int8/uint8 vectors, and this search has none (a {precision} "
            "corpus, float or no rescore_embeddings). Leave ranges out."
        )
    return None


def _check_rescore(vectors, n: int, dim: int, chunk_size: int):
    vectors = vectors if isinstance(vectors, mx.array) else np.asarray(vectors)
    if vectors.ndim != 2 or vectors.shape[0] != n or vectors.shape[1] != dim:
        raise ValueError(
            f"rescore_embeddings has shape {tuple(vectors.shape)}; it needs one "
            f"{dim}-dimensional row per corpus row: ({n}, {dim})."
        )
    kind = _dtype(vectors)
    if not kind.startswith(("float", "bfloat")) and kind not in SCALAR_PRECISIONS:
        raise ValueError(
            f"rescore_embeddings is {kind}; pass float or int8/uint8 vectors of the corpus."
        )
    _check_finite("rescore_embeddings", vectors, chunk_size)
    return vectors


def _check_finite(name: str, x, chunk_size: int) -> None:
    """Refuse rows with NaN or inf, or a norm beyond float32 (they would score 0)."""
    if not _dtype(x).startswith(("float", "bfloat")):
        return
    bad = 0
    # Finite iff every value is finite and the squared norm fits in float32.
    for i in range(0, x.shape[0], chunk_size):
        rows = x[i : i + chunk_size]
        if isinstance(rows, mx.array):
            rows = rows.astype(mx.float32)
            bad += (~mx.isfinite((rows * rows).sum(axis=1))).sum().item()
        else:
            with np.errstate(over="ignore", invalid="ignore"):
                rows = rows.astype(np.float32, copy=False)
                bad += np.count_nonzero(~np.isfinite(np.einsum("ij,ij->i", rows, rows)))
    if bad:
        raise ValueError(
            f"{name} has {bad} of {x.shape[0]} rows with NaN or inf values (or a norm too "
            "large for float32); their scores would be NaN and the ranking wrong. Fix or drop "
            "those rows."
        )
