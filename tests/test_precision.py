"""Output precisions (mlx_jina/precision.py and encode(precision=...)).

Run: python -m pytest tests/test_precision.py -q   (add -s to see the measured agreements)
"""

import mlx.core as mx
import numpy as np
import pytest

import mlx_jina
from mlx_jina.retrieval.precision import (
    PRECISIONS,
    bytes_per_vector,
    default_ranges,
    dequantize_embeddings,
    quantize_embeddings,
)

TEXTS = ["Mars is the red planet.", "Paris is the capital of France.", "hi", "quick brown fox"]


def unit_rows(n: int, dim: int, seed: int = 0) -> np.ndarray:
    x = np.random.default_rng(seed).normal(size=(n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


@pytest.mark.parametrize("dim", [32, 64, 40, 1024])
def test_binary_is_packbits_of_signs(dim):
    """binary/ubinary are sentence-transformers' definitions, bit for bit."""
    emb = unit_rows(9, dim)
    emb[0, :5] = 0.0  # exactly zero is not > 0
    packed = np.packbits(emb > 0, axis=-1)
    ubinary = quantize_embeddings(emb, "ubinary")
    binary = quantize_embeddings(emb, "binary")
    assert ubinary.dtype == np.uint8 and np.array_equal(ubinary, packed)
    assert binary.dtype == np.int8
    assert np.array_equal(binary.astype(np.int16), packed.astype(np.int16) - 128)
    # One vector packs the same as its row in a batch.
    assert np.array_equal(quantize_embeddings(emb[3], "ubinary"), packed[3])


def test_binary_known_bytes():
    """A hand-checked vector: signs + - + + - - - + -> 0b10110001 = 177; binary 49."""
    v = np.array([0.3, -0.1, 0.2, 0.5, -0.4, -0.2, -0.7, 0.1], dtype=np.float32)
    assert quantize_embeddings(v, "ubinary").tolist() == [177]
    assert quantize_embeddings(v, "binary").tolist() == [49]


def test_int8_uint8_formula_by_hand():
    """uint8 = clip(floor((x - min) / ((max - min) / 255)), 0, 255); int8 = uint8 - 128."""
    x = np.array([[0.0, 0.999, -1.0, 0.5, 2.0, -3.0]], dtype=np.float32)
    ranges = np.array([[-1.0] * 6, [1.0] * 6], dtype=np.float32)
    # (x + 1) * 127.5 = 127.5, 254.87, 0, 191.25, 382.5 (clipped), -255 (clipped)
    assert quantize_embeddings(x, "uint8", ranges=ranges).tolist() == [[127, 254, 0, 191, 255, 0]]
    assert quantize_embeddings(x, "int8", ranges=ranges).tolist() == [[-1, 126, -128, 63, 127, -128]]


@pytest.mark.parametrize("precision", ["int8", "uint8"])
def test_scalar_matches_reference_formula(precision):
    """With ranges or calibration vectors, int8/uint8 follow sentence-transformers exactly."""
    emb, calib = unit_rows(50, 64, 1), unit_rows(200, 64, 2)
    starts, stops = calib.min(0), calib.max(0)
    levels = np.clip(np.floor((emb - starts) / ((stops - starts) / 255)), 0, 255)
    expected = levels.astype(np.uint8) if precision == "uint8" else (levels - 128).astype(np.int8)
    got = quantize_embeddings(emb, precision, calibration_embeddings=calib)
    assert got.dtype == expected.dtype and np.array_equal(got, expected)
    ranges = np.stack([starts, stops])
    assert np.array_equal(quantize_embeddings(emb, precision, ranges=ranges), expected)


def test_default_ranges_are_fixed_and_symmetric():
    """Default ranges depend only on dim: +/- 12 / sqrt(dim), at most 1."""
    assert np.allclose(default_ranges(1024), [[-0.375] * 1024, [0.375] * 1024])
    assert np.allclose(default_ranges(64), [[-1.0] * 64, [1.0] * 64])
    emb = unit_rows(20, 1024)
    assert np.array_equal(
        quantize_embeddings(emb, "int8"), quantize_embeddings(emb, "int8", ranges=default_ranges(1024))
    )


@pytest.mark.parametrize("precision", ["int8", "uint8"])
def test_dequantize_is_within_half_a_step(precision):
    """dequantize(quantize(x)) lands within half a bin of x for in-range values."""
    emb = unit_rows(30, 256, 3)
    ranges = default_ranges(256)
    step = (ranges[1, 0] - ranges[0, 0]) / 255
    back = dequantize_embeddings(quantize_embeddings(emb, precision), precision)
    assert np.abs(back - emb).max() <= step / 2 + 1e-6


@pytest.mark.parametrize("precision", ["binary", "ubinary"])
def test_dequantize_binary_gives_signs(precision):
    emb = unit_rows(5, 40, 4)
    back = dequantize_embeddings(quantize_embeddings(emb, precision), precision, dim=40)
    assert np.array_equal(back, np.where(emb > 0, 1.0, -1.0))


def test_bytes_per_vector():
    """The table in docs/retrieval-toolkit.md: bytes for one 1024-d vector."""
    sizes = {p: bytes_per_vector(1024, p) for p in PRECISIONS}
    assert sizes == {"float32": 4096, "float16": 2048, "int8": 1024, "uint8": 1024,
                     "binary": 128, "ubinary": 128}


def test_bad_inputs_name_the_fix():
    with pytest.raises(ValueError, match="choose one of float32, float16, int8"):
        quantize_embeddings(unit_rows(2, 32), "int4")
    with pytest.raises(ValueError, match="must be float"):
        quantize_embeddings(np.ones((2, 32), dtype=np.int8), "binary")
    with pytest.raises(ValueError, match=r"needs \(2, 32\)|need \(2, 32\)"):
        quantize_embeddings(unit_rows(2, 32), "int8", ranges=np.zeros((2, 16)))


# --- through encode -------------------------------------------------------------------

DTYPES = {"float32": np.float32, "float16": np.float16, "int8": np.int8, "uint8": np.uint8,
          "binary": np.int8, "ubinary": np.uint8}


@pytest.mark.parametrize("precision", PRECISIONS)
@pytest.mark.parametrize("truncate_dim", [None, 32, 40])
def test_encode_shapes_and_dtypes(qwen, precision, truncate_dim):
    """Every precision, with and without truncate_dim, for a list and a single string."""
    dim = truncate_dim or qwen.dim
    width = (dim + 7) // 8 if precision.endswith("binary") else dim
    batch = qwen.encode(TEXTS, precision=precision, truncate_dim=truncate_dim)
    one = qwen.encode(TEXTS[0], precision=precision, truncate_dim=truncate_dim)
    assert batch.shape == (len(TEXTS), width) and batch.dtype == DTYPES[precision]
    assert one.shape == (width,) and one.dtype == DTYPES[precision]
    as_mx = qwen.encode(TEXTS, precision=precision, truncate_dim=truncate_dim, convert_to_numpy=False)
    assert isinstance(as_mx, mx.array) and np.array_equal(np.array(as_mx), batch)


@pytest.mark.reference
@pytest.mark.parametrize("truncate_dim", [None, 32])
def test_encode_quantizes_the_normalized_cut_vector(qwen, truncate_dim, tiny_qwen_base):
    """precision applies after truncate_dim and normalization, with the published formulas."""
    from builders.reference import reference_embeddings

    ref = reference_embeddings(
        tiny_qwen_base, TEXTS, task="retrieval", prompt="Document: ", truncate_dim=truncate_dim
    )
    floats = qwen.encode(TEXTS, truncate_dim=truncate_dim)
    assert np.allclose(floats, ref, atol=1e-4)  # independent torch reference
    packed = np.packbits(floats > 0, axis=-1)
    assert np.array_equal(qwen.encode(TEXTS, precision="ubinary", truncate_dim=truncate_dim), packed)
    assert np.array_equal(
        qwen.encode(TEXTS, precision="binary", truncate_dim=truncate_dim).astype(np.int16),
        packed.astype(np.int16) - 128,
    )
    ranges = default_ranges(floats.shape[1])
    levels = np.clip(np.floor((floats - ranges[0]) / ((ranges[1] - ranges[0]) / 255)), 0, 255)
    assert np.array_equal(
        qwen.encode(TEXTS, precision="int8", truncate_dim=truncate_dim), (levels - 128).astype(np.int8)
    )


def test_int8_single_query_equals_its_row_in_a_batch(qwen):
    """One query quantizes alone (sentence-transformers' batch ranges can't) and the same
    as in any batch, so a query and a stored corpus share one scale."""
    one = qwen.encode_query("Which planet is red?", precision="int8")
    batch = qwen.encode_query(["a", "Which planet is red?", "bb"], precision="int8")
    assert one.shape == (qwen.dim,) and one.dtype == np.int8
    assert np.array_equal(one, batch[1])
    assert len(np.unique(one)) > 10  # really quantized values, not a constant


# --- top-10 agreement of the int8 scheme ------------------------------------------------


def corpus_like(n: int, dim: int, seed: int, outliers: bool) -> np.ndarray:
    """Synthetic unit vectors with structure real embeddings have: 200 topics, a shared
    mean direction, unequal per-dimension scales, optionally 4 dimensions 6x larger."""
    rng = np.random.default_rng(seed)
    scales = rng.lognormal(0, 0.5, dim)
    if outliers:
        scales[rng.choice(dim, 4, replace=False)] *= 6
    mean = rng.normal(0, 1, dim) * scales * 0.8
    topics = rng.normal(0, 1, (200, dim)) * scales
    x = topics[rng.integers(0, 200, n)] + rng.normal(0, 1, (n, dim)) * scales * 0.7 + mean
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def top10_agreement(queries: np.ndarray, corpus: np.ndarray, approx: np.ndarray) -> float:
    approx = approx / np.linalg.norm(approx, axis=1, keepdims=True)
    exact = np.argsort(-(queries @ corpus.T), axis=1)[:, :10]
    found = np.argsort(-(queries @ approx.T), axis=1)[:, :10]
    return float(np.mean([len(set(a) & set(b)) / 10 for a, b in zip(exact, found)]))


@pytest.mark.parametrize("dim", [1024, 256])
@pytest.mark.parametrize("outliers", [False, True])
def test_int8_top10_agreement(dim, outliers):
    """Float queries against the int8 corpus find >= 90% of the float top 10 with the fixed
    ranges, and >= 97% with ranges calibrated on the corpus (10,000 x dim vectors, 200 queries)."""
    x = corpus_like(10_200, dim, seed=dim, outliers=outliers)
    queries, corpus = x[:200], x[200:]
    fixed = dequantize_embeddings(quantize_embeddings(corpus, "int8"), "int8")
    ranges = np.stack([corpus.min(0), corpus.max(0)])
    calibrated = dequantize_embeddings(
        quantize_embeddings(corpus, "int8", ranges=ranges), "int8", ranges=ranges
    )
    fixed_agreement = top10_agreement(queries, corpus, fixed)
    calibrated_agreement = top10_agreement(queries, corpus, calibrated)
    print(f"\nint8 top-10 agreement, dim {dim}, outliers {outliers}: fixed ranges "
          f"{fixed_agreement:.3f}, calibrated {calibrated_agreement:.3f}")
    assert fixed_agreement >= 0.90
    assert calibrated_agreement >= 0.97


# --- values that have no code ----------------------------------------------------------


@pytest.mark.parametrize("precision", ["int8", "uint8", "binary", "ubinary"])
def test_nan_or_inf_vectors_have_no_quantized_code(precision):
    """NaN > 0 is False and NaN casts to an arbitrary integer: a NaN vector became a valid-
    looking code. Refuse it; float outputs keep the NaN visible."""
    emb = unit_rows(4, 32)
    emb[2, 7] = np.nan
    with pytest.raises(ValueError, match=f"1 vector.*NaN or inf.*no {precision} code"):
        quantize_embeddings(emb, precision)
    assert np.isnan(quantize_embeddings(emb, "float16")[2, 7])


@pytest.mark.parametrize("ranges, problem", [
    (np.full((2, 32), np.nan), "NaN or inf"),
    (np.stack([np.full(32, 0.5), np.full(32, -0.5)]), "minimum above its maximum in 32"),
    (np.full((2, 32), 1e39), "NaN or inf"),  # inf once float32
])
def test_ranges_must_be_finite_and_ordered(ranges, problem):
    """Flipped or NaN ranges quantized to garbage (or NaN) without a word."""
    with pytest.raises(ValueError, match=problem):
        quantize_embeddings(unit_rows(2, 32), "int8", ranges=ranges)
    with pytest.raises(ValueError, match=problem):
        dequantize_embeddings(np.zeros((2, 32), np.int8), "int8", ranges=ranges)


def test_calibration_with_nan_is_refused():
    calibration = unit_rows(10, 32)
    calibration[3, 3] = np.nan
    with pytest.raises(ValueError, match="NaN or inf"):
        quantize_embeddings(unit_rows(2, 32), "uint8", calibration_embeddings=calibration)


def test_storage_is_the_one_layout_rule():
    """encode()'s outputs, files and search all use storage(): dtype and row width."""
    from mlx_jina.retrieval.precision import storage

    for precision in PRECISIONS:
        for dim in (1, 32, 36, 1024):
            out = quantize_embeddings(unit_rows(3, dim), precision)
            assert storage(dim, precision) == (out.dtype, out.shape[1])
            assert bytes_per_vector(dim, precision) == out[0].nbytes
