"""semantic_search over binary/ubinary corpora: the numpy kernels (mlx_jina/retrieval/
bit_search.py, popcount and per-byte sign tables) against the MLX unpack-and-multiply
path they replace for a few queries, and against numpy brute force.

Run: python -m pytest tests/test_search_bit_kernels.py -q
"""

import mlx.core as mx
import numpy as np
import pytest

from mlx_jina import quantize_embeddings, semantic_search
from mlx_jina.retrieval import bit_search, search


def signs(packed: np.ndarray) -> np.ndarray:
    """+/-1 float64 rows of bit-packed rows (int8 rows are ubinary - 128)."""
    raw = packed.view(np.uint8) ^ np.uint8(0x80 if packed.dtype == np.int8 else 0)
    return np.unpackbits(raw, axis=1).astype(np.float64) * 2 - 1


def full_sort(scores: np.ndarray, top_k: int) -> tuple[np.ndarray, np.ndarray]:
    ids = np.stack([np.lexsort((np.arange(len(row)), -row))[:top_k] for row in scores])
    return ids, np.take_along_axis(scores, ids, 1)


def as_arrays(hits) -> tuple[np.ndarray, np.ndarray]:
    return (np.array([[h["corpus_id"] for h in row] for row in hits]),
            np.array([[h["score"] for h in row] for row in hits]))  # fmt: skip


def mlx_path(monkeypatch, *args, **kwargs):
    """The same search through the MLX unpack-and-multiply path."""
    with monkeypatch.context() as m:
        m.setattr(search, "NUMPY_QUERIES", {"binary": 0, "float": 0})
        return semantic_search(*args, **kwargs)


def numpy_path(monkeypatch, *args, **kwargs):
    """The same search, failing if it does not go through bit_search.py."""
    with monkeypatch.context() as m:
        m.setattr(search, "_first_pass", lambda *a: pytest.fail("took the MLX path"))
        return semantic_search(*args, **kwargs)


