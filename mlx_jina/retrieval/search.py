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
from .store import EmbeddingFile


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

    Precision is never guessed from shapes: a `(n, 32)` uint8 array is 32-dimensional
    uint8 vectors or 256-dimensional ubinary ones. Float arrays are float vectors; an
    int8/uint8 array needs its precision named (`corpus_precision=` / `query_precision=`),
    or comes as the `EmbeddingFile` that `load_embeddings` returns, which records it.

    Args:
        query_embeddings: Float queries `(n, dim)` or `(dim,)`; or bit-packed
            `binary`/`ubinary` queries (with `query_precision=`) for Hamming search.
        corpus_embeddings: `(m, dim)` float vectors; int8/uint8 ones (see
            `quantize_embeddings`) or bit-packed binary/ubinary `(m, ceil(dim / 8))` with
            `corpus_precision=`; or an `EmbeddingFile`.
        top_k: Results per query (fewer if the corpus is smaller).
        corpus_precision: The corpus's precision name. Needed for an int8/uint8 array,
            except with `rescore_embeddings` (their width is the corpus's dimension) or
            binary queries (then it is `query_precision`).
        query_precision: "binary" or "ubinary" for bit-packed queries; float queries need
            none.
        ranges: The `(2, dim)` ranges the int8/uint8 arrays (corpus or rescore) were
            quantized with; None means the fixed default ranges. An `EmbeddingFile`
            carries its own.
        rescore_embeddings: Higher-precision vectors for the same corpus rows (float or
            int8/uint8, or an `EmbeddingFile`). The first pass keeps `top_k *
            rescore_multiplier` candidates, then these vectors re-rank them against the
            float queries.
        rescore_multiplier: How many candidates per result the first pass keeps.
        query_chunk_size, corpus_chunk_size: Rows scored at once; they bound memory.

    Returns:
        One list per query of `{"corpus_id": int, "score": float}`, highest score first
        (ties: lower corpus_id first). Scores are cosine similarities: float queries
        against float, dequantized int8/uint8 or +/-1 sign vectors; for binary queries,
        `1 - 2 * hamming / bits`.

    Raises:
        ValueError: Inputs that would rank silently wrong (an int8/uint8 array of unknown
            precision, dimensions that differ, NaN/inf rows, a dtype not its precision's,
            unused or malformed ranges, rescore rows of another shape).
    """
    for name, value in (("top_k", top_k), ("rescore_multiplier", rescore_multiplier),
                        ("query_chunk_size", query_chunk_size),
                        ("corpus_chunk_size", corpus_chunk_size)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{name}={value!r}; use a positive integer.")
    job = _check_inputs(
        _Vectors.of("query_embeddings", query_embeddings, query_precision),
        _Vectors.of("corpus_embeddings", corpus_embeddings, corpus_precision),
        None if rescore_embeddings is None
        else _Vectors.of("rescore_embeddings", rescore_embeddings, None),
        ranges, query_chunk_size, corpus_chunk_size,
    )  # fmt: skip
    rescoring = job.rescore is not None
    k = min(top_k * rescore_multiplier if rescoring else top_k, len(job.corpus))
    if k == 0 or len(job.queries) == 0:
        return [[] for _ in job.queries]
    ids, scores = _first_pass(job, k, query_chunk_size, corpus_chunk_size)
    if rescoring:
        scores = _rescore(job.queries, ids, job.rescore)
    # Best first; among equal scores the lower corpus id first, as a full sort would.
    order = np.lexsort((ids, -scores), axis=1)[:, :top_k]
    ids, scores = np.take_along_axis(ids, order, 1), np.take_along_axis(scores, order, 1)
    return [
        [{"corpus_id": int(i), "score": float(s)} for i, s in zip(row_ids, row_scores)]
        for row_ids, row_scores in zip(ids, scores)
    ]


@dataclass
class _Vectors:
    """One argument's vectors and what is known of them: the precision (None: not yet
    known), the dimension a file records, and the ranges that apply to them."""

    name: str
    data: np.ndarray | mx.array
    precision: str | None
    dims: int | None = None
    ranges: np.ndarray | None = None
    from_file: bool = False

    @classmethod
    def of(cls, name: str, value, precision: str | None) -> "_Vectors":
        if isinstance(value, EmbeddingFile):
            fp = value.fingerprint
            if precision is not None and precision != fp.precision:
                raise ValueError(
                    f"{name} is an embedding file of {fp.precision} vectors, but "
                    f"{_argument(name)}={precision!r}. Leave {_argument(name)} out: the "
                    "file records its precision."
                )
            return cls(name, value.embeddings, fp.precision, fp.dims, value.ranges, True)
        if precision is not None and precision not in PRECISIONS:
            raise ValueError(
                f"{_argument(name)}={precision!r}; choose one of {', '.join(PRECISIONS)}."
            )
        data = value if isinstance(value, mx.array) else np.asarray(value)
        if precision is None and _dtype(data).startswith(("float", "bfloat")):
            precision = "float32"  # a float array holds float vectors: no other reading
        return cls(name, data, precision)

    @property
    def kind(self) -> str:
        return _dtype(self.data)

    @property
    def width(self) -> int:
        return self.data.shape[-1] if self.data.ndim else 0


def _argument(name: str) -> str:
    return {"query_embeddings": "query_precision", "corpus_embeddings": "corpus_precision"}.get(
        name, "precision"
    )


@dataclass
class _Search:
    """Checked inputs of one search."""

    queries: np.ndarray  # float32 rows, or bit-packed int8/uint8 rows
    binary: bool  # bit-packed queries: Hamming search
    corpus: np.ndarray | mx.array
    precision: str
    dim: int
    ranges: np.ndarray | None  # the corpus's int8/uint8 ranges
    rescore: _Vectors | None


def _check_inputs(query: _Vectors, corpus: _Vectors, rescore: _Vectors | None, ranges,
                  q_chunk: int, c_chunk: int) -> _Search:  # fmt: skip
    queries = np.atleast_2d(np.array(query.data))
    binary = _check_queries(queries, query)
    if not binary:
        queries = queries.astype(np.float32)
    dim = queries.shape[1] * 8 if binary else queries.shape[1]
    if binary and rescore is not None:
        raise ValueError("Rescoring needs float queries; pass the float query vectors.")
    if rescore is not None:
        rows = corpus.data.shape[0] if corpus.data.ndim else 0
        rescore = _check_rescore(rescore, rows, dim, c_chunk)
    precision = corpus.precision or _declared_corpus(query, corpus, rescore)
    if binary and precision not in BINARY_PRECISIONS:
        raise ValueError(
            f"Bit-packed queries need a binary or ubinary corpus, not {precision}. "
            "Pass float queries instead."
        )
    if corpus.dims is not None and corpus.dims != dim or query.dims not in (None, dim):
        raise ValueError(
            f"query_embeddings are {query.dims or dim}-dimensional, but the corpus holds "
            f"{corpus.dims or dim}-dimensional {precision} vectors. Encode both with the "
            "same truncate_dim."
        )
    want, width = storage(dim, precision)
    data = corpus.data
    if data.ndim != 2 or data.shape[1] != width:
        raise ValueError(
            f"corpus_embeddings has shape {tuple(data.shape)}; a {precision} corpus "
            f"for {dim}-dimensional queries needs (n, {width}). Encode both with the same "
            "truncate_dim."
        )
    _check_corpus_dtype(data, precision, want)
    # A NaN row scores NaN against every query, and one NaN breaks the whole top k.
    _check_finite("query_embeddings", queries, q_chunk)
    if precision in ("float32", "float16"):
        _check_finite("corpus_embeddings", data, c_chunk)
    corpus.precision = precision
    _check_ranges(ranges, dim, [corpus] + ([rescore] if rescore else []))
    return _Search(queries, binary, data, precision, dim, corpus.ranges, rescore)


def _declared_corpus(query: _Vectors, corpus: _Vectors, rescore: _Vectors | None) -> str:
    """The precision of an int8/uint8 corpus array, where the other arguments declare it:
    binary queries search a corpus of their own precision; rescore vectors are the same
    rows, so their width is the corpus's dimension. Else refuse."""
    kind = corpus.kind
    if kind not in ("int8", "uint8"):
        raise ValueError(f"corpus_embeddings has dtype {kind}; expected float, int8 or uint8.")
    if query.precision in BINARY_PRECISIONS:
        return query.precision
    scalar, packed = kind, "binary" if kind == "int8" else "ubinary"
    if rescore is not None and corpus.data.ndim == 2:
        dim = rescore.width
        if corpus.width == dim:
            return scalar
        if corpus.width == storage(dim, packed)[1]:
            return packed
    width = corpus.width
    raise ValueError(
        f"corpus_embeddings is {kind} with shape {tuple(corpus.data.shape)}: "
        f"{width}-dimensional {scalar} vectors or {width * 8}-dimensional {packed} ones, "
        f"and an array can't say which. Pass corpus_precision={scalar!r} or {packed!r} "
        "(or the EmbeddingFile from load_embeddings, which records it)."
    )


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


