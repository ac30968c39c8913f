"""What semantic_search accepts, checked before any scoring.

Each argument's precision is declared, never guessed from shapes: a float array holds
float vectors, an EmbeddingFile records its precision, dims and ranges, and an int8/uint8
array is named by `corpus_precision` / `query_precision` (or, for the corpus, by the
rescore vectors' width). Shapes, dtypes, NaN/inf rows and ranges are checked too, since
each would rank silently wrong.
"""

from dataclasses import dataclass

import mlx.core as mx
import numpy as np

from .precision import BINARY_PRECISIONS, PRECISIONS, SCALAR_PRECISIONS, scalar_ranges, storage
from .store import EmbeddingFile


def check_counts(**counts: int) -> None:
    for name, value in counts.items():
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{name}={value!r}; use a positive integer.")


@dataclass
class Vectors:
    """One argument's vectors and what is known of them: the precision (None: not yet
    known), the dimension a file records, and the ranges that apply to them."""

    name: str
    data: np.ndarray | mx.array
    precision: str | None
    dims: int | None = None
    ranges: np.ndarray | None = None
    from_file: bool = False

    @classmethod
    def of(cls, name: str, value, precision: str | None) -> "Vectors":
        if isinstance(value, EmbeddingFile):
            fp = value.fingerprint
            if precision is not None and precision != fp.precision:
                raise ValueError(
                    f"{name} is an embedding file of {fp.precision} vectors, but "
                    f"{argument_name(name)}={precision!r}. Leave {argument_name(name)} out: the "
                    "file records its precision."
                )
            return cls(name, value.embeddings, fp.precision, fp.dims, value.ranges, True)
        if precision is not None and precision not in PRECISIONS:
            raise ValueError(
                f"{argument_name(name)}={precision!r}; choose one of {', '.join(PRECISIONS)}."
            )
        data = value if isinstance(value, mx.array) else np.asarray(value)
        if precision is None and dtype_name(data).startswith(("float", "bfloat")):
            precision = "float32"  # a float array holds float vectors: no other reading
        return cls(name, data, precision)

    @property
    def kind(self) -> str:
        return dtype_name(self.data)

    @property
    def width(self) -> int:
        return self.data.shape[-1] if self.data.ndim else 0


def argument_name(name: str) -> str:
    return {"query_embeddings": "query_precision", "corpus_embeddings": "corpus_precision"}.get(
        name, "precision"
    )


@dataclass
class Search:
    """Checked inputs of one search."""

    queries: np.ndarray  # float32 rows, or bit-packed int8/uint8 rows
    binary: bool  # bit-packed queries: Hamming search
    corpus: np.ndarray | mx.array
    precision: str
    dim: int
    ranges: np.ndarray | None  # the corpus's int8/uint8 ranges
    rescore: Vectors | None


def check_inputs(query_embeddings, corpus_embeddings, rescore_embeddings, query_precision,
                 corpus_precision, ranges, q_chunk: int, c_chunk: int) -> Search:  # fmt: skip
    query = Vectors.of("query_embeddings", query_embeddings, query_precision)
    corpus = Vectors.of("corpus_embeddings", corpus_embeddings, corpus_precision)
    rescore = rescore_embeddings
    rescore = rescore if rescore is None else Vectors.of("rescore_embeddings", rescore, None)
    queries = np.atleast_2d(np.array(query.data))
    binary = check_queries(queries, query)
    if not binary:
        queries = queries.astype(np.float32)
    dim = queries.shape[1] * 8 if binary else queries.shape[1]
    if binary and rescore is not None:
        raise ValueError("Rescoring needs float queries; pass the float query vectors.")
    if rescore is not None:
        rows = corpus.data.shape[0] if corpus.data.ndim else 0
        rescore = check_rescore(rescore, rows, dim, c_chunk)
    precision = corpus.precision or declared_corpus(query, corpus, rescore)
    if binary and precision not in BINARY_PRECISIONS:
        raise ValueError(
            f"Bit-packed queries need a binary or ubinary corpus, not {precision}. "
            "Pass float queries instead."
        )
    if corpus.dims not in (None, dim) or query.dims not in (None, dim):
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
    check_dtype(data, precision, want)
    # A NaN row scores NaN against every query, and one NaN breaks the whole top k.
    check_finite("query_embeddings", queries, q_chunk)
    if precision in ("float32", "float16"):
        check_finite("corpus_embeddings", data, c_chunk)
    corpus.precision = precision
    check_ranges_of(ranges, dim, [corpus] + ([rescore] if rescore else []))
    return Search(queries, binary, data, precision, dim, corpus.ranges, rescore)


def declared_corpus(query: Vectors, corpus: Vectors, rescore: Vectors | None) -> str:
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


def dtype_name(x) -> str:
    return str(x.dtype).rsplit(".", 1)[-1]  # "float32" for numpy and mx alike


def check_queries(queries: np.ndarray, query: Vectors) -> bool:
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


def check_dtype(
    corpus, precision: str, want: np.dtype, name: str = "corpus_embeddings"
) -> None:
    """An int8 corpus read as uint8 (or floats as int8) would rank by garbage scores."""
    kind = dtype_name(corpus)
    if precision in ("float32", "float16"):
        ok, want = kind.startswith(("float", "bfloat")), "float"
    else:
        ok, want = kind == want.name, want.name
    if not ok:
        raise ValueError(
            f"{name} is {kind}, but {argument_name(name)}={precision!r} means {want} "
            "vectors. Pass the precision it was quantized to."
        )


def check_ranges_of(ranges, dim: int, arrays: list[Vectors]) -> None:
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


def check_rescore(rescore: Vectors, n: int, dim: int, chunk_size: int) -> Vectors:
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
    check_dtype(vectors, rescore.precision, storage(dim, rescore.precision)[0],
                        "rescore_embeddings")  # fmt: skip
    check_finite("rescore_embeddings", vectors, chunk_size)
    return rescore


def check_finite(name: str, x, chunk_size: int) -> None:
    """Refuse rows with NaN or inf, or a norm beyond float32 (they would score 0)."""
    if not dtype_name(x).startswith(("float", "bfloat")):
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
