"""Every MLX quantization mode, bit width and group size, and the mixed-precision recipes:
the table of valid choices is MLX's own, each choice converts and loads back with the
vectors of quantizing at load, quantized inference computes its dequantized weights, and
a bad combination is refused by name before any file is read or written.

Run: python -m pytest tests/test_quantize_modes.py -q
"""

import json
import warnings

import mlx.core as mx
import mlx.nn as nn
import numpy as np
import pytest

import mlx_jina
from _quantize_fixtures import (
    cosines,
    dequantize_fp,
    dequantized_state,
    float_folder,
    model_tensors,
)
from builders.reference import reference_embeddings
from mlx_jina.checkpoint.quantization import MODES, RECIPES, quantized_layers
from mlx_jina.conversion.options import main

TEXTS = [
    "Which planet is known as the Red Planet?",
    "Der schnelle braune Fuchs springt über den faulen Hund.",
    "机器学习 模型 文本 向量",
    "Paris is the capital and largest city of France. " * 6,
]
PROMPT = "Document: "
# Every choice the tiny models (hidden size 64) can take: group 128 does not divide 64,
# so affine group 128 is covered by the table test only.
CHOICES = [("affine", b, g) for b in MODES["affine"].bits for g in (32, 64)] + [
    (m, MODES[m].default_bits, MODES[m].default_group_size) for m in ("mxfp4", "mxfp8", "nvfp4")
]


def runs_in_mlx(mode: str, bits: int, group_size: int) -> int | None:
    """How many arrays mx.quantize returns, if MLX quantizes and multiplies with this choice."""
    w = mx.random.normal((8, 256), key=mx.random.key(0))
    try:
        out = mx.quantize(w, group_size=group_size, bits=bits, mode=mode)
        y = mx.quantized_matmul(
            mx.ones((2, 256)), *out, transpose=True, group_size=group_size, bits=bits, mode=mode
        )
        mx.eval(y)
    except (ValueError, RuntimeError):
        return None
    return len(out)


def test_mode_table_is_what_mlx_runs():
    """MODES lists exactly the (mode, bits, group size) that MLX quantizes and multiplies
    with, and the affine mode alone has biases."""
    for mode, spec in MODES.items():
        for bits in range(1, 9):
            for group_size in (8, 16, 32, 64, 128, 256):
                outputs = runs_in_mlx(mode, bits, group_size)
                valid = bits in spec.bits and group_size in spec.group_sizes
                assert (outputs is not None) == valid, (mode, bits, group_size)
                if valid:
                    assert outputs == (3 if spec.biases else 2)
    assert runs_in_mlx("int4", 4, 64) is None and "int4" not in MODES


def test_numpy_fp_decoder_matches_mlx():
    """The test-side mxfp4/mxfp8/nvfp4 decoder agrees with mx.dequantize (guards the
    reference the other tests use)."""
    w = mx.random.normal((8, 128), key=mx.random.key(1)) * 3
    for mode in ("mxfp4", "mxfp8", "nvfp4"):
        g = MODES[mode].default_group_size
        packed, scales = mx.quantize(w, group_size=g, mode=mode)
        want = np.array(mx.dequantize(packed, scales, group_size=g, mode=mode).astype(mx.float32))
        got = dequantize_fp(np.array(packed), np.array(scales), mode, g)
        np.testing.assert_allclose(got, want, rtol=0, atol=0)
        assert np.abs(got - np.array(w)).max() < 3  # close to the input, not garbage