def _rescore(queries: np.ndarray, ids: np.ndarray, rescore: _Vectors) -> np.ndarray:
    """Cosine of each float query with the higher-precision vectors of its candidates."""
    vectors, precision = rescore.data, rescore.precision
    q = normalize(mx.array(queries).astype(mx.float32))
    flat = ids.reshape(-1)
    rows = vectors[mx.array(flat)] if isinstance(vectors, mx.array) else _to_mx(vectors[flat])
    if precision in SCALAR_PRECISIONS:
        rows = dequantize_levels(rows, precision, rescore.ranges)
    cand = normalize(rows.astype(mx.float32)).reshape(*ids.shape, -1)  # (q, k, dim)
    return np.array((cand @ q[:, :, None])[..., 0]).astype(np.float64)


def _check_queries(queries: np.ndarray, query: _Vectors) -> bool:
    """Whether the queries are bit-packed; refuse dtypes, shapes and precisions that are
    neither float nor declared binary/ubinary."""
    kind, precision = queries.dtype, query.precision
    if kind.kind != "f" and kind not in (np.int8, np.uint8):
        raise ValueError(
            f"query_embeddings has dtype {kind}; pass the float vectors encode() "
            "returns, or bit-packed binary/ubinary ones (int8/uint8)."
        )
    if queries.ndim != 2 or queries.shape[1] == 0:
        raise ValueError(
            f"query_embeddings has shape {queries.shape}; pass (n, dim) or (dim,) with dim >= 1."
        )
    if precision in SCALAR_PRECISIONS:
        raise ValueError(
            f"query_precision={precision!r}: search with the float query vectors instead; "
            f"{precision} codes of a query only lose accuracy."
        )
    if precision is None:  # int8/uint8 without a name
        packed = "binary" if kind == np.int8 else "ubinary"
        raise ValueError(
            f"query_embeddings is {kind} with shape {queries.shape}: bit-packed {packed} "
            f"vectors of {queries.shape[1] * 8} dimensions or {kind} codes of "
            f"{queries.shape[1]}, and an array can't say which. For Hamming search pass "
            f"query_precision={packed!r}; else search with the float query vectors."
        )
    want = storage(1, precision)[0]
    if (precision in BINARY_PRECISIONS) != (kind.kind != "f") or (
        kind.kind != "f" and kind != want
    ):
        raise ValueError(
            f"query_embeddings is {kind}, but query_precision={precision!r} means "
            f"{want.name if precision in BINARY_PRECISIONS else 'float'} vectors."
        )
    return precision in BINARY_PRECISIONS


