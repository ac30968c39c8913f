"""Reading files that may be damaged or hostile: regular files of bounded size only, JSON
that must hold an object, and safetensors headers checked against the file before any
tensor data is read. The model loader and the embedding files both read through here,
and embedding files are written here too (streamed, no copy of the arrays).

Why by hand: the safetensors library reads a header without bounds and reports damage
as its own error types; here a FIFO, a 2**62-byte header length or a tensor that does not
fit the file is one ValueError naming the file, in milliseconds.
"""

import json
import math
import os
import stat
import struct
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

# Real files: config.json is about 2 kB, tokenizer.json about 11 MB (Qwen3), the small
# model's 4-bit header about 100 kB. The limits leave room and bound memory.
JSON_LIMIT = 16 * 2**20
TOKENIZER_LIMIT = 64 * 2**20
HEADER_LIMIT = 16 * 2**20
# safetensors dtype -> bytes per element; the numpy dtype where numpy has one.
DTYPE_SIZES = {
    "BOOL": 1, "U8": 1, "I8": 1, "F8_E4M3": 1, "F8_E5M2": 1, "U16": 2, "I16": 2,
    "F16": 2, "BF16": 2, "U32": 4, "I32": 4, "F32": 4, "U64": 8, "I64": 8, "F64": 8,
}  # fmt: skip
NUMPY_DTYPES = {
    "BOOL": "?", "U8": "u1", "I8": "i1", "U16": "<u2", "I16": "<i2", "F16": "<f2",
    "U32": "<u4", "I32": "<i4", "F32": "<f4", "U64": "<u8", "I64": "<i8", "F64": "<f8",
}  # fmt: skip
FLOATS = ("F16", "BF16", "F32")


@dataclass(frozen=True)
class TensorInfo:
    """One tensor as a safetensors header describes it; no data is read."""

    dtype: str
    shape: tuple[int, ...]
    offset: int = 0  # where its data starts in the file

    @property
    def nbytes(self) -> int:
        return math.prod(self.shape) * DTYPE_SIZES[self.dtype]


@dataclass
class Header:
    tensors: dict[str, TensorInfo]
    metadata: dict = field(default_factory=dict)  # the "__metadata__" strings


class DamagedFile(ValueError):
    """A file whose layout can't be right; `problem` says what is wrong with it."""

    def __init__(self, path: Path, problem: str):
        super().__init__(f"Could not read {path} ({problem}).")
        self.path, self.problem = path, problem


def open_regular(path: Path, limit: int):
    """Open `path` for reading if it is a regular file of at most `limit` bytes."""
    # O_NONBLOCK: opening a FIFO must not wait for a writer; fstat then refuses it.
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
    info = os.fstat(fd)  # of what was opened: no race with a path swapped meanwhile
    problem = None
    if not stat.S_ISREG(info.st_mode):
        kind = "a directory" if stat.S_ISDIR(info.st_mode) else "a FIFO, socket or device"
        problem = f"{path} is not a regular file (it is {kind})"
    elif info.st_size > limit:
        problem = f"{path} is {info.st_size:,} bytes; more than the {limit:,} this file may have"
    if problem:
        os.close(fd)
        raise ValueError(f"{problem}. Replace it with the right file.")
    return os.fdopen(fd, "rb", buffering=0)


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


def read_header(path: Path, limit: int = HEADER_LIMIT) -> Header:
    """The header of a safetensors file, refusing one that does not fit the file: every
    tensor's bytes in range and the data packed back to back, as safetensors writes it."""
    with open_regular(path, limit=2**62) as f:
        size = os.fstat(f.fileno()).st_size
        if size < 8:
            raise DamagedFile(path, f"it has {size} bytes, too few for a safetensors file")
        n = int.from_bytes(read_exactly(f, 8, path), "little")
        if n > limit:
            raise DamagedFile(path, f"it declares a header of {n:,} bytes (at most {limit:,})")
        if 8 + n > size:
            raise DamagedFile(path, f"it is truncated: a header of {n:,} bytes in {size:,}")
        try:
            header = json.loads(read_exactly(f, n, path))
        except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
            header = None
    if not isinstance(header, dict):
        raise DamagedFile(path, "its header is not a JSON object")
    metadata = header.pop("__metadata__", None) or {}
    if not isinstance(metadata, dict):
        raise DamagedFile(path, "its __metadata__ is not a JSON object")
    tensors = {name: tensor_info(name, entry, 8 + n, path) for name, entry in header.items()}
    check_packing(tensors, 8 + n, size, path)
    return Header(tensors, metadata)


