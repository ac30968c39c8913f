"""No zero or non-finite vector leaves encode, and the error names the likely cause.

The bad models are tiny checkpoints with one tensor scaled or poisoned on disk, loaded as
users load them. Run: pytest tests/test_broken_vectors.py
"""

import shutil
from pathlib import Path

import mlx.core as mx
import numpy as np
import pytest

import mlx_jina
from mlx_jina.encoding.engine import BrokenVectorsError

DOWN = "layers.1.mlp.down_proj.weight"
TEXTS = ["the first text", "a second one"]


def edited(source: Path, tmp_path: Path, key: str, change) -> Path:
    """A copy of a model folder whose tensor `key` is `change(tensor)`."""
    folder = tmp_path / "model"
    shutil.copytree(source, folder)
    path = folder / "model.safetensors"
    tensors = dict(mx.load(str(path)))
    tensors[key] = change(tensors[key])
    mx.save_safetensors(str(path), tensors)
    return folder


@pytest.fixture
def huge_down_proj(tiny_qwen_merged, tmp_path) -> Path:
    """float32 weights, finite but huge: one down_proj times 1e30."""
    return edited(tiny_qwen_merged, tmp_path, DOWN, lambda w: w * 1e30)


@pytest.mark.parametrize(
    "options",
    [
        {},
        {"truncate_dim": 32},
        {"normalize_embeddings": False},
        {"precision": "float16"},
        {"precision": "int8"},
        {"precision": "ubinary"},
        {"precision": "binary", "truncate_dim": 32},
    ],
)
def test_huge_float32_weights_raise_instead_of_zero_vectors(huge_down_proj, options):
    """float32 weights x1e30 gave all-zero vectors (norm 0) and an all-zero similarity
    matrix: the final RMSNorm's mean square overflowed. Now encode raises, naming the
    inputs and the tensor, and does not send the user to another dtype."""
    model = mlx_jina.load(huge_down_proj)
    with pytest.raises(FloatingPointError) as info:
        model.encode(TEXTS, **options)
    message = str(info.value)
    assert "all-zero vectors for 2 of 2 inputs (inputs 0, 1" in message
    assert f"in {DOWN}" in message and "float32" in message
    assert "another dtype will not help" in message and "dtype='" not in message
    assert info.value.rows == [0, 1]


def test_huge_weights_raise_in_every_encode_form(huge_down_proj):
    """The check sits where every path's vectors are finished: queries, documents,
    streams, token embeddings and pre-tokenized ids."""
    model = mlx_jina.load(huge_down_proj)
    calls = [
        lambda: model.encode_query(TEXTS[0]),
        lambda: model.encode_document(TEXTS),
        lambda: list(model.encode_iter(iter(TEXTS), chunk_size=1)),
        lambda: model.encode(TEXTS, output_value="token_embeddings"),
        lambda: model.encode_ids([[30, 31, 32]]),
    ]
    for call in calls:
        with pytest.raises(BrokenVectorsError, match="all-zero vectors"):
            call()


def test_huge_weights_in_float16_name_the_overflow(huge_down_proj):
    """The same model in float16 holds inf after the cast: that is the one case where the
    error suggests another dtype."""
    model = mlx_jina.load(huge_down_proj, dtype="float16")
    with pytest.raises(FloatingPointError) as info:
        model.encode(TEXTS)
    message = str(info.value)
    assert f"Weights hold inf in float16: {DOWN}" in message
    assert "dtype='bfloat16' or 'float32'" in message


@pytest.mark.parametrize("dtype", [None, "bfloat16"])
def test_nan_weight_is_named_without_a_dtype_hint(tiny_qwen_merged, tmp_path, dtype):
    """A NaN in a float32 weight said "load it with dtype='bfloat16' or 'float32'" though
    the model was float32 already; the error now names the tensor and the fix."""
    key = "layers.0.self_attn.v_proj.weight"
    folder = edited(tiny_qwen_merged, tmp_path, key, lambda w: mx.where(mx.arange(w.shape[1]) == 3, np.nan, w))
    model = mlx_jina.load(folder, dtype=dtype)
    with pytest.raises(FloatingPointError) as info:
        model.encode(TEXTS)
    message = str(info.value)
    assert "inf/NaN vectors for 2 of 2 inputs" in message
    assert f"Weights hold NaN or inf: {key} (32 values)" in message  # column 3 of (32, 64)
    assert "damaged" in message and "dtype='" not in message


def test_huge_final_norm_still_gives_the_unit_vectors(tiny_qwen_merged, tmp_path):
    """A final norm weight x1e30 gives finite vectors whose squared norm overflows
    float32: normalizing gave zeros. They point the same way as the unscaled model's, so
    encode now returns those unit vectors."""
    folder = edited(tiny_qwen_merged, tmp_path, "norm.weight", lambda w: w * 1e30)
    expected = mlx_jina.load(tiny_qwen_merged).encode(TEXTS)
    got = mlx_jina.load(folder).encode(TEXTS)
    np.testing.assert_allclose(got, expected, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1, atol=1e-5)


def test_unnormalized_float16_overflow_is_refused(tiny_qwen_merged, tmp_path):
    """Finite float32 vectors over 65504, unnormalized, became inf in float16 output."""
    folder = edited(tiny_qwen_merged, tmp_path, "norm.weight", lambda w: w * 1e6)
    model = mlx_jina.load(folder)
    raw = model.encode(TEXTS, normalize_embeddings=False)
    assert np.isfinite(raw).all() and np.abs(raw).max() > 65504
    with pytest.raises(FloatingPointError, match="over float16's 65504.*normalize_embeddings=True"):
        model.encode(TEXTS, normalize_embeddings=False, precision="float16")


def test_healthy_model_is_unchanged(qwen):
    """The checks pass healthy vectors through: unit length in every precision."""
    emb = qwen.encode(TEXTS)
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1, atol=1e-5)
    assert qwen.encode(TEXTS, precision="float16").dtype == np.float16