def _check_corpus_dtype(
    corpus, precision: str, want: np.dtype, name: str = "corpus_embeddings"
) -> None:
    """An int8 corpus read as uint8 (or floats as int8) would rank by garbage scores."""
    kind = _dtype(corpus)
    if precision in ("float32", "float16"):
        ok, want = kind.startswith(("float", "bfloat")), "float"
    else:
        ok, want = kind == want.name, want.name
    if not ok:
        raise ValueError(
            f"{name} is {kind}, but {_argument(name)}={precision!r} means {want} "
            "vectors. Pass the precision it was quantized to."
        )


def _check_ranges(ranges, dim: int, arrays: list[_Vectors]) -> None:
    """Set each int8/uint8 array's (2, dim) ranges: a file's own (or the default), else
    `ranges` (or the default). Refuse `ranges` that no int8/uint8 array uses."""
    used = False
    for v in arrays:
        if v.precision not in SCALAR_PRECISIONS:
            v.ranges = None
            continue
        used = used or not v.from_file
        v.ranges = scalar_ranges(dim, v.ranges if v.from_file else ranges)
    if ranges is not None and not used:
        raise ValueError(
            "ranges apply to int8/uint8 vectors, and this search has none (embedding files "
            "carry their own; float or binary vectors need none). Leave ranges out."
        )


def _check_rescore(rescore: _Vectors, n: int, dim: int, chunk_size: int) -> _Vectors:
    """Rescore vectors are float or int8/uint8 codes, one `dim`-wide row per corpus row
    (never bit-packed: rescoring with signs would gain nothing)."""
    vectors, kind = rescore.data, rescore.kind
    if rescore.precision in BINARY_PRECISIONS or not (
        kind.startswith(("float", "bfloat")) or kind in SCALAR_PRECISIONS
    ):
        raise ValueError(
            f"rescore_embeddings is {rescore.precision or kind}; pass float or int8/uint8 "
            "vectors of the corpus."
        )
    if vectors.ndim != 2 or vectors.shape[0] != n or vectors.shape[1] != dim:
        raise ValueError(
            f"rescore_embeddings has shape {tuple(vectors.shape)}; it needs one "
            f"{dim}-dimensional row per corpus row: ({n}, {dim})."
        )
    rescore.precision = rescore.precision or kind  # int8/uint8 codes, as documented
    _check_corpus_dtype(vectors, rescore.precision, storage(dim, rescore.precision)[0],
                        "rescore_embeddings")  # fmt: skip
    _check_finite("rescore_embeddings", vectors, chunk_size)
    return rescore


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
