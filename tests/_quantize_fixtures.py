"""Test helpers for quantization: an exact numpy dequantizer and float folders built from it.

The numpy code is written from MLX's documented formats (docs/model-facts.md), not from
mlx_jina: a row's uint32 words are one little-endian bit stream (value j at bits
[j * bits, (j + 1) * bits)), and in the affine mode every run of `group_size` inputs shares one scale and
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
    """uint32 words (out, in * bits / 32) -> integer codes (out, in): the words are one
    little-endian bit stream per row, value j at bits [j * bits, (j + 1) * bits) (so 3-,
    5- and 6-bit values may straddle two words)."""
    rows = packed.astype("<u4").view(np.uint8).reshape(packed.shape[0], -1)
    stream = np.unpackbits(rows, axis=1, bitorder="little")
    per_value = stream.reshape(packed.shape[0], -1, bits).astype(np.uint32)
    return (per_value << np.arange(bits, dtype=np.uint32)).sum(-1, dtype=np.uint32)


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


def fp_values(codes: np.ndarray, exponent_bits: int, mantissa_bits: int, bias: int) -> np.ndarray:
    """Sign / exponent / mantissa codes -> float64 (E2M1: 1, 2, 1, 1; E4M3: 1, 4, 3, 7), with
    subnormals at exponent 0 (the OCP microscaling formats; no inf or NaN codes here)."""
    codes = codes.astype(np.int64)
    sign = np.where(codes >> (exponent_bits + mantissa_bits) & 1, -1.0, 1.0)
    e = (codes >> mantissa_bits) & ((1 << exponent_bits) - 1)
    m = (codes & ((1 << mantissa_bits) - 1)) / (1 << mantissa_bits)
    return sign * np.where(e == 0, m * 2.0 ** (1 - bias), (1 + m) * 2.0 ** (e - bias))


def dequantize_fp(
    packed: np.ndarray, scales: np.ndarray, mode: str, group_size: int
) -> np.ndarray:
    """Exact float32 weights of an mxfp4 / mxfp8 / nvfp4 matrix: E2M1 or E4M3 elements, in
    groups that share one uint8 scale (E8M0, a power of two 2^(s - 127), for the mx
    modes; E4M3 for nvfp4)."""
    bits = 8 if mode == "mxfp8" else 4
    codes = unpack(packed, bits)
    values = fp_values(codes, 4, 3, 7) if bits == 8 else fp_values(codes, 2, 1, 1)
    if mode == "nvfp4":
        scale = fp_values(scales, 4, 3, 7)
    else:
        scale = 2.0 ** (scales.astype(np.float64) - 127)
    out, n_in = values.shape
    w = values.reshape(out, n_in // group_size, group_size) * scale[..., None]
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
    tensors: dict[str, np.ndarray],
    bits: int | None,
    group_size: int,
    mode: str = "affine",
    layers: dict[str, tuple[int, int, str]] | None = None,
) -> dict[str, np.ndarray]:
    """Float32 state dict (un-prefixed keys): quantized layers dequantized in numpy, with
    `bits`, `group_size` and `mode` or, per layer, `layers[path]` (bits, group, mode)."""
    tensors = {k.removeprefix("model."): v for k, v in tensors.items()}
    state = {}
    for key, value in tensors.items():
        if key.endswith((".scales", ".biases")):
            continue
        path = key.removesuffix(".weight")
        if f"{path}.scales" in tensors:
            b, g, m = (layers or {}).get(path, (bits, group_size, mode))
            if m == "affine":
                value = dequantize(
                    value, tensors[f"{path}.scales"], tensors[f"{path}.biases"], b, g
                )
            else:
                value = dequantize_fp(value, tensors[f"{path}.scales"], m, g)
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
