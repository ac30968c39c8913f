"""`convert --sweep`: every quantization choice measured against float, as a table and
JSON whose rows are real measurements.

Run: python -m pytest tests/test_quantize_sweep.py -q -s   (prints the tiny model's table)
"""

import contextlib
import io
import json

import pytest

import mlx_jina
from mlx_jina.checkpoint.quantization import MODES, RECIPES
from mlx_jina.conversion import quality
from mlx_jina.conversion.options import main
from mlx_jina.conversion.sweep import sweep_choices


@pytest.fixture(scope="module")
def swept(tiny_qwen_base, tmp_path_factory):
    """The sweep of tiny_qwen_base's retrieval task through the command line: its stdout
    and its JSON."""
    out = tmp_path_factory.mktemp("sweep") / "sweep.json"
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        main(["--hf-path", str(tiny_qwen_base), "--task", "retrieval", "--sweep", "--sweep-json", str(out)])
    print(stdout.getvalue())
    return stdout.getvalue(), json.loads(out.read_text()), out


def test_every_choice_is_a_row(swept, tiny_qwen_base):
    """float, each mode at each of its bits, and the recipes; group 128 would not divide
    the tiny hidden size 64, and the sweep uses 64 for affine anyway."""
    text, report, _ = swept
    labels = [r["weights"] for r in report["rows"]]
    want = ["float"] + [f"{b}-bit, group 64" for b in (8, 6, 5, 4, 3, 2, 1)]
    want += ["mxfp4 4-bit, group 32", "mxfp8 8-bit, group 32", "nvfp4 4-bit, group 16"]
    assert sorted(labels) == sorted(want + [f"{n} (affine {r.low}/{r.high}-bit, group 64)" for n, r in RECIPES.items()])
    assert len(labels) == len(sweep_choices())
    for label in labels:  # the table lists every row
        assert f"| {label} |" in text
    assert report["task"] == "retrieval" and report["dtype"] == "float32"
    assert report["source"] == tiny_qwen_base.name  # the folder's name, never its local path
    assert report["texts"] == {"queries": len(quality.QUERIES), "documents": len(quality.DOCUMENTS) + 2}


def test_rows_are_measurements(swept, tiny_qwen_base):
    """The float row is float against itself; more bits are closer to float; bits per
    weight is what the tensors hold."""
    _, report, _ = swept
    rows = {r["weights"]: r for r in report["rows"]}
    flt = rows["float"]
    assert flt["mean_cosine"] == pytest.approx(1.0, abs=1e-6) and flt["min_cosine"] == pytest.approx(1.0, abs=1e-6)
    assert flt["top10_agreement"] == 1.0 and flt["top10_retrieval"] == 1.0
    assert flt["bits_per_weight"] == 32 and flt["speed_vs_float"] == 1.0
    eight, four, two = (rows[f"{b}-bit, group 64"] for b in (8, 4, 2))
    assert eight["mean_cosine"] > four["mean_cosine"] > two["mean_cosine"]
    assert eight["min_cosine"] > four["min_cosine"]
    assert 0.99 < eight["mean_cosine"] < 1 and four["mean_cosine"] < 0.999
    # Bits per weight from the shapes: tiny_qwen_base (hidden 64, intermediate 96,
    # vocabulary V, 2 layers); a quantized layer holds `bits` per weight plus a float32
    # scale and bias per 64 weights; down_proj (input 96) stays float32.
    config = json.loads((tiny_qwen_base / "config.json").read_text())
    d, f, v = config["hidden_size"], config["intermediate_size"], config["vocab_size"]
    heads, kv, hd = config["num_attention_heads"], config["num_key_value_heads"], config["head_dim"]
    per_layer_q = d * (heads * hd + 2 * kv * hd) + heads * hd * d + 2 * d * f  # q,k,v,o,gate,up
    quantized = v * d + 2 * per_layer_q
    floats = 2 * f * d  # down_proj
    for r in (eight, four, two):
        bits = r["bits"]
        want = (quantized * (bits + 2 * 32 / 64) + floats * 32) / (quantized + floats)
        assert r["bits_per_weight"] == pytest.approx(want)
    # Byte counts follow: fewer bits, fewer bytes; mxfp4 has no biases and 8-bit scales.
    assert flt["weight_bytes"] > eight["weight_bytes"] > four["weight_bytes"] > two["weight_bytes"]
    mx4 = rows["mxfp4 4-bit, group 32"]
    assert f % 32 == 0  # so at group 32 every layer is quantized: 4 bits and a uint8 scale per 32
    assert mx4["bits_per_weight"] == pytest.approx(4 + 8 / 32)
    # A recipe sits between its two widths.
    mixed = rows["mixed-4-6 (affine 4/6-bit, group 64)"]
    assert four["bits_per_weight"] < mixed["bits_per_weight"] < rows["6-bit, group 64"]["bits_per_weight"]
    for r in report["rows"]:
        assert r["encode_seconds"] > 0 and r["speed_vs_float"] > 0


def test_sweep_writes_no_model_folder_and_refuses_mixed_flags(swept, tiny_qwen_base, tmp_path):
    _, _, json_file = swept
    assert sorted(p.name for p in json_file.parent.iterdir()) == ["sweep.json"]
    with pytest.raises(ValueError, match="--sweep measures every quantization choice"):
        mlx_jina.convert(str(tiny_qwen_base), str(tmp_path / "x"), task="retrieval", sweep=True, q_bits=4)
    with pytest.raises(ValueError, match="--sweep measures one task"):
        mlx_jina.convert(str(tiny_qwen_base), task="all", sweep=True)
    with pytest.raises(ValueError, match="--sweep-json only goes with --sweep"):
        mlx_jina.convert(str(tiny_qwen_base), str(tmp_path / "x"), task="retrieval", sweep_json="a.json")
    with pytest.raises(ValueError, match="lies inside the source"):
        mlx_jina.convert(
            str(tiny_qwen_base), task="retrieval", sweep=True,
            sweep_json=str(tiny_qwen_base / "sweep.json"),
        )
    assert not (tiny_qwen_base / "sweep.json").exists() and not (tmp_path / "x").exists()


def test_modes_table_covers_the_sweep():
    bits = sum(len(m.bits) for m in MODES.values())
    assert len(sweep_choices()) == 1 + bits + len(RECIPES)
