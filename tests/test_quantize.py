"""Quantized loading: 4/8-bit files (with or without a "quantization" block) and
quantizing float weights at load time.

Run: python -m pytest tests/test_quantize.py -q
"""

import json
import shutil
import warnings

import mlx.core as mx
import mlx.nn as nn
import numpy as np
import pytest

import mlx_jina
from _quantize_fixtures import (
    cosines,
    dequantize,
    dequantized_state,
    float_folder,
    model_tensors,
)
from builders.reference import reference_embeddings

TEXTS = [
    "Which planet is known as the Red Planet?",
    "Mars is often called the Red Planet.",
    "Der schnelle braune Fuchs springt über den faulen Hund.",
    "机器学习 模型 文本 向量",
    "Paris is the capital and largest city of France. " * 6,
]
PROMPT = "Document: "


def quantize_file_like_jina(src, dst, bits: int, group_size: int) -> dict:
    """Write a per-task -mlx folder holding only model-{bits}bit.safetensors, quantized with
    plain mx.quantize (every Linear and the embedding whose input size allows), keys
    prefixed with "model.", and no "quantization" block in config.json."""
    dst.mkdir()
    tensors = mx.load(str(src / "model.safetensors"))
    out = {}
    for key, w in tensors.items():
        quantizable = key.endswith("proj.weight") or key.endswith("embed_tokens.weight")
        if quantizable and w.shape[1] % group_size == 0:
            path = key.removesuffix(".weight")
            out[key], out[f"{path}.scales"], out[f"{path}.biases"] = mx.quantize(
                w, group_size=group_size, bits=bits
            )
        else:
            out[key] = w
    assert all(k.startswith("model.") for k in out)
    mx.save_safetensors(str(dst / f"model-{bits}bit.safetensors"), out)
    config = json.loads((src / "config.json").read_text())
    assert "quantization" not in config and "quantization_config" not in config
    shutil.copyfile(src / "config.json", dst / "config.json")
    shutil.copyfile(src / "tokenizer.json", dst / "tokenizer.json")
    return {k: np.array(v) for k, v in out.items()}


@pytest.mark.parametrize("bits", [1, 2, 3, 4, 5, 6, 8])
def test_numpy_dequantize_matches_mlx(bits):
    """The test-side reference decodes MLX's packing exactly (guards the reference itself)."""
    w = mx.random.normal((8, 128), key=mx.random.key(bits))
    packed, scales, biases = mx.quantize(w, group_size=32, bits=bits)
    want = np.array(mx.dequantize(packed, scales, biases, group_size=32, bits=bits))
    got = dequantize(np.array(packed), np.array(scales), np.array(biases), bits, 32)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-6)
    # and the decoded weights are within one quantization step of the input
    step = np.repeat(np.abs(np.array(scales)), 32, axis=1)
    assert (np.abs(got - np.array(w)) <= step + 1e-6).all()


@pytest.mark.reference
@pytest.mark.parametrize(
    "fixture,bits,group_size",
    [("tiny_qwen_mlx_task", 4, 64), ("tiny_eurobert_mlx_task", 8, 32)],
)
def test_published_layout_without_quantization_block(
    request, tmp_path, fixture, bits, group_size
):
    """A -mlx folder with model.-prefixed quantized keys and no quantization block loads,
    with bits and group size read from the tensor shapes, and computes what its
    dequantized weights compute."""
    src = request.getfixturevalue(fixture)
    dst = tmp_path / "published"
    tensors = quantize_file_like_jina(src, dst, bits, group_size)

    model = mlx_jina.load(dst, dtype="float32")
    layers = dict(model.model.named_modules())
    assert isinstance(layers["embed_tokens"], nn.QuantizedEmbedding)
    for path in ("layers.0.self_attn.q_proj", "layers.1.mlp.up_proj", "embed_tokens"):
        assert (layers[path].bits, layers[path].group_size) == (bits, group_size)
    # intermediate size 96 is a multiple of 32 but not of 64
    down = layers["layers.0.mlp.down_proj"]
    assert isinstance(down, nn.QuantizedLinear) == (96 % group_size == 0)
    assert mlx_jina.load(dst, bits=bits).model.layers[0].self_attn.q_proj.bits == bits

    emb = model.encode(TEXTS, prompt=PROMPT)
    folder = float_folder(
        tmp_path / "dequantized", dequantized_state(tensors, bits, group_size), src
    )
    ref = reference_embeddings(folder, TEXTS, task=None, prompt=PROMPT)
    assert cosines(emb, ref).min() >= 0.9999


