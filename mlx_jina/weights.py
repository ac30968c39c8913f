"""Find and read a model folder's files: safetensors weights and the JSON beside them.

Every read is bounded and checked first: a file must be a regular file (a FIFO would block
forever), of a sane size, and a safetensors header is parsed and checked before any
tensor data is read, so a bad file costs milliseconds, not a full load.
"""

import json
import math
import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path

import mlx.core as mx

FLOAT_FILE = "model.safetensors"
INDEX_FILE = "model.safetensors.index.json"
SHARD = re.compile(r"model-\d{5}-of-\d{5}\.safetensors")
# Real files: config.json is about 2 kB, tokenizer.json about 11 MB (Qwen3), the
# small model's 4-bit header about 100 kB. The limits leave room and bound memory.
JSON_LIMIT = 16 * 2**20
TOKENIZER_LIMIT = 64 * 2**20
HEADER_LIMIT = 16 * 2**20
# safetensors dtype -> bytes per element, to check each tensor's data range.
DTYPE_SIZES = {
    "BOOL": 1, "U8": 1, "I8": 1, "F8_E4M3": 1, "F8_E5M2": 1, "U16": 2, "I16": 2,
    "F16": 2, "BF16": 2, "U32": 4, "I32": 4, "F32": 4, "U64": 8, "I64": 8, "F64": 8,
}  # fmt: skip
FLOATS = ("F16", "BF16", "F32")


@dataclass(frozen=True)
class TensorInfo:
    """One tensor as a safetensors header describes it; no data is read."""

    dtype: str
    shape: tuple[int, ...]


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
        for b in (8, 4):
            if quantized_file(b) in names:
                return [quantized_file(b)]
    if any(n.endswith(".gguf") for n in names):
        raise ValueError(
            "This is a GGUF repo (for llama.cpp); mlx_jina reads safetensors. Use the base "
            "repo jinaai/jina-embeddings-v5-text-{small,nano} or a -mlx repo instead."
        )
    return []


def open_regular(path: Path, limit: int):
    """Open `path` for reading if it is a regular file of at most `limit` bytes."""
    # O_NONBLOCK: opening a FIFO must not wait for a writer; fstat then refuses it.
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    info = os.fstat(fd)
    problem = None
    if not stat.S_ISREG(info.st_mode):
        problem = f"{path} is not a regular file (a folder, FIFO or device?)"
    elif info.st_size > limit:
        problem = f"{path} is {info.st_size:,} bytes; more than the {limit:,} this file may have"
    if problem:
        os.close(fd)
        raise ValueError(f"{problem}. Replace it with the file from the model repo.")
    return os.fdopen(fd, "rb")


def read_json(path: Path, limit: int = JSON_LIMIT) -> dict:
    """A JSON file that must hold an object, read with the checks of `open_regular`."""
    with open_regular(path, limit) as f:
        raw = f.read(limit + 1)
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError) as e:  # JSONDecodeError and bad UTF-8 are ValueErrors
        raise ValueError(f"{path} is not valid JSON ({str(e)[:200]}).") from None
    if not isinstance(data, dict):
        kind = "null" if data is None else type(data).__name__
        raise ValueError(f"{path} holds a JSON {kind}; expected an object ({{...}}).")
    return data


def read_header(path: Path) -> dict[str, TensorInfo]:
    """Tensor name -> dtype and shape, from the header alone, refusing corrupt files."""
    if not path.exists():
        raise FileNotFoundError(f"Missing weight file {path}.")
    with open_regular(path, limit=2**62) as f:
        size = os.fstat(f.fileno()).st_size
        n = int.from_bytes(f.read(8), "little")
        problem = "too short" if size < 8 else None
        if not problem and (n > HEADER_LIMIT or 8 + n > size):
            problem = f"its header claims {n:,} bytes"
        try:
            header = None if problem else json.loads(f.read(n))
        except (ValueError, RecursionError):
            problem = "its header is not JSON"
    if not problem:
        problem = header_problem(header, size - 8 - n)
    if problem:
        raise ValueError(
            f"Could not read {path} ({problem}). The file looks corrupt or incomplete; "
            "delete it and download or convert it again."
        )
    return {
        k: TensorInfo(v["dtype"], tuple(v["shape"]))
        for k, v in header.items()
        if k != "__metadata__"
    }


def header_problem(header, data_size: int) -> str | None:
    """What is wrong with a parsed safetensors header, or None."""
    if not isinstance(header, dict):
        return "its header is not a JSON object"
    for key, t in header.items():
        if key == "__metadata__":
            continue
        if not (isinstance(t, dict) and {"dtype", "shape", "data_offsets"} <= set(t)):
            return f"tensor {key[:100]!r} lacks dtype, shape or data_offsets"
        if t["dtype"] not in DTYPE_SIZES:
            return f"tensor {key[:100]!r} has dtype {str(t['dtype'])[:20]!r}"
        shape, offsets = t["shape"], t["data_offsets"]
        lists = isinstance(shape, list) and isinstance(offsets, list)
        ints = [*shape, *offsets] if lists else []
        if not lists or len(offsets) != 2 or not all(type(i) is int and i >= 0 for i in ints):
            return f"tensor {key[:100]!r} has a bad shape or data_offsets"
        start, end = offsets
        size = math.prod(shape) * DTYPE_SIZES[t["dtype"]]
        if not start <= end <= data_size or end - start != size:
            return f"tensor {key[:100]!r} does not fit the data after the header"
    return None


def read_headers(folder: Path, files: list[str]) -> dict[str, TensorInfo]:
    """Every tensor of the weight files, from their headers; shards must not overlap."""
    if not files:
        raise FileNotFoundError(
            f"No model*.safetensors in {folder}. Is this a jina-embeddings-v5 model folder?"
        )
    found, owner = {}, {}
    for name in files:
        for key, info in read_header(folder / name).items():
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


def list_problems(problems: list[str], shown: int = 5) -> str:
    """The first few problems, one per line, and how many more: messages stay short."""
    more = f"\n  ... and {len(problems) - shown} more" if len(problems) > shown else ""
    return "\n  " + "\n  ".join(problems[:shown]) + more


def load_safetensors(path: Path) -> dict[str, mx.array]:
    """The tensors of a file whose header `read_header` has accepted."""
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
