"""load(bits=) from float weights: the same quantized arrays as quantizing the loaded
float model (the old path, run here), and a peak memory near the quantized size."""

import json
import subprocess
import sys
import warnings
from pathlib import Path

import mlx.core as mx
import pytest
from mlx.utils import tree_flatten

import mlx_jina
from mlx_jina.checkpoint.quantization import Quantization, quantize_model

ROOT = Path(__file__).resolve().parents[1]
TEXTS = ["layer by layer", "the same numbers as before"]


def quantized_the_old_way(folder, bits, **kw):
    """Load float, then `nn.quantize` the whole model lazily: what load(bits=) did."""
    embedder = mlx_jina.load(folder, bits=None, **kw)
    quantize_model(embedder.model, Quantization("affine", bits, 64))
    return embedder


@pytest.mark.parametrize(
    "kw",
    [
        dict(task="retrieval"),
        dict(task="retrieval", dtype="float16"),
        dict(task="retrieval", multitask=True),
    ],
)
@pytest.mark.parametrize("bits", [4, 8])
def test_layerwise_quantization_is_exactly_the_old_one(tiny_qwen_base, bits, kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # layers that stay float; the speed note
        new = mlx_jina.load(tiny_qwen_base, bits=bits, **kw)
        old = quantized_the_old_way(tiny_qwen_base, bits, **kw)
    got, want = dict(tree_flatten(new.model.parameters())), dict(tree_flatten(old.model.parameters()))
    assert got.keys() == want.keys()
    for key, value in want.items():
        assert got[key].dtype == value.dtype, key
        assert mx.array_equal(got[key], value).item(), key
    assert mx.array_equal(new.encode(TEXTS), old.encode(TEXTS)).item()


CHILD = r"""
import json, os, sys
import mlx_jina
from mlx_jina import loading  # mlx_jina imports lazily: count the modules in base
def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
base = rss()
mlx_jina.load(sys.argv[1], task="retrieval", bits=4)
# VmHWM, not ru_maxrss: Linux carries ru_maxrss over exec from the forking parent.
peak = [int(l.split()[1]) * 1024 for l in open("/proc/self/status") if l.startswith("VmHWM")][0]
print(json.dumps(dict(base=base, peak=peak, after=rss())))
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/statm")
def test_four_bit_load_peaks_near_the_quantized_size(tmp_path):
    """A 160 MB float32 checkpoint: loading it at 4 bits used to peak at the float size
    (all of it read, then quantized lazily in the first encode); now one block at a time.

    Measured (fresh process, above the RSS once the loader is imported): before, peak
    1.3x the float file; now about 0.6x, and 0.3x after load (a block's
    float32 weights, the merge's and quantization's temporaries). The bound sits between."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from checkpoint import build

    folder = build(
        tmp_path / "ckpt",
        "qwen3",
        tasks=("retrieval",),
        hidden_size=512,
        num_hidden_layers=8,
        intermediate_size=2048,
        num_attention_heads=8,
        num_key_value_heads=4,
        head_dim=64,
        vocab_size=16_384,
    )
    size = (folder / "model.safetensors").stat().st_size
    done = subprocess.run(
        [sys.executable, "-c", CHILD, str(folder)],
        capture_output=True, text=True, check=True, cwd=tmp_path,
    )
    r = json.loads(done.stdout.strip().splitlines()[-1])
    grew, kept = (r["peak"] - r["base"]) / size, (r["after"] - r["base"]) / size
    print(f"float32 file {size / 1e6:.0f} MB: peak +{grew:.2f}x, after load +{kept:.2f}x")
    assert grew < 0.9 and kept < 0.9, (grew, kept)


@pytest.mark.parametrize(
    "quantized,dtype,device,slow",
    [
        (True, mx.bfloat16, mx.cpu, True),
        (True, mx.float16, mx.cpu, True),
        (True, mx.float32, mx.cpu, False),
        (False, mx.bfloat16, mx.cpu, False),
        (True, mx.bfloat16, mx.gpu, False),
    ],
)
def test_slow_activation_combination_is_named(quantized, dtype, device, slow):
    from mlx_jina.checkpoint.quantization import slow_activations

    note = slow_activations(quantized, dtype, mx.Device(device))
    assert (note is not None) == slow
    if slow:
        assert "dtype='float32'" in note