def quiet_load(*args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # layers that stay float; the speed note
        return mlx_jina.load(*args, **kwargs)


@pytest.fixture(scope="module")
def converted(tiny_qwen_base, tmp_path_factory):
    """choice -> folder written by convert (the retrieval task merged, then quantized)."""
    root = tmp_path_factory.mktemp("modes")
    out = {}
    for mode, bits, group_size in CHOICES:
        dst = root / f"{mode}-{bits}-{group_size}"
        mlx_jina.convert(
            str(tiny_qwen_base), str(dst), task="retrieval",
            q_mode=mode, q_bits=bits, q_group_size=group_size,
        )
        out[mode, bits, group_size] = dst
    return out


@pytest.mark.parametrize("choice", CHOICES, ids=lambda c: "-".join(map(str, c)))
def test_every_choice_converts_and_loads_back_equal(converted, tiny_qwen_base, choice):
    """A stored file of every choice loads back as that choice, with the vectors of
    quantizing the float weights at load the same way, and its config block says it."""
    mode, bits, group_size = choice
    folder = converted[choice]
    config = json.loads((folder / "config.json").read_text())
    assert config["quantization"] == {"group_size": group_size, "bits": bits, "mode": mode}
    stored = quiet_load(folder, dtype="float32")
    at_load = quiet_load(
        tiny_qwen_base, task="retrieval", dtype="float32", mode=mode, bits=bits, group_size=group_size
    )
    layers = quantized_layers(stored.model)
    assert set(layers.values()) == {(bits, group_size, mode)}
    assert layers == quantized_layers(at_load.model)
    assert isinstance(stored.model.embed_tokens, nn.QuantizedEmbedding)
    np.testing.assert_array_equal(
        stored.encode(TEXTS, prompt=PROMPT), at_load.encode(TEXTS, prompt=PROMPT)
    )
    # Without the block, the shapes (and the missing biases) still say what it is.
    del config["quantization"], config["quantization_config"]
    (folder / "config.json").write_text(json.dumps(config))
    assert quantized_layers(quiet_load(folder).model) == layers


@pytest.mark.reference
@pytest.mark.parametrize(
    "mode, bits",
    [("mxfp4", 4), ("mxfp8", 8), ("nvfp4", 4), ("affine", 2), ("affine", 3), ("affine", 5), ("affine", 6)],
)
def test_modes_compute_their_dequantized_weights(tiny_qwen_base, tmp_path, mode, bits):
    """Quantized inference in each mode (and the affine widths whose values straddle
    words) equals the float model built from the weights decoded in numpy (transformers
    reference), and differs from float."""
    model = quiet_load(tiny_qwen_base, task="retrieval", dtype="float32", mode=mode, bits=bits)
    emb = model.encode(TEXTS, prompt=PROMPT)
    state = dequantized_state(model_tensors(model.model), None, 0, layers=quantized_layers(model.model))
    deq = float_folder(tmp_path / "deq", state, tiny_qwen_base)
    ref = reference_embeddings(deq, TEXTS, task=None, prompt=PROMPT)
    assert cosines(emb, ref).min() >= 0.9999
    exact = reference_embeddings(tiny_qwen_base, TEXTS, task="retrieval", prompt=PROMPT)
    assert cosines(emb, exact).min() < 0.9999


@pytest.mark.reference
def test_recipe_writes_per_layer_overrides_and_loads_back(tiny_qwen_base, tmp_path):
    """mixed-4-6: the embedding and the first and last layers' v_proj and down_proj at
    6 bits, written as per-layer overrides under their module paths; the folder loads
    back with those bits, equal to the recipe applied at load and to its dequantized
    weights in numpy."""
    dst = tmp_path / "mixed"
    mlx_jina.convert(str(tiny_qwen_base), str(dst), task="retrieval", q_recipe="mixed-4-6")
    block = json.loads((dst / "config.json").read_text())["quantization"]
    # tiny: 2 layers; down_proj's input 96 is no multiple of 64, so it stays float
    six = {"group_size": 64, "bits": 6, "mode": "affine"}
    assert block == {
        "group_size": 64, "bits": 4, "mode": "affine",
        "model.embed_tokens": six,
        "model.layers.0.self_attn.v_proj": six,
        "model.layers.1.self_attn.v_proj": six,
    }
    stored = quiet_load(dst, dtype="float32")
    layers = quantized_layers(stored.model)
    assert layers["layers.0.self_attn.q_proj"] == (4, 64, "affine")
    assert layers["layers.1.self_attn.v_proj"] == (6, 64, "affine")
    at_load = quiet_load(tiny_qwen_base, task="retrieval", dtype="float32", recipe="mixed-4-6")
    assert quantized_layers(at_load.model) == layers
    emb = stored.encode(TEXTS, prompt=PROMPT)
    np.testing.assert_array_equal(emb, at_load.encode(TEXTS, prompt=PROMPT))
    state = dequantized_state(model_tensors(stored.model), None, 0, layers=layers)
    ref = reference_embeddings(float_folder(tmp_path / "deq", state, tiny_qwen_base), TEXTS, task=None, prompt=PROMPT)
    assert cosines(emb, ref).min() >= 0.9999
    # A per-layer override that contradicts the tensors is refused.
    config = json.loads((dst / "config.json").read_text())
    config["quantization"]["model.embed_tokens"]["bits"] = 8
    (dst / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match=r"embed_tokens: the config's quantization block says bits=8"):
        quiet_load(dst)


def test_stated_mode_must_match_the_tensors(converted):
    """A block saying nvfp4 over mxfp4 tensors (same bits, no biases) is refused."""
    folder = converted["mxfp4", 4, 32]
    config = json.loads((folder / "config.json").read_text())
    config["quantization"] = {"group_size": 32, "bits": 4, "mode": "nvfp4"}
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match=r"mode='nvfp4'; the tensors have bits=4, group_size=32, mode mxfp4"):
        quiet_load(folder)
    config["quantization"]["mode"] = "fp3"
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match=r"mode 'fp3'; MLX has affine, mxfp4, mxfp8, nvfp4"):
        quiet_load(folder)