def tensor_info(name: str, entry, start: int, path: Path) -> TensorInfo:
    where = f"tensor {name[:100]!r}"
    if not (isinstance(entry, dict) and {"dtype", "shape", "data_offsets"} <= set(entry)):
        raise DamagedFile(path, f"{where} lacks dtype, shape or data_offsets")
    dtype, shape, offsets = entry["dtype"], entry["shape"], entry["data_offsets"]
    if not isinstance(dtype, str) or dtype not in DTYPE_SIZES:
        raise DamagedFile(path, f"{where} has dtype {str(dtype)[:20]!r}")
    if not (naturals(shape) and naturals(offsets) and len(offsets) == 2):
        raise DamagedFile(path, f"{where} has a bad shape or data_offsets")
    info = TensorInfo(dtype, tuple(shape), start + offsets[0])
    if offsets[1] - offsets[0] != info.nbytes:
        raise DamagedFile(path, f"{where} has {offsets[1] - offsets[0]} bytes, not {dtype} {shape}")
    return info


def naturals(value) -> bool:
    """A JSON list of non-negative integers?"""
    return isinstance(value, list) and all(type(v) is int and v >= 0 for v in value)


def check_packing(tensors: dict[str, TensorInfo], start: int, size: int, path: Path) -> None:
    """The tensors fill the data after the header exactly: no gap, no overlap, no tail."""
    edge = start
    for t in sorted(tensors.values(), key=lambda t: t.offset):
        if t.offset != edge:
            raise DamagedFile(path, f"its tensor data has a gap or an overlap at byte {t.offset:,}")
        edge += t.nbytes
    if edge != size:
        raise DamagedFile(
            path, f"it is truncated or corrupt: its header describes {edge:,} bytes, the file has {size:,}"
        )


def read_exactly(f, n: int, path: Path) -> bytes:
    """`n` bytes from `f`, or DamagedFile when it ends first."""
    buffer = bytearray(n)
    read_into(f, memoryview(buffer), path)
    return bytes(buffer)


def read_into(f, view: memoryview, path: Path) -> None:
    """Fill `view`; a raw read may stop short (on Linux, at about 2 GB)."""
    done = 0
    while done < len(view):
        got = f.readinto(view[done:])
        if not got:
            raise DamagedFile(path, "it is truncated: it ended while it was read")
        done += got


def read_array(path: Path, info: TensorInfo) -> np.ndarray:
    """One tensor's data, for dtypes numpy has (not bfloat16), from a checked header."""
    dtype = np.dtype(NUMPY_DTYPES[info.dtype])  # little-endian, as the format is
    array = np.empty(info.shape, dtype)
    with open_regular(path, limit=2**62) as f:
        f.seek(info.offset)
        read_into(f, memoryview(array.reshape(-1).view(np.uint8)), path)
    return array if dtype.isnative else array.astype(dtype.newbyteorder("="))


def header_bytes(tensors: dict[str, np.ndarray], metadata: dict[str, str]) -> bytes:
    """The length-prefixed JSON header of a safetensors file holding `tensors` in order."""
    codes = {np.dtype(dtype): code for code, dtype in NUMPY_DTYPES.items()}
    header, offset = {"__metadata__": metadata}, 0
    for name, array in tensors.items():
        end = offset + array.nbytes
        header[name] = {"dtype": codes[array.dtype.newbyteorder("<")],
                        "shape": list(array.shape), "data_offsets": [offset, end]}
        offset = end
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)  # as safetensors does: the data starts 8-byte aligned
    return struct.pack("<Q", len(raw)) + raw


def write_tensors(f, header: bytes, tensors: dict[str, np.ndarray]) -> None:
    """A safetensors file into the open binary file `f`, array by array."""
    f.write(header)
    for array in tensors.values():
        array = np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<"))
        f.write(array.reshape(-1).view(np.uint8).data)
