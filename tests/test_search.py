"""semantic_search (mlx_jina/search.py) against numpy brute force.

Run: python -m pytest tests/test_search.py -q
"""

import mlx.core as mx
import numpy as np
import pytest

import mlx_jina
from mlx_jina import quantize_embeddings, semantic_search
from mlx_jina.retrieval.precision import default_ranges, dequantize_embeddings


def unit_rows(n: int, dim: int, seed: int) -> np.ndarray:
    x = np.random.default_rng(seed).normal(size=(n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def brute_force(scores: np.ndarray, top_k: int) -> tuple[np.ndarray, np.ndarray]:
    """ids and scores of a full sort: score descending, then corpus id ascending."""
    ids = np.stack([np.lexsort((np.arange(len(row)), -row))[:top_k] for row in scores])
    return ids, np.take_along_axis(scores, ids, 1)


def as_arrays(hits):
    ids = np.array([[h["corpus_id"] for h in row] for row in hits])
    return ids, np.array([[h["score"] for h in row] for row in hits])


@pytest.mark.parametrize("top_k", [1, 10, 37])
@pytest.mark.parametrize("chunk", [100_000, 64, 7])
def test_float_search_equals_brute_force(top_k, chunk):
    """Cosine top-k over a float corpus equals numpy's full sort, for any chunking."""
    corpus, queries = unit_rows(500, 48, 0) * 3.0, unit_rows(13, 48, 1)  # unnormalized corpus
    cos = queries @ (corpus / 3.0).T
    ids, scores = as_arrays(
        semantic_search(queries, corpus, top_k, corpus_chunk_size=chunk, query_chunk_size=5)
    )
    want_ids, want_scores = brute_force(cos, top_k)
    assert np.array_equal(ids, want_ids)
    assert np.allclose(scores, want_scores, atol=1e-5)


def test_result_shape_and_input_kinds():
    """sentence-transformers' shape; 1-D query, mx arrays and float64 all work."""
    corpus, query = unit_rows(20, 32, 2), unit_rows(1, 32, 3)[0]
    hits = semantic_search(query, corpus, top_k=3)
    assert len(hits) == 1 and len(hits[0]) == 3
    assert set(hits[0][0]) == {"corpus_id", "score"}
    assert isinstance(hits[0][0]["corpus_id"], int) and isinstance(hits[0][0]["score"], float)
    assert semantic_search(mx.array(query), mx.array(corpus), top_k=3) == hits
    again = semantic_search(query.astype(np.float64), corpus.astype(np.float64), top_k=3)
    assert [h["corpus_id"] for h in again[0]] == [h["corpus_id"] for h in hits[0]]
    assert len(semantic_search(query, corpus, top_k=50)[0]) == 20  # never more than the corpus
    assert semantic_search(query, corpus[:0], top_k=5) == [[]]


def hamming(a_packed: np.ndarray, b_packed: np.ndarray) -> np.ndarray:
    return np.unpackbits(a_packed[:, None, :] ^ b_packed[None], axis=-1).sum(-1)


@pytest.mark.parametrize("precision", ["ubinary", "binary"])
def test_hamming_search_equals_brute_force_with_ties(precision):
    """Binary queries on a binary corpus rank by Hamming distance; the many ties are broken by
    corpus id, the same for every chunk size."""
    corpus, queries = unit_rows(300, 16, 4), unit_rows(6, 16, 5)  # 16 bits: ties galore
    c, q = quantize_embeddings(corpus, precision), quantize_embeddings(queries, precision)
    ham = hamming(np.packbits(queries > 0, axis=-1), np.packbits(corpus > 0, axis=-1))
    want_ids, want_scores = brute_force(1 - 2 * ham / 16, 25)
    for chunk in (1000, 33, 5):
        ids, scores = as_arrays(
            semantic_search(q, c, 25, query_precision=precision, corpus_chunk_size=chunk)
        )
        assert np.array_equal(ids, want_ids)
        assert np.allclose(scores, want_scores)


def test_float_query_on_binary_corpus_scores_against_signs():
    """Asymmetric search: a float query scores against the unit-length +/-1 sign vectors."""
    corpus, queries = unit_rows(200, 40, 6), unit_rows(4, 40, 7)  # 40 bits: 5 bytes, no padding
    signs = np.where(corpus > 0, 1.0, -1.0) / np.sqrt(40)
    want_ids, want_scores = brute_force(queries @ signs.T, 10)
    binary = quantize_embeddings(corpus, "ubinary")
    ids, scores = as_arrays(semantic_search(queries, binary, 10, corpus_precision="ubinary"))
    assert np.array_equal(ids, want_ids)
    assert np.allclose(scores, want_scores, atol=1e-5)


def test_int8_corpus_scores_the_dequantized_vectors():
    corpus, queries = unit_rows(300, 64, 8), unit_rows(5, 64, 9)
    q8 = quantize_embeddings(corpus, "int8")
    back = dequantize_embeddings(q8, "int8")
    cos = queries @ (back / np.linalg.norm(back, axis=1, keepdims=True)).T
    want_ids, want_scores = brute_force(cos, 10)
    ids, scores = as_arrays(semantic_search(queries, q8, 10, corpus_precision="int8"))
    assert np.array_equal(ids, want_ids)
    assert np.allclose(scores, want_scores, atol=1e-5)


def near_duplicates(seed: int):
    """Queries with a planted top 5 (noisy copies); the float top 5 is checkable."""
    rng = np.random.default_rng(seed)
    background = unit_rows(2000, 256, seed)
    queries = unit_rows(8, 256, seed + 1)
    planted = queries[:, None, :] + rng.normal(0, 0.01, (8, 5, 256)) * np.arange(1, 6)[:, None]
    planted = planted / np.linalg.norm(planted, axis=-1, keepdims=True)
    corpus = np.concatenate([background, planted.reshape(-1, 256)]).astype(np.float32)
    return queries, corpus[rng.permutation(len(corpus))]


@pytest.mark.parametrize("rescore_with", ["float32", "int8"])
def test_binary_search_with_rescoring_returns_the_float_top_k(rescore_with):
    """Binary first pass + rescoring recovers the exact float top k and its float scores."""
    queries, corpus = near_duplicates(10)
    binary = quantize_embeddings(corpus, "binary")
    rescore = corpus if rescore_with == "float32" else quantize_embeddings(corpus, "int8")
    want_ids, want_scores = brute_force(queries @ corpus.T, 5)
    ids, scores = as_arrays(
        semantic_search(queries, binary, 5, rescore_embeddings=rescore, rescore_multiplier=4)
    )
    assert np.array_equal(ids, want_ids)
    assert np.allclose(scores, want_scores, atol=1e-5 if rescore_with == "float32" else 5e-3)
    # Binary alone misorders some of them and reports sign-vector scores: rescoring matters.
    binary_ids, binary_scores = as_arrays(semantic_search(queries, binary, 5, corpus_precision="binary"))
    assert not np.array_equal(binary_ids, want_ids)
    assert not np.allclose(binary_scores, want_scores, atol=1e-2)


def test_rescoring_with_calibrated_int8_ranges():
    queries, corpus = near_duplicates(11)
    ranges = np.stack([corpus.min(0), corpus.max(0)])
    int8 = quantize_embeddings(corpus, "int8", ranges=ranges)
    ids, _ = as_arrays(
        semantic_search(queries, quantize_embeddings(corpus, "ubinary"), 5,
                        rescore_embeddings=int8, ranges=ranges)
    )
    assert np.array_equal(ids, brute_force(queries @ corpus.T, 5)[0])


def test_chunked_equals_unchunked_for_every_corpus_kind():
    corpus, queries = unit_rows(700, 64, 12), unit_rows(9, 64, 13)
    kinds = {
        "float": dict(corpus=corpus),
        "int8": dict(corpus=quantize_embeddings(corpus, "int8"), corpus_precision="int8"),
        "uint8": dict(corpus=quantize_embeddings(corpus, "uint8"), corpus_precision="uint8"),
        "binary+rescore": dict(corpus=quantize_embeddings(corpus, "binary"),
                               rescore_embeddings=corpus, rescore_multiplier=3),
    }
    for name, kw in kinds.items():
        c = kw.pop("corpus")
        whole = semantic_search(queries, c, 15, **kw)
        for chunk, qchunk in ((50, 2), (13, 9), (699, 1)):
            parts = semantic_search(queries, c, 15, corpus_chunk_size=chunk,
                                    query_chunk_size=qchunk, **kw)
            assert_same_hits(parts, whole, name)


def assert_same_hits(got: list, want: list, name: str, tol: float = 1e-6) -> None:
    """The same hits, best first. A float matmul's last bit depends on the shapes the BLAS
    sees (OpenBLAS; MLX's reference BLAS was shape-blind), so float scores may differ by an
    ulp, and hits whose scores tie within that may swap or trade places at the k-th."""
    assert len(got) == len(want), name
    for g, w in zip(got, want):
        gs, ws = ({h["corpus_id"]: h["score"] for h in hits} for hits in (g, w))
        assert len(g) == len(w) and all(abs(gs[i] - ws[i]) <= tol for i in gs.keys() & ws.keys()), name
        last = w[-1]["score"]
        assert all(abs(s - last) <= tol for i, s in {**gs, **ws}.items() if i not in gs.keys() & ws.keys()), name
        for hits in (g, w):
            assert all(a["score"] >= b["score"] for a, b in zip(hits, hits[1:])), name


@pytest.mark.reference
def test_end_to_end_with_a_model_matches_the_reference(tiny_eurobert_base):
    """encode + semantic_search on a tiny model equals brute force on the torch reference."""
    from builders.reference import reference_embeddings

    docs = ["Paris is the capital of France.", "Mars is red.", "The quick brown fox.",
            "Machine learning models", "Berlin and Rome", "Numbers 1 2 3"]
    questions = ["capital of France?", "red planet"]
    model = mlx_jina.load(tiny_eurobert_base, task="retrieval")
    hits = semantic_search(model.encode_query(questions), model.encode_document(docs), top_k=3)
    ref_d = reference_embeddings(tiny_eurobert_base, docs, task="retrieval", prompt="Document: ")
    ref_q = reference_embeddings(tiny_eurobert_base, questions, task="retrieval", prompt="Query: ")
    want_ids, want_scores = brute_force(ref_q @ ref_d.T, 3)
    ids, scores = as_arrays(hits)
    assert np.array_equal(ids, want_ids)
    assert np.allclose(scores, want_scores, atol=1e-4)


def test_errors_name_the_problem():
    corpus, queries = unit_rows(10, 64, 14), unit_rows(2, 64, 15)
    with pytest.raises(ValueError, match=r"needs \(n, 64\).*same truncate_dim"):
        semantic_search(queries, corpus[:, :32], 3)
    with pytest.raises(ValueError, match="binary or ubinary corpus"):
        semantic_search(quantize_embeddings(queries, "binary"), quantize_embeddings(corpus, "int8"),
                        3, corpus_precision="int8", query_precision="binary")
    with pytest.raises(ValueError, match="Rescoring needs float queries"):
        b = quantize_embeddings(corpus, "binary")
        semantic_search(quantize_embeddings(queries, "binary"), b, 3, rescore_embeddings=corpus,
                        query_precision="binary")
    with pytest.raises(ValueError, match=r"rescore_embeddings has shape \(9, 64\)"):
        semantic_search(queries, quantize_embeddings(corpus, "ubinary"), 3,
                        rescore_embeddings=corpus[:9])
    with pytest.raises(ValueError, match="top_k=0"):
        semantic_search(queries, corpus, 0)
    with pytest.raises(ValueError, match="corpus_precision='int4'"):
        semantic_search(queries, corpus, 3, corpus_precision="int4")
    assert default_ranges(64).shape == (2, 64)


def test_binary_rescoring_top10_agreement():
    """On 10,000 synthetic 1024-d unit vectors (tests/test_precision.py corpus_like), binary
    search alone finds under half of the float top 10; rescoring 4x candidates with int8
    (fixed ranges) finds >= 90%."""
    from test_precision import corpus_like

    x = corpus_like(10_200, 1024, seed=1024, outliers=False)
    queries, corpus = x[:200], x[200:]
    exact = np.argsort(-(queries @ corpus.T), axis=1)[:, :10]
    binary, int8 = quantize_embeddings(corpus, "ubinary"), quantize_embeddings(corpus, "int8")
    agreement = {}
    for multiplier in (1, 4):
        rescore = int8 if multiplier > 1 else None
        hits = semantic_search(queries, binary, 10, corpus_precision="ubinary",
                               rescore_embeddings=rescore, rescore_multiplier=multiplier)
        agreement[multiplier] = np.mean(
            [len(set(e) & {h["corpus_id"] for h in row}) / 10 for e, row in zip(exact, hits)]
        )
    print(f"\nbinary top-10 agreement: alone {agreement[1]:.3f}, "
          f"rescored x4 with int8 {agreement[4]:.3f}")
    assert agreement[1] < 0.6 and agreement[4] >= 0.9


# --- inputs that would give ids or scores that mean nothing ------------------------------


@pytest.mark.parametrize("as_mx", [False, True])
def test_nan_or_inf_rows_are_refused_with_the_count(as_mx):
    """One NaN corpus row made every query's top 3 come out as ids 0, 1, 2; an inf query
    scored NaN. Refuse such rows instead, naming the argument and the count."""
    corpus, queries = unit_rows(50, 64, 20), unit_rows(3, 64, 21)
    wrap = mx.array if as_mx else (lambda x: x)
    bad_corpus = corpus.copy()
    bad_corpus[[4, 9], 0] = [np.nan, np.inf]
    with pytest.raises(ValueError, match="corpus_embeddings has 2 of 50 rows with NaN or inf"):
        semantic_search(wrap(queries), wrap(bad_corpus), 3)
    with pytest.raises(ValueError, match="corpus_embeddings has 2 of 50 rows"):
        semantic_search(wrap(queries), wrap(bad_corpus.astype(np.float16)), 3)
    bad_queries = queries.copy()
    bad_queries[1, 5] = -np.inf
    with pytest.raises(ValueError, match="query_embeddings has 1 of 3 rows with NaN or inf"):
        semantic_search(wrap(bad_queries), wrap(corpus), 3)
    with pytest.raises(ValueError, match="rescore_embeddings has 2 of 50 rows"):
        semantic_search(wrap(queries), quantize_embeddings(corpus, "binary"), 3,
                        rescore_embeddings=wrap(bad_corpus))


def test_vectors_too_large_for_float32_are_refused():
    """float64 values past float32's range became inf (NaN scores); float32 rows whose norm
    overflows normalized to 0 (every score 0)."""
    corpus, queries = unit_rows(20, 64, 22), unit_rows(2, 64, 23)
    with pytest.raises(ValueError, match="corpus_embeddings has 20 of 20 rows"):
        semantic_search(queries, corpus.astype(np.float64) * 1e300, 3)
    with pytest.raises(ValueError, match="query_embeddings has 2 of 2 rows.*too large"):
        semantic_search(queries * 1e20, corpus, 3)


@pytest.mark.parametrize("corpus_precision, corpus", [
    ("int8", unit_rows(20, 64, 24)),                                         # float
    ("uint8", quantize_embeddings(unit_rows(20, 64, 24), "int8")),
    ("float32", quantize_embeddings(unit_rows(20, 64, 24), "int8")),
    ("binary", quantize_embeddings(unit_rows(20, 64, 24), "ubinary")),
])
def test_corpus_dtype_must_fit_corpus_precision(corpus_precision, corpus):
    """A float corpus read as int8 (or int8 as uint8, ubinary as binary) ranked silently
    by garbage scores."""
    with pytest.raises(ValueError, match=f"corpus_precision='{corpus_precision}' means"):
        semantic_search(unit_rows(2, 64, 25), corpus, 3, corpus_precision=corpus_precision)


@pytest.mark.parametrize("queries, problem", [
    (np.ones((2, 64), np.int64), "dtype int64"),             # was searched as floats
    (unit_rows(2, 64, 26) > 0, "dtype bool"),                # was searched as 0/1 floats
    (unit_rows(2, 64, 26).astype(np.complex64), "dtype complex64"),  # imaginary part dropped
    (unit_rows(2, 64, 26)[None], r"shape \(1, 2, 64\)"),
    (np.zeros((2, 0), np.float32), r"shape \(2, 0\)"),       # every score was 0
])
def test_queries_of_the_wrong_kind_are_refused(queries, problem):
    corpus = unit_rows(20, 64, 27)
    with pytest.raises(ValueError, match=f"query_embeddings has {problem}"):
        semantic_search(queries, corpus if queries.shape[-1] else corpus[:, :0], 3)


def test_ranges_are_checked_wherever_they_are_used():
    """Bad ranges gave NaN scores, a reversed ranking or an MLX broadcast error; ranges
    nothing used were silently ignored."""
    corpus, queries = unit_rows(40, 64, 28), unit_rows(2, 64, 29)
    int8, binary = quantize_embeddings(corpus, "int8"), quantize_embeddings(corpus, "binary")
    ranges = np.stack([np.full(64, -0.5), np.full(64, 0.5)])
    with pytest.raises(ValueError, match=r"ranges has shape \(2, 32\)"):
        semantic_search(queries, binary, 3, rescore_embeddings=int8, ranges=ranges[:, :32])
    with pytest.raises(ValueError, match="NaN or inf"):
        semantic_search(queries, int8, 3, ranges=np.full((2, 64), np.nan), corpus_precision="int8")
    with pytest.raises(ValueError, match="minimum above its maximum in 64"):
        semantic_search(queries, int8, 3, ranges=ranges[::-1], corpus_precision="int8")
    with pytest.raises(ValueError, match="ranges apply to int8/uint8 vectors"):
        semantic_search(queries, corpus, 3, ranges=ranges)
    with pytest.raises(ValueError, match="ranges apply to int8/uint8 vectors"):
        semantic_search(queries, binary, 3, rescore_embeddings=corpus, ranges=ranges)


def test_rescore_embeddings_are_checked_before_the_search():
    corpus, queries = unit_rows(30, 64, 30), unit_rows(2, 64, 31)
    binary = quantize_embeddings(corpus, "binary")
    for rows in (29, 31):
        with pytest.raises(ValueError, match=f"rescore_embeddings has shape \\({rows}, 64\\)"):
            semantic_search(queries, binary, 3, rescore_embeddings=unit_rows(rows, 64, 32))
    with pytest.raises(ValueError, match="rescore_embeddings is int16"):
        semantic_search(queries, binary, 3, rescore_embeddings=(corpus * 1000).astype(np.int16))


def test_bool_counts_are_refused():
    """top_k=True was taken as 1 by the check, then failed inside with a slicing error."""
    with pytest.raises(ValueError, match="top_k=True"):
        semantic_search(unit_rows(2, 64, 33), unit_rows(5, 64, 34), True)


def test_every_id_exists_and_every_score_is_finite():
    """Whatever kind of corpus, ids are real rows and scores are finite cosines."""
    corpus, queries = unit_rows(37, 40, 35), unit_rows(4, 40, 36)
    for precision in ("float32", "float16", "int8", "uint8", "binary", "ubinary"):
        c = quantize_embeddings(corpus, precision)
        for q in (queries, quantize_embeddings(queries, precision)):
            if q.dtype.kind != "f" and precision not in ("binary", "ubinary"):
                continue
            packed = precision if q.dtype.kind != "f" else None
            for row in semantic_search(q, c, 50, corpus_precision=precision, query_precision=packed):
                assert sorted(h["corpus_id"] for h in row) == list(range(37))
                assert all(-1.0001 <= h["score"] <= 1.0001 for h in row)


# --- precision is declared, never guessed from shapes ----------------------------------


def file_of(tmp_path, vectors: np.ndarray, precision: str, dims: int, ranges=None):
    """`vectors` saved and loaded back as an embedding file that records `precision`."""
    fp = mlx_jina.Fingerprint(model="m", revision=None, task="retrieval", prompt="Document: ",
                              dims=dims, precision=precision, version="0", identity=None)
    path = tmp_path / f"{precision}-{dims}.safetensors"
    return mlx_jina.load_embeddings(mlx_jina.save_embeddings(path, vectors, fp, ranges=ranges))


def test_truncated_float_queries_on_a_wider_binary_corpus_are_refused(tmp_path):
    """32-dim float queries against a 256-dim ubinary corpus (2000 x 32 bytes) were read as
    a 32-dim uint8 corpus: no error, top-1 accuracy 0.0. The array can't say which it is,
    so the search refuses it and names the argument that says so."""
    corpus = unit_rows(2000, 256, 40)
    ubinary = quantize_embeddings(corpus, "ubinary")
    queries = corpus[:50, :32]  # encoded with truncate_dim=32 by mistake
    with pytest.raises(ValueError) as info:
        semantic_search(queries, ubinary, 1)
    message = str(info.value)
    assert "uint8 with shape (2000, 32)" in message
    assert "32-dimensional uint8 vectors or 256-dimensional ubinary ones" in message
    assert "corpus_precision='uint8' or 'ubinary'" in message and "EmbeddingFile" in message
    # Named, the mistake is a dimension mismatch; the file form names both sizes.
    with pytest.raises(ValueError, match=r"ubinary corpus for 32-dimensional queries needs \(n, 4\)"):
        semantic_search(queries, ubinary, 1, corpus_precision="ubinary")
    with pytest.raises(ValueError, match="32-dimensional, but the corpus holds 256-dimensional ubinary"):
        semantic_search(queries, file_of(tmp_path, ubinary, "ubinary", 256), 1)
    # With the full queries, each finds its own row: top-1 accuracy 1.0.
    for corpus_arg, kw in ((ubinary, {"corpus_precision": "ubinary"}),
                           (file_of(tmp_path, ubinary, "ubinary", 256), {})):
        ids, _ = as_arrays(semantic_search(corpus[:50], corpus_arg, 1, **kw))
        assert np.array_equal(ids[:, 0], np.arange(50))


def test_int8_queries_are_never_scored_as_bits():
    """int8 queries against an int8 corpus were scored as bit-packed binary (a true hit
    scored 0.23 where float gives ~0.99). Integer queries need their precision named, and
    int8 codes are refused in favour of the float queries."""
    corpus = unit_rows(100, 64, 41)
    int8 = quantize_embeddings(corpus, "int8")
    q8 = quantize_embeddings(corpus[:3], "int8")
    with pytest.raises(ValueError, match=r"query_embeddings is int8 with shape \(3, 64\).*query_precision='binary'"):
        semantic_search(q8, int8, 3)
    with pytest.raises(ValueError, match="query_precision='int8': search with the float query vectors"):
        semantic_search(q8, int8, 3, corpus_precision="int8", query_precision="int8")
    # The float queries score the true hit as float does.
    hits = semantic_search(corpus[:3], int8, 1, corpus_precision="int8")
    assert [row[0]["corpus_id"] for row in hits] == [0, 1, 2]
    assert all(row[0]["score"] > 0.99 for row in hits)


def test_declared_precision_must_fit_the_queries():
    corpus, queries = unit_rows(20, 64, 42), unit_rows(2, 64, 43)
    binary = quantize_embeddings(corpus, "binary")
    with pytest.raises(ValueError, match="query_embeddings is float32, but query_precision='binary' means int8"):
        semantic_search(queries, binary, 3, query_precision="binary")
    with pytest.raises(ValueError, match="query_embeddings is uint8, but query_precision='binary'"):
        semantic_search(quantize_embeddings(queries, "ubinary"), binary, 3, query_precision="binary")
    with pytest.raises(ValueError, match="query_precision='int4'; choose one of"):
        semantic_search(queries, corpus, 3, query_precision="int4")
    # Binary queries declare the corpus too (Hamming search needs its own kind).
    q = quantize_embeddings(queries, "binary")
    assert semantic_search(q, binary, 3, query_precision="binary") == semantic_search(
        q, binary, 3, query_precision="binary", corpus_precision="binary")


def test_embedding_files_carry_their_precision_and_ranges(tmp_path):
    """An EmbeddingFile is accepted as it is: its precision, dims and int8 ranges come
    with it, and give the same hits as the arrays with everything named."""
    queries, corpus = near_duplicates(44)
    ranges = np.stack([corpus.min(0), corpus.max(0)])
    binary, int8 = quantize_embeddings(corpus, "binary"), quantize_embeddings(corpus, "int8", ranges=ranges)
    binary_file = file_of(tmp_path, binary, "binary", 256)
    int8_file = file_of(tmp_path, int8, "int8", 256, ranges=ranges)
    assert semantic_search(queries, int8_file, 5) == semantic_search(
        queries, int8, 5, corpus_precision="int8", ranges=ranges)
    by_file = semantic_search(queries, binary_file, 5, rescore_embeddings=int8_file)
    assert by_file == semantic_search(queries, binary, 5, corpus_precision="binary",
                                      rescore_embeddings=int8, ranges=ranges)
    assert np.array_equal(as_arrays(by_file)[0], brute_force(queries @ corpus.T, 5)[0])
    with pytest.raises(ValueError, match="embedding file of binary vectors, but corpus_precision='ubinary'"):
        semantic_search(queries, binary_file, 5, corpus_precision="ubinary")
    with pytest.raises(ValueError, match="ranges apply to int8/uint8 vectors.*embedding files carry their own"):
        semantic_search(queries, int8_file, 5, ranges=ranges)
    with pytest.raises(ValueError, match="rescore_embeddings is binary; pass float or int8/uint8"):
        semantic_search(queries, binary_file, 5, rescore_embeddings=binary_file)


@pytest.mark.parametrize("kind", ["binary", "ubinary", "int8", "uint8"])
def test_rescore_vectors_declare_the_corpus_dimension(kind):
    """The documented binary-with-rescoring call names no precision: the rescore vectors
    are the same rows, so their width is the corpus's dimension, and the corpus width
    tells codes from bits without looking at the queries."""
    queries, corpus = near_duplicates(45)
    first = quantize_embeddings(corpus, kind)
    implicit = semantic_search(queries, first, 5, rescore_embeddings=corpus)
    assert implicit == semantic_search(queries, first, 5, rescore_embeddings=corpus,
                                       corpus_precision=kind)
    assert np.array_equal(as_arrays(implicit)[0], brute_force(queries @ corpus.T, 5)[0])


@pytest.mark.parametrize("precision", ["int8", "uint8", "binary", "ubinary"])
def test_similarity_refuses_quantized_codes(qwen, precision):
    """model.similarity read int8/uint8 codes (or packed sign bits) as numbers and gave
    plausible but wrong scores: the same guess as a search without its precision."""
    emb = qwen.encode(["one text", "another text"])
    codes = quantize_embeddings(emb, precision)
    with pytest.raises(ValueError, match=f"similarity takes float vectors, not {codes.dtype} codes"):
        qwen.similarity(codes, codes)
    with pytest.raises(ValueError, match="similarity takes float vectors"):
        qwen.similarity_pairwise(emb, mx.array(codes))
    np.testing.assert_allclose(qwen.similarity(emb, emb), emb @ emb.T, atol=1e-6)