@pytest.mark.parametrize(
    "kwargs, words",
    [
        (dict(mode="mxfp4", bits=8), r"bits=8 with mode='mxfp4'; mxfp4 takes bits 4 \(affine takes"),
        (dict(mode="nvfp4", group_size=32), r"group_size=32 with mode='nvfp4'.* takes 16"),
        (dict(mode="mxfp8", group_size=64), r"group_size=64 with mode='mxfp8'.* takes 32"),
        (dict(mode="int4"), r"mode='int4'; choose one of affine, mxfp4, mxfp8, nvfp4"),
        (dict(bits=7), r"bits=7 with mode='affine'; affine takes bits 1, 2, 3, 4, 5, 6, 8"),
        (dict(bits=4, group_size=16), r"group_size=16 with mode='affine'.*32, 64, 128"),
        (dict(recipe="mixed-9"), r"recipe='mixed-9'; choose one of mixed-3-6, mixed-4-6"),
        (dict(recipe="mixed-4-6", mode="mxfp4"), r"recipe='mixed-4-6' sets its own bits.*drop mode='mxfp4'"),
        (dict(recipe="mixed-4-6", bits=8), r"recipe='mixed-4-6' sets its own bits.*drop bits=8"),
    ],
)
def test_bad_combinations_are_refused_before_any_file_is_read(tmp_path, kwargs, words):
    """The source does not exist: the error is about the combination, so nothing was read;
    and nothing is written."""
    missing = str(tmp_path / "no-such-model")
    with pytest.raises(ValueError, match=words):
        mlx_jina.load(missing, **kwargs)
    q = {f"q_{k}": v for k, v in kwargs.items()}
    with pytest.raises(ValueError, match=words):
        mlx_jina.convert(missing, str(tmp_path / "out"), task="retrieval", **q)
    assert list(tmp_path.iterdir()) == []


def test_group_size_alone_quantizes_nothing_and_says_so(tmp_path):
    with pytest.raises(ValueError, match=r"group_size=32 without bits, mode or recipe"):
        mlx_jina.load(tmp_path / "missing", group_size=32)


def test_command_line_mode_flags(tiny_qwen_base, tmp_path, capsys):
    """--q-mode alone implies -q and writes that mode; a bad flag combination exits 2 with
    the reason, before any work."""
    dst = tmp_path / "nv"
    main(["--hf-path", str(tiny_qwen_base), "--mlx-path", str(dst), "--task", "retrieval", "--q-mode", "nvfp4"])
    block = json.loads((dst / "config.json").read_text())["quantization"]
    assert block == {"group_size": 16, "bits": 4, "mode": "nvfp4"}
    with pytest.raises(SystemExit) as e:
        main(["--hf-path", str(tmp_path / "none"), "--mlx-path", str(tmp_path / "x"), "--q-mode", "mxfp8", "--q-bits", "4"])
    assert e.value.code == 2 and "bits=4 with mode='mxfp8'" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_recipes_are_documented():
    text = (__import__("pathlib").Path(__file__).parents[1] / "docs" / "quantization.md").read_text()
    for name in RECIPES:
        assert f"`{name}`" in text


def test_biasless_group_size_must_be_a_floating_point_modes(converted, tmp_path):
    """Scales without biases in groups of 64 fit no mode (mxfp4/mxfp8 take 32, nvfp4 16):
    the error names the layer and the group sizes that exist."""
    import shutil

    folder = tmp_path / "bad"
    shutil.copytree(converted["mxfp4", 4, 32], folder)
    config = json.loads((folder / "config.json").read_text())
    config.pop("quantization", None), config.pop("quantization_config", None)  # other tests edit it
    (folder / "config.json").write_text(json.dumps(config))
    weights = folder / "model-4bit.safetensors"
    tensors = dict(mx.load(str(weights)))
    key = "model.layers.0.mlp.up_proj.scales"
    tensors[key] = tensors[key][:, ::2]  # 96 x 1: one scale per 64 inputs
    mx.save_safetensors(str(weights), tensors)
    with pytest.raises(ValueError, match=r"up_proj: group size 64; MLX runs group sizes 16 and 32 without biases"):
        quiet_load(folder)


def test_identity_tells_modes_apart(tiny_qwen_base):
    """affine 4-bit in groups of 32 and mxfp4 (4-bit, groups of 32) are different models."""
    affine = quiet_load(tiny_qwen_base, task="retrieval", bits=4, group_size=32)
    mxfp4 = quiet_load(tiny_qwen_base, task="retrieval", mode="mxfp4")
    again = quiet_load(tiny_qwen_base, task="retrieval", mode="mxfp4", bits=4, group_size=32)
    assert affine.identity != mxfp4.identity == again.identity


def test_info_names_the_mode(tiny_qwen_base, tmp_path):
    """`mlx-jina info` says which mode a folder holds, and when layers differ."""
    from mlx_jina.checkpoint.facts import model_facts

    folder = tmp_path / "nv"
    mlx_jina.convert(str(tiny_qwen_base), str(folder), task="retrieval", q_mode="nvfp4")
    assert model_facts(str(folder))["quantization"] == "nvfp4 4-bit, group size 16"
    mixed = tmp_path / "mixed"
    mlx_jina.convert(str(tiny_qwen_base), str(mixed), task="retrieval", q_recipe="mixed-3-6")
    assert model_facts(str(mixed))["quantization"] == (
        "affine 3-bit, group size 64 (mixed: some layers differ)"
    )
