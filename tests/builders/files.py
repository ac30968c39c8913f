"""The files a checkpoint folder is made of: safetensors, JSON and dummy remote code.

numpy only. numpy has no bfloat16, so bfloat16 files are written and read here: the
bits are float32's upper half (rounded to nearest even), and reading widens them back
to float32 exactly.
"""

from __future__ import annotations

import json
import shutil
import struct
from pathlib import Path
from typing import Any, Iterable

import numpy as np
from safetensors.numpy import save_file

SENTINEL = "EXECUTED"  # the file a dummy .py leaves next to itself when it runs
DTYPES = {"float32": "F32", "float16": "F16", "bfloat16": "BF16"}  # name -> header

_DUMMY_PY = '''\
"""Test sentinel standing in for Jina's remote code.

mlx_jina must never import or execute Python found in a model folder. If this file
runs, it leaves a file named {sentinel} next to itself and raises.
"""
from pathlib import Path

(Path(__file__).resolve().parent / "{sentinel}").write_text(__file__)
raise RuntimeError("model-folder code was executed: " + __file__)
'''


def to_bfloat16_bits(x: np.ndarray) -> np.ndarray:
    """float32 -> the uint16 bits of bfloat16, rounded to nearest even."""
    bits = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32)
    rounding = ((bits >> 16) & 1) + np.uint32(0x7FFF)
    return ((bits + rounding) >> 16).astype(np.uint16)


def from_bfloat16_bits(bits: np.ndarray) -> np.ndarray:
    return (bits.astype(np.uint32) << 16).view(np.float32)


def write_safetensors(
    path: Path,
    tensors: dict[str, np.ndarray],
    metadata: dict[str, str] | None = None,
    dtype: str | None = None,
) -> Path:
    """Save float arrays, cast to ``dtype`` ("float32", "float16", "bfloat16") if given."""
    if dtype is not None and dtype not in DTYPES:
        raise ValueError(f"dtype={dtype!r}; use one of {sorted(DTYPES)}")
    out = {}
    for key, value in tensors.items():
        value = np.asarray(value)
        if dtype == "bfloat16":
            value = to_bfloat16_bits(value)  # written as U16, relabelled below
        elif dtype is not None:
            value = value.astype(dtype)
        out[key] = np.ascontiguousarray(value)  # a copy per key: tied weights are fine
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(out, str(path), metadata=metadata or {"format": "pt"})
    if dtype == "bfloat16":
        _relabel(path, "U16", "BF16")
    return path


def _relabel(path: Path, old: str, new: str) -> None:
    """Rename a dtype in a safetensors header (same data, same offsets)."""
    raw = path.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + n])
    for entry in header.values():
        if entry.get("dtype") == old:
            entry["dtype"] = new
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)  # safetensors pads its header to 8 bytes
    path.write_bytes(struct.pack("<Q", len(text)) + text + raw[8 + n :])


def header(path: Path) -> dict[str, dict]:
    """The tensors' entries of a safetensors header: name -> {dtype, shape, ...}."""
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        data = json.loads(f.read(n))
    data.pop("__metadata__", None)
    return data


def read_safetensors(path: Path) -> dict[str, np.ndarray]:
    """All tensors of a safetensors file; bfloat16 widened to float32, others kept."""
    raw = Path(path).read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    kinds = {"F32": np.float32, "F16": np.float16, "BF16": np.uint16}
    out = {}
    for key, entry in header(path).items():
        start, end = entry["data_offsets"]
        data = np.frombuffer(raw[8 + n + start : 8 + n + end], kinds[entry["dtype"]])
        data = data.reshape(entry["shape"])
        out[key] = from_bfloat16_bits(data) if entry["dtype"] == "BF16" else data.copy()
    return out


def file_dtypes(path: Path) -> set[str]:
    """The dtype names ("float32", "float16", "bfloat16") a safetensors file holds."""
    names = {v: k for k, v in DTYPES.items()}
    return {names[entry["dtype"]] for entry in header(path).values()}


def weight_keys(folder: Path) -> list[str]:
    """The tensor names in ``folder``/model.safetensors, without loading them."""
    return list(header(Path(folder) / "model.safetensors"))


def file_dtype(folder: Path) -> str:
    """The dtype of ``folder``/model.safetensors (one dtype per file here)."""
    (dtype,) = file_dtypes(Path(folder) / "model.safetensors")
    return dtype


def write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")


def copy_if_exists(src: Path, dst: Path, names: Iterable[str]) -> None:
    for name in names:
        if (src / name).exists():
            shutil.copyfile(src / name, dst / name)


def write_dummies(folder: Path, names: Iterable[str]) -> None:
    """Dummy .py files standing in for remote code; each leaves a SENTINEL if run."""
    for name in names:
        (folder / name).write_text(_DUMMY_PY.format(sentinel=SENTINEL))


def executed_sentinels(root: Path) -> list[Path]:
    """Sentinel files left by dummy .py files that were executed under ``root``."""
    return sorted(Path(root).rglob(SENTINEL))
