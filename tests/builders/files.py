"""The files a checkpoint folder is made of: safetensors, JSON and dummy remote code."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import save_file

SENTINEL = "EXECUTED"  # the file a dummy .py leaves next to itself when it runs

_DUMMY_PY = '''\
"""Test sentinel standing in for Jina's remote code.

mlx_jina must never import or execute Python found in a model folder. If this file
runs, it leaves a file named {sentinel} next to itself and raises.
"""
from pathlib import Path

(Path(__file__).resolve().parent / "{sentinel}").write_text(__file__)
raise RuntimeError("model-folder code was executed: " + __file__)
'''


def write_safetensors(
    path: Path, tensors: dict[str, Any], metadata: dict[str, str] | None = None
) -> Path:
    """Save numpy arrays or torch tensors (any dtype torch knows, bf16 too)."""
    out = {}
    for key, value in tensors.items():
        if isinstance(value, np.ndarray):
            value = torch.from_numpy(np.ascontiguousarray(value))
        # clone: safetensors refuses tensors that share storage (tied weights)
        out[key] = value.detach().contiguous().clone()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(out, str(path), metadata=metadata or {"format": "pt"})
    return path


def read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    """All tensors of a safetensors file as torch tensors, dtypes kept."""
    with safe_open(str(path), framework="pt") as f:
        return {k: f.get_tensor(k) for k in f.keys()}


def weight_keys(folder: Path) -> list[str]:
    """The tensor names in ``folder``/model.safetensors, without loading them."""
    with safe_open(str(Path(folder) / "model.safetensors"), framework="pt") as f:
        return list(f.keys())


def file_dtype(folder: Path) -> torch.dtype:
    """The dtype of the first tensor in ``folder``/model.safetensors."""
    with safe_open(str(Path(folder) / "model.safetensors"), framework="pt") as f:
        return f.get_tensor(next(iter(f.keys()))).dtype


def cast_file(path: Path, dtype: torch.dtype) -> None:
    """Rewrite a safetensors file in ``dtype`` (left alone when it already is)."""
    tensors = read_safetensors(path)
    if any(t.dtype != dtype for t in tensors.values()):
        write_safetensors(path, {k: t.to(dtype) for k, t in tensors.items()})


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