def corpus_with_ties(n: int, dim: int, seed: int) -> np.ndarray:
    """Float rows whose sign patterns repeat (exact ties), few bits apart (many equal
    Hamming distances)."""
    rng = np.random.default_rng(seed)
    base = rng.normal(size=(1, dim)).astype(np.float32)
    rows = np.repeat(base, n, axis=0)
    flips = rng.random((n, dim)) < 0.08
    rows[flips] *= -1
    rows[n // 2 : n // 2 + 20] = rows[:20]  # duplicates: identical signs, later ids
    return rows


@pytest.mark.parametrize("dim", [100, 64])  # 100: 13 bytes, 4 padding bits
@pytest.mark.parametrize("query_precision, corpus_precision",
                         [("ubinary", "ubinary"), ("binary", "binary"), ("binary", "ubinary"),
                          ("ubinary", "binary")])  # fmt: skip
@pytest.mark.parametrize("top_k, chunks", [(1, (100, 1000)), (25, (3, 7)), (500, (2, 64))])
def test_popcount_equals_the_mlx_path_and_brute_force(
    monkeypatch, dim, query_precision, corpus_precision, top_k, chunks
):  # fmt: skip
    """Same ids, same float32 scores, same order (ties: the lower id), for binary and
    ubinary on either side, dims not a multiple of 8, top_k over the 300 rows, several
    query and corpus chunks."""
    floats = corpus_with_ties(300, dim, seed=dim)
    corpus = quantize_embeddings(floats, corpus_precision)
    queries = quantize_embeddings(np.concatenate([floats[:3], -floats[5:7]]), query_precision)
    options = dict(query_precision=query_precision, corpus_precision=corpus_precision,
                   query_chunk_size=chunks[0], corpus_chunk_size=chunks[1])  # fmt: skip
    got = numpy_path(monkeypatch, queries, corpus, top_k, **options)
    assert got == mlx_path(monkeypatch, queries, corpus, top_k, **options)
    bits = queries.shape[1] * 8
    hamming = (bits - signs(queries) @ signs(corpus).T) / 2
    scores = ((bits - 2 * hamming).astype(np.float32) / np.float32(bits)).astype(np.float64)
    want_ids, want_scores = full_sort(scores, top_k)
    ids, got_scores = as_arrays(got)
    np.testing.assert_array_equal(ids, want_ids)
    np.testing.assert_array_equal(got_scores, want_scores)
    assert len(got[0]) == min(top_k, 300)
    assert len({s for s in scores[0]}) < 60  # the data does hold ties


@pytest.mark.parametrize("precision", ["ubinary", "binary"])
@pytest.mark.parametrize("dim, chunks", [(100, (2, 9)), (256, (1000, 100_000))])
def test_float_queries_score_the_sign_vectors_as_the_mlx_path(monkeypatch, precision, dim, chunks):
    """Float queries on a binary corpus (what the index does): the cosine with each unit
    sign vector. The same ids in the same order as the MLX path, scores within float32
    rounding; against float64 brute force, exact ties (duplicate rows) in id order."""
    options = dict(corpus_precision=precision, query_chunk_size=chunks[0],
                   corpus_chunk_size=chunks[1])  # fmt: skip
    queries = np.random.default_rng(2).normal(size=(5, dim)).astype(np.float32)
    plain = quantize_embeddings(np.random.default_rng(1).normal(size=(400, dim)), precision)
    got = numpy_path(monkeypatch, queries, plain, 30, **options)
    want = mlx_path(monkeypatch, queries, plain, 30, **options)
    np.testing.assert_array_equal(as_arrays(got)[0], as_arrays(want)[0])
    np.testing.assert_allclose(as_arrays(got)[1], as_arrays(want)[1], atol=1e-6)

    floats = corpus_with_ties(400, dim, seed=1)
    corpus = quantize_embeddings(floats, precision)
    queries[0] = floats[3] * 7  # unnormalized; its own row and that row's duplicate tie
    ids, scores = as_arrays(numpy_path(monkeypatch, queries, corpus, 30, **options))
    unit = queries.astype(np.float64)
    unit /= np.linalg.norm(unit, axis=1, keepdims=True)
    # Scored once per distinct sign row, so duplicates tie exactly in the reference too.
    distinct, row_of = np.unique(signs(corpus)[:, :dim], axis=0, return_inverse=True)
    exact = (unit @ (distinct / np.sqrt(dim)).T)[:, row_of.reshape(-1)]
    want_ids, want_scores = full_sort(exact, 30)
    np.testing.assert_array_equal(ids, want_ids)
    np.testing.assert_allclose(scores, want_scores, atol=1e-12)
    assert ids[0][:2].tolist() == [3, 203]  # row 3 and its duplicate: a tie, lower id first


def test_binary_first_pass_with_int8_rescoring_is_unchanged(monkeypatch):
    """The index's search: float query, ubinary first pass, int8 rescoring of k x 4."""
    floats = np.random.default_rng(3).normal(size=(2000, 96)).astype(np.float32)
    floats /= np.linalg.norm(floats, axis=1, keepdims=True)
    ubinary, int8 = quantize_embeddings(floats, "ubinary"), quantize_embeddings(floats, "int8")
    query = floats[17] + np.random.default_rng(4).normal(size=96).astype(np.float32) * 0.05
    options = dict(corpus_precision="ubinary", rescore_embeddings=int8, corpus_chunk_size=300)
    got = numpy_path(monkeypatch, query, ubinary, 10, **options)
    assert got == mlx_path(monkeypatch, query, ubinary, 10, **options)
    assert got[0][0]["corpus_id"] == 17


def test_numpy_before_2_counts_bits_with_a_table(monkeypatch):
    """numpy < 2 has no bitwise_count: the 256-entry table gives the same counts."""
    wide = np.random.default_rng(5).integers(0, 256, size=(50, 16), dtype=np.uint8)
    for width in (13, 16, 12, 6):  # uint8, uint64, uint32 and uint16 words
        x = np.ascontiguousarray(wide[:, :width])
        np.testing.assert_array_equal(bit_search.popcount(x), np.unpackbits(x, axis=1).sum(axis=1))
    x = np.ascontiguousarray(wide[:, :13])
    want = np.unpackbits(x, axis=1).sum(axis=1)
    monkeypatch.delattr(np, "bitwise_count", raising=False)
    np.testing.assert_array_equal(bit_search.popcount(x), want)
    corpus = x.view(np.int8)
    query = corpus[[4, 9]]
    got = numpy_path(monkeypatch, query, corpus, 7, query_precision="binary")
    assert got == mlx_path(monkeypatch, query, corpus, 7, query_precision="binary")


def test_temporaries_stay_bounded(monkeypatch):
    """Corpus pieces shrink to fit TEMP_BYTES; a tiny bound gives the same results."""
    floats = corpus_with_ties(200, 100, seed=6)
    corpus = quantize_embeddings(floats, "ubinary")
    queries = quantize_embeddings(floats[:4], "ubinary")
    want = semantic_search(queries, corpus, 12, query_precision="ubinary")
    seen = []
    real = bit_search._packed_bytes
    monkeypatch.setattr(bit_search, "_packed_bytes", lambda c: seen.append(len(c)) or real(c))
    monkeypatch.setattr(bit_search, "TEMP_BYTES", 2000)  # 2000 // (26 + 64 + 16) = 18 rows
    assert semantic_search(queries, corpus, 12, query_precision="ubinary") == want
    assert max(seen) == 18 and sum(seen) == 200


def test_many_queries_or_a_gpu_keep_the_mlx_path(monkeypatch):
    """Past NUMPY_QUERIES, one unpack shared by every query is cheaper: the MLX path runs
    (and gives the same results)."""
    floats = np.random.default_rng(7).normal(size=(100, 40)).astype(np.float32)
    corpus = quantize_embeddings(floats, "ubinary")
    queries = floats[:9]  # float queries: more than NUMPY_QUERIES["float"] = 8
    called = []
    real = search._first_pass
    monkeypatch.setattr(search, "_first_pass", lambda *a: called.append(1) or real(*a))
    got = semantic_search(queries, corpus, 5, corpus_precision="ubinary")
    assert called and len(got) == 9
    few = semantic_search(queries[:8], corpus, 5, corpus_precision="ubinary")
    assert len(called) == 1  # the 8 went to bit_search.py
    assert as_arrays(got[:8])[0].tolist() == as_arrays(few)[0].tolist()
    assert mx.default_device().type == mx.cpu  # these tests measure the CPU routing