@pytest.mark.reference
def test_quantize_at_load_matches_dequantized_reference(tiny_qwen_base, tmp_path):
    """load(base, bits=4) merges the adapter, then quantizes every Linear and the embedding;
    layers whose input size is not a multiple of 64 stay float, with a warning."""
    with pytest.warns(UserWarning, match="2 layers stay float.*layers.0.mlp.down_proj"):
        model = mlx_jina.load(tiny_qwen_base, task="retrieval", bits=4)
    m = model.model
    assert (
        isinstance(m.embed_tokens, nn.QuantizedEmbedding) and m.embed_tokens.bits == 4
    )
    assert isinstance(m.layers[0].self_attn.o_proj, nn.QuantizedLinear)
    assert type(m.layers[0].mlp.down_proj) is nn.Linear  # input 96 % 64 != 0

    emb = model.encode(TEXTS, prompt=PROMPT)
    state = dequantized_state(model_tensors(m), 4, 64)
    ref = reference_embeddings(
        float_folder(tmp_path / "deq", state, tiny_qwen_base),
        TEXTS,
        task=None,
        prompt=PROMPT,
    )
    assert cosines(emb, ref).min() >= 0.9999
    # The same numbers without the quantization: float vs 4-bit is a real, visible change.
    exact = reference_embeddings(tiny_qwen_base, TEXTS, task="retrieval", prompt=PROMPT)
    assert 0.8 < cosines(emb, exact).min() < 0.9999


@pytest.mark.reference
def test_eight_bit_at_load_is_close_to_float(tiny_eurobert_base):
    """8-bit weights stay within cosine 0.998 of the float32 reference."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = mlx_jina.load(tiny_eurobert_base, task="classification", bits=8)
    emb = model.encode(TEXTS, prompt=PROMPT)
    ref = reference_embeddings(
        tiny_eurobert_base, TEXTS, task="classification", prompt=PROMPT
    )
    assert cosines(emb, ref).min() >= 0.998


def test_bad_bits_and_group_sizes(tiny_qwen_base):
    """bits and group size must be ones MLX's mode takes and divide the hidden size."""
    with pytest.raises(ValueError, match=r"bits=7 with mode='affine'; affine takes bits 1, 2, 3, 4, 5, 6, 8"):
        mlx_jina.load(tiny_qwen_base, task="retrieval", bits=7)
    with pytest.raises(ValueError, match=r"group_size=48.*32, 64, 128"):
        mlx_jina.load(tiny_qwen_base, task="retrieval", bits=4, group_size=48)
    with pytest.raises(
        ValueError, match=r"group_size=128 does not divide the hidden size 64"
    ):
        mlx_jina.load(tiny_qwen_base, task="retrieval", bits=4, group_size=128)


@pytest.fixture
def four_bit_folder(tiny_qwen_mlx_task, tmp_path):
    quantize_file_like_jina(tiny_qwen_mlx_task, tmp_path / "q4", 4, 64)
    return tmp_path / "q4"


def test_corrupt_or_missing_weight_files_are_named(four_bit_folder):
    """A broken or absent weight file raises an error that names the file."""
    weights = four_bit_folder / "model-4bit.safetensors"
    with pytest.raises(
        FileNotFoundError, match=r"No model-8bit\.safetensors.*model-4bit\.safetensors"
    ):
        mlx_jina.load(four_bit_folder, bits=8)
    weights.write_bytes(weights.read_bytes()[:1000])  # truncated download
    with pytest.raises(ValueError, match=r"model-4bit\.safetensors.*corrupt"):
        mlx_jina.load(four_bit_folder, bits=4)
    weights.unlink()
    with pytest.raises(FileNotFoundError, match=r"model\*\.safetensors"):
        mlx_jina.load(four_bit_folder)


def test_quantization_block_must_match_the_tensors(four_bit_folder):
    """A config block that disagrees with the tensor shapes is refused, not trusted."""
    config = json.loads((four_bit_folder / "config.json").read_text())
    config["quantization"] = {"group_size": 64, "bits": 8, "mode": "affine"}
    (four_bit_folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(
        ValueError, match=r"says bits=8, group_size=64, mode='affine'; the tensors have bits=4"
    ):
        mlx_jina.load(four_bit_folder)


def test_requested_bits_must_match_a_quantized_file(four_bit_folder):
    """A quantized file under the float name is not silently used at other bits."""
    (four_bit_folder / "model-4bit.safetensors").rename(
        four_bit_folder / "model.safetensors"
    )
    assert mlx_jina.load(four_bit_folder).model.layers[0].mlp.up_proj.bits == 4
    with pytest.raises(ValueError, match=r"holds affine 4-bit weights, not affine 8-bit"):
        mlx_jina.load(four_bit_folder, bits=8)
