"""Test helpers for quantization: an exact numpy dequantizer and float folders built from it.

The numpy code is written from MLX's documented affine format (docs/model-facts.md), not from
mlx_jina: each uint32 word holds 32 / bits values, little-endian (value j at bits
[j * bits, (j + 1) * bits)), and every run of `group_size` inputs shares one scale and
bias, w = scales * q + biases. A float model built from these weights is what a quantized
model must compute, so comparing against it checks the quantized inference itself rather
than the quantization error.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import mlx.core as mx
import numpy as np
from mlx.utils import tree_flatten

from builders.files import write_safetensors


def unpack(packed: np.ndarray, bits: int) -> np.ndarray:
    """uint32 words (out, in * bits / 32) -> integer codes (out, in)."""
    per_word = 32 // bits
    shifts = np.arange(per_word, dtype=np.uint32) * bits
    codes = (packed[..., None] >> shifts) & np.uint32((1 << bits) - 1)
    return codes.reshape(packed.shape[0], -1)


def dequantize(
    packed: np.ndarray,
    scales: np.ndarray,
    biases: np.ndarray,
    bits: int,
    group_size: int,
) -> np.ndarray:
    """Exact float32 weights of an affine-quantized matrix (computed in float64)."""
    q = unpack(packed, bits).astype(np.float64)
    out, n_in = q.shape
    q = q.reshape(out, n_in // group_size, group_size)
    w = scales.astype(np.float64)[..., None] * q + biases.astype(np.float64)[..., None]
    return w.reshape(out, n_in).astype(np.float32)


def to_numpy(a: mx.array) -> np.ndarray:
    return np.array(a.astype(mx.float32) if a.dtype == mx.bfloat16 else a)


def model_tensors(model) -> dict[str, np.ndarray]:
    """An MLX model's stored tensors with checkpoint keys (LoRA wrappers unwrapped, adapters
    left out)."""
    out = {}
    for key, value in tree_flatten(model.parameters()):
        if ".lora." in key:
            continue
        out[key.replace(".base.", ".")] = to_numpy(value)
    return out


def dequantized_state(
    tensors: dict[str, np.ndarray], bits: int, group_size: int
) -> dict[str, np.ndarray]:
    """Float32 state dict (un-prefixed keys): quantized layers dequantized in numpy."""
    tensors = {k.removeprefix("model."): v for k, v in tensors.items()}
    state = {}
    for key, value in tensors.items():
        if key.endswith((".scales", ".biases")):
            continue
        path = key.removesuffix(".weight")
        if f"{path}.scales" in tensors:
            value = dequantize(
                value,
                tensors[f"{path}.scales"],
                tensors[f"{path}.biases"],
                bits,
                group_size,
            )
        state[key] = value.astype(np.float32)
    return state


def float_folder(
    dst: Path, state: dict[str, np.ndarray], like: Path, *, adapters: bool = False
) -> Path:
    """A float32 model folder with `like`'s config and tokenizer (and adapters/ if asked)."""
    dst = Path(dst)
    dst.mkdir(parents=True, exist_ok=True)
    write_safetensors(dst / "model.safetensors", state)
    for name in ("config.json", "tokenizer.json"):
        shutil.copyfile(Path(like) / name, dst / name)
    if adapters:
        shutil.copytree(Path(like) / "adapters", dst / "adapters")
    return dst


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a / np.linalg.norm(a, axis=-1, keepdims=True)
    b = b / np.linalg.norm(b, axis=-1, keepdims=True)
    return (a * b).sum(-1)
