"""A model folder's weight files: which to read, their headers, then their tensors.

Headers are read and checked (safetensors.py) before any tensor data, so a bad file
costs milliseconds, not a full load.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING

from .safetensors import DamagedFile, TensorInfo, read_header, read_json

if TYPE_CHECKING:
    import mlx.core as mx

FLOAT_FILE = "model.safetensors"
INDEX_FILE = "model.safetensors.index.json"
SHARD = re.compile(r"model-\d{5}-of-\d{5}\.safetensors")


def quantized_file(bits: int) -> str:
    return f"model-{bits}bit.safetensors"


def pick_weight_files(names: set[str] | list[str], bits: int | None = None) -> list[str]:
    """The weight files to read, given the file names a folder or repo holds.

    `bits` prefers `model-{bits}bit.safetensors`, falling back to the float weights
    (quantized at load). Without `bits`, float weights win and a lone quantized file
    is used as it is.
    """
    names = set(names)
    if bits is not None and quantized_file(bits) in names:
        return [quantized_file(bits)]
    if FLOAT_FILE in names:
        return [FLOAT_FILE]
    shards = sorted(n for n in names if SHARD.fullmatch(n))
    if shards:
        return shards
    if bits is None:
        for b in range(8, 0, -1):  # any bit width a quantization mode writes, most first
            if quantized_file(b) in names:
                return [quantized_file(b)]
    if any(n.endswith(".gguf") for n in names):
        raise ValueError(
            "This is a GGUF repo (for llama.cpp); mlx_jina reads safetensors. Use the base "
            "repo jinaai/jina-embeddings-v5-text-{small,nano} or a -mlx repo instead."
        )
    return []


def read_headers(folder: Path, files: list[str]) -> dict[str, TensorInfo]:
    """Every tensor of the weight files, from their headers; shards must not overlap."""
    if not files:
        raise FileNotFoundError(
            f"No model*.safetensors in {folder}. Is this a jina-embeddings-v5 model folder?"
        )
    found, owner = {}, {}
    for name in files:
        for key, info in weight_header(folder / name).items():
            if key in owner:
                raise ValueError(
                    f"{folder} holds tensor {key} in both {owner[key]} and {name}; "
                    "the shards come from different checkpoints. Download them again."
                )
            found[key], owner[key] = info, name
    index = folder / INDEX_FILE
    if len(files) > 1 and index.exists():
        weight_map = read_json(index).get("weight_map", {})
        if not isinstance(weight_map, dict):
            raise ValueError(f"{index}: weight_map must be an object of tensor -> file.")
        if missing := set(weight_map) - set(found):
            raise ValueError(
                f"{folder} lacks shards for {len(missing)} weights, e.g. {min(missing)}."
            )
    return found


def weight_header(path: Path) -> dict[str, TensorInfo]:
    """Tensor name -> dtype and shape, from the header alone, refusing corrupt files."""
    if not path.exists():
        raise FileNotFoundError(f"Missing weight file {path}.")
    try:
        return read_header(path).tensors
    except DamagedFile as e:
        raise ValueError(
            f"Could not read {path} ({e.problem}). The file looks corrupt or incomplete; "
            "delete it and download or convert it again."
        ) from None


def load_safetensors(path: Path) -> dict[str, mx.array]:
    """The tensors of a file whose header `read_header` has accepted."""
    import mlx.core as mx  # here: choosing files and reading headers needs no MLX

    try:
        return mx.load(str(path))
    except Exception as e:  # mlx raises bare RuntimeErrors for truncated or bad headers
        raise ValueError(
            f"Could not read {path} ({e}). The file looks corrupt or incomplete; "
            "delete it and download or convert it again."
        ) from None


def load_weights(folder: Path, files: list[str]) -> dict[str, mx.array]:
    weights = {}
    for name in files:
        weights.update(load_safetensors(folder / name))
    return weights
