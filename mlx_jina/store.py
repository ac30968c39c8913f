"""Embedding files that remember how they were made, so mixed settings are caught.

A file is safetensors: the vectors under "embeddings" (plus "ranges" for int8/uint8
with custom ranges) and a JSON fingerprint in the header metadata: model id, revision,
task, prompt, dims, precision and the mlx_jina version.

Files are untrusted input: load_embeddings checks every byte of the layout against the
file's own fingerprint before it returns vectors, because a wrong shape or a NaN row does
not fail later, it silently gives wrong search results. save_embeddings writes atomically.
"""

import json
import math
import os
import stat
import struct
from dataclasses import asdict, dataclass
from pathlib import Path

import mlx.core as mx
import numpy as np

from .atomic import replacing_file
from .tasks import MIN_DIM
from .precision import (
    BINARY_PRECISIONS,
    PRECISIONS,
    SCALAR_PRECISIONS,
    check_precision,
    check_ranges,
    nonfinite_rows,
    storage,
)

FORMAT = "mlx_jina.embeddings/1"
# Vectors agree only if these match; precision and version are recorded, not compared
# (a float query searches a binary corpus, and a new release reads old files).
COMPARED = ("model", "revision", "task", "prompt", "dims")
# Ours hold a fingerprint and two tensor entries, about 1 KB; never read a giant one.
MAX_HEADER_BYTES = 1 << 20
# safetensors dtype codes of the dtypes embeddings come in (the format is little-endian).
ST_DTYPES = {"F32": np.dtype("<f4"), "F16": np.dtype("<f2"), "I8": np.dtype("i1"),
             "U8": np.dtype("u1")}
DAMAGED = "The file is damaged or was not written by save_embeddings; embed the corpus again."


@dataclass(frozen=True)
class Fingerprint:
    """The settings that decide what a vector means."""

    model: str
    revision: str | None
    task: str | None
    prompt: str
    dims: int
    precision: str
    version: str


@dataclass
class EmbeddingFile:
    embeddings: np.ndarray
    fingerprint: Fingerprint
    ranges: np.ndarray | None = None  # int8/uint8 ranges, when not the default ones


def fingerprint(
    model,
    *,
    task: str | None = None,
    prompt_name: str | None = None,
    prompt: str | None = None,
    truncate_dim: int | None = None,
    precision: str = "float32",
) -> Fingerprint:
    """The fingerprint of `model.encode(...)` with these arguments.

    The defaults describe corpus vectors: the model's default ("document") prompt, full
    size, float32. Use the same arguments you pass to `encode`.
    """
    from . import __version__

    check_precision(precision)
    task = model.check_task(task)
    dims = model.dim if truncate_dim is None else truncate_dim
    if not isinstance(dims, int) or not MIN_DIM <= dims <= model.dim:
        raise ValueError(
            f"truncate_dim={truncate_dim!r}; use an integer from {MIN_DIM} to the embedding "
            f"size {model.dim}, or None."
        )
    return Fingerprint(
        model=model.source,
        revision=getattr(model, "revision", None),
        task=task,
        prompt=model.resolve_prompt(prompt_name, prompt, task),
        dims=dims,
        precision=precision,
        version=__version__,
    )


# The rule for each fingerprint field, whether it comes from a file or from the caller.
FIELDS = {
    "model": (lambda v: isinstance(v, str), "a string"),
    "revision": (lambda v: v is None or isinstance(v, str), "a string or null"),
    "task": (lambda v: v is None or isinstance(v, str), "a string or null"),
    "prompt": (lambda v: isinstance(v, str), "a string"),
    "dims": (lambda v: type(v) is int and v >= 1, "a positive integer"),
    "precision": (lambda v: v in PRECISIONS, f"one of {', '.join(PRECISIONS)}"),
    "version": (lambda v: isinstance(v, str), "a string"),
}


def save_embeddings(
    path: str | Path,
    embeddings: np.ndarray | mx.array,
    fingerprint: Fingerprint,
    *,
    ranges: np.ndarray | None = None,
) -> Path:
    """Write `embeddings` (2-D, as `encode` returned them) with their fingerprint.

    `ranges` are the int8/uint8 ranges you passed to `quantize_embeddings`, if any. The
    file is written beside `path`, synced, then renamed over it: a reader sees the old
    file or the new one, never half of one.
    """
    emb = np.array(embeddings) if isinstance(embeddings, mx.array) else np.asarray(embeddings)
    fp, path = fingerprint, Path(path)
    try:
        _check_fields(asdict(fp))
        _check_layout(emb.dtype, emb.shape, fp)
    except ValueError as e:
        raise ValueError(
            f"Can't save {path}: {e}. Build the fingerprint with the arguments you passed "
            "to encode()."
        ) from None
    tensors = {"embeddings": emb}
    if ranges is not None:
        if fp.precision not in SCALAR_PRECISIONS:
            raise ValueError(f"ranges apply to int8/uint8 vectors, not {fp.precision}.")
        tensors["ranges"] = check_ranges(ranges, fp.dims)
    try:
        _check_values(emb, fp)
    except ValueError as e:
        raise ValueError(f"Can't save {path}: {e}. Fix or drop those rows.") from None
    if path.is_dir():
        raise ValueError(f"Can't save {path}: it is a directory. Pass a file path.")
    header = _header(tensors, {"format": FORMAT, "fingerprint": json.dumps(asdict(fp))})
    if len(header) > MAX_HEADER_BYTES:
        raise ValueError(
            f"Can't save {path}: the header would be {len(header):,} bytes, more than the "
            f"{MAX_HEADER_BYTES:,} load_embeddings reads. Shorten the prompt "
            f"({len(fp.prompt):,} characters)."
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    _write(path, header, tensors)
    return path


def load_embeddings(
    path: str | Path, expected: Fingerprint | None = None, *, force: bool = False
) -> EmbeddingFile:
    """Read an embedding file; with `expected`, refuse one made with other settings.

    The file must match its own fingerprint (dtype, shape, finite vectors, well-formed
    safetensors), or it raises ValueError: it is damaged, and would search wrongly.

    Args:
        path: A file written by `save_embeddings`.
        expected: `fingerprint(model, ...)` for the model and settings you search with.
            Model, revision, task, prompt and dims must match.
        force: Load despite a mismatch (only when you know the vectors are compatible).
    """
    path = Path(path)
    with _open_regular(path) as f:
        try:
            found, specs = _read_header(f)
        except ValueError as e:
            raise ValueError(f"{path}: {str(e).rstrip('.')}. {DAMAGED}") from None
        # Before the data is read: a mismatch need not wait for gigabytes.
        if expected is not None:
            check_fingerprint(found, expected, force=force, where=str(path))
        try:
            tensors = {name: _read_array(f, *spec) for name, spec in specs.items()}
            _check_values(tensors["embeddings"], found)
            if "ranges" in tensors:
                check_ranges(tensors["ranges"], found.dims)
        except ValueError as e:
            raise ValueError(f"{path}: {str(e).rstrip('.')}. {DAMAGED}") from None
    return EmbeddingFile(tensors["embeddings"], found, tensors.get("ranges"))


def check_fingerprint(
    found: Fingerprint, expected: Fingerprint, *, force: bool = False, where: str = "The corpus"
) -> None:
    """Raise ValueError naming every setting where `found` differs from `expected`."""
    diffs = [
        f"{name} {getattr(found, name)!r} (expected {getattr(expected, name)!r})"
        for name in COMPARED
        if getattr(found, name) != getattr(expected, name)
    ]
    if diffs and not force:
        raise ValueError(
            f"{where} was embedded with other settings: {'; '.join(diffs)}. Its vectors are not "
            "comparable with yours: re-embed it, or pass force=True if you know they are."
        )


# --- the checks, shared by save and load ------------------------------------------------


def _check_fields(data) -> Fingerprint:
    """A Fingerprint from decoded JSON, or a ValueError naming the first bad field."""
    if not isinstance(data, dict):
        raise ValueError(f"the fingerprint is {_short(data)}, not a JSON object")
    missing = [name for name in FIELDS if name not in data]
    if missing:
        raise ValueError(f"the fingerprint has no {', '.join(missing)}")
    for name, (valid, want) in FIELDS.items():
        if not valid(data[name]):
            raise ValueError(f"fingerprint field {name} is {_short(data[name])}; use {want}")
    # Fields a newer release may add are ignored, so this one still reads its files.
    return Fingerprint(**{name: data[name] for name in FIELDS})


def _check_layout(dtype: np.dtype, shape: tuple, fp: Fingerprint) -> None:
    """Vectors are 2-D, with exactly the dtype and width that the fingerprint implies."""
    want, width = storage(fp.dims, fp.precision)
    if len(shape) != 2 or shape[1] != width or np.dtype(dtype) != want:
        raise ValueError(
            f"the fingerprint says {fp.precision} vectors of {fp.dims} dimensions, which are "
            f"{want} arrays of shape (n, {width}); got {np.dtype(dtype)} {tuple(shape)}"
        )


def _check_values(emb: np.ndarray, fp: Fingerprint) -> None:
    """No NaN/inf rows (NaN scores break a whole top k); no set padding bits in binary rows
    (they would count in every Hamming distance)."""
    bad = nonfinite_rows(emb)
    if bad:
        raise ValueError(f"{bad} of {len(emb)} rows hold NaN or inf values")
    spare = -fp.dims % 8
    if fp.precision in BINARY_PRECISIONS and spare and len(emb):
        last = emb[:, -1].view(np.uint8) ^ (0x80 if fp.precision == "binary" else 0)
        bad = np.count_nonzero(last & ((1 << spare) - 1))
        if bad:
            raise ValueError(
                f"{bad} row(s) have padding bits set; with {fp.dims} dimensions the last "
                f"{spare} bits of each row are 0"
            )


def _short(value) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


# --- safetensors, read and written by hand so that nothing untrusted is trusted ---------


def _open_regular(path: Path):
    """Open `path` for reading; refuse folders, FIFOs and devices before any read."""
    # O_NONBLOCK: opening a FIFO must not wait for a writer; regular files ignore it.
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0)
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        raise FileNotFoundError(f"No embedding file at {path}.") from None
    mode = os.fstat(fd).st_mode  # of what was opened: no race with a swapped path
    if not stat.S_ISREG(mode):
        os.close(fd)
        kind = "a directory" if stat.S_ISDIR(mode) else "a FIFO, socket or device"
        raise ValueError(
            f"{path} is {kind}, not a regular file. Pass a file written by save_embeddings."
        )
    return os.fdopen(fd, "rb", buffering=0)


def _read_header(f) -> tuple[Fingerprint, dict]:
    """The fingerprint and {name: (offset, dtype, shape)}, checked before any data is read."""
    size = os.fstat(f.fileno()).st_size
    if size < 8:
        raise ValueError(f"it has {size} bytes, too few for a safetensors file")
    length = bytearray(8)
    _read_into(f, length)
    (n,) = struct.unpack("<Q", length)
    if n > MAX_HEADER_BYTES:
        raise ValueError(f"it declares a header of {n:,} bytes (at most {MAX_HEADER_BYTES:,})")
    if 8 + n > size:
        raise ValueError(f"it is truncated: a header of {n:,} bytes in a {size:,}-byte file")
    raw = bytearray(n)
    _read_into(f, raw)
    try:
        header = json.loads(raw)
    except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
        header = None
    if not isinstance(header, dict):
        raise ValueError("its header is not a JSON object: it is not a safetensors file")
    meta = header.pop("__metadata__", None)
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise ValueError(f"it is not an mlx_jina embedding file (no format {FORMAT!r})")
    if "fingerprint" not in meta:
        raise ValueError("it has no fingerprint in its metadata")
    try:
        data = json.loads(meta["fingerprint"])
    except (TypeError, ValueError, RecursionError):
        raise ValueError(f"its fingerprint is not JSON: {_short(meta['fingerprint'])}") from None
    fp = _check_fields(data)
    _check_names(header, fp)
    specs = _tensor_specs(header, 8 + n, size)
    _check_layout(*specs["embeddings"][1:], fp)
    if "ranges" in specs and specs["ranges"][1:] != (np.dtype("<f4"), (2, fp.dims)):
        _, dtype, shape = specs["ranges"]
        raise ValueError(f"its ranges are {dtype} {shape}; they must be float32 (2, {fp.dims})")
    return fp, specs


def _check_names(header: dict, fp: Fingerprint) -> None:
    """'embeddings', plus 'ranges' for int8/uint8, and nothing else."""
    if "embeddings" not in header:
        raise ValueError("it has no 'embeddings' tensor")
    extra = sorted(set(header) - {"embeddings", "ranges"})
    if extra:
        raise ValueError(
            f"it has unexpected tensor(s) {', '.join(map(repr, extra))}; embedding files "
            "hold 'embeddings' and, for int8/uint8, 'ranges'"
        )
    if "ranges" in header and fp.precision not in SCALAR_PRECISIONS:
        raise ValueError(f"it has ranges, which apply to int8/uint8 vectors, not {fp.precision}")


def _tensor_specs(header: dict, start: int, size: int) -> dict:
    """{name: (file offset, dtype, shape)}; the tensors must fill the data exactly."""
    specs, spans = {}, []
    for name, entry in header.items():
        if not (isinstance(entry, dict) and _naturals(entry.get("shape"))
                and _naturals(entry.get("data_offsets"), 2)):
            raise ValueError(f"tensor {name!r} has a malformed entry {_short(entry)}")
        if not isinstance(entry.get("dtype"), str) or entry["dtype"] not in ST_DTYPES:
            raise ValueError(
                f"tensor {name!r} has dtype {_short(entry.get('dtype'))}; embedding files "
                f"use {', '.join(ST_DTYPES)}"
            )
        dtype, shape = ST_DTYPES[entry["dtype"]], tuple(entry["shape"])
        begin, end = entry["data_offsets"]
        if end - begin != math.prod(shape) * dtype.itemsize:
            raise ValueError(f"tensor {name!r} has {end - begin} bytes, not {dtype} {shape}")
        specs[name] = (start + begin, dtype, shape)
        spans.append((begin, end))
    # safetensors packs tensors back to back: no gaps, no overlaps, nothing after them.
    edge = 0
    for begin, end in sorted(spans):
        if begin != edge:
            raise ValueError(f"its tensor data has a gap or an overlap at byte {begin:,}")
        edge = end
    if start + edge != size:
        raise ValueError(
            f"it is truncated or corrupt: its header describes {start + edge:,} bytes, "
            f"the file has {size:,}"
        )
    return specs


def _naturals(value, length: int | None = None) -> bool:
    """A JSON list of non-negative integers (of `length` items, if given)?"""
    return (isinstance(value, list) and all(type(v) is int and v >= 0 for v in value)
            and length in (None, len(value)))


def _read_array(f, offset: int, dtype: np.dtype, shape: tuple) -> np.ndarray:
    array = np.empty(shape, dtype.newbyteorder("="))
    f.seek(offset)
    _read_into(f, array.reshape(-1).view(np.uint8))
    return array


def _read_into(f, buffer) -> None:
    """Fill `buffer`; a raw read may stop short (on Linux, at about 2 GB)."""
    view, done = memoryview(buffer), 0
    while done < len(view):
        got = f.readinto(view[done:])
        if not got:
            raise ValueError("it is truncated: it ended while it was read")
        done += got


def _header(tensors: dict[str, np.ndarray], metadata: dict[str, str]) -> bytes:
    """The length-prefixed JSON header of a safetensors file holding `tensors` in order."""
    codes = {dtype: code for code, dtype in ST_DTYPES.items()}
    header, offset = {"__metadata__": metadata}, 0
    for name, array in tensors.items():
        header[name] = {"dtype": codes[array.dtype.newbyteorder("<")],
                        "shape": list(array.shape),
                        "data_offsets": [offset, offset + array.nbytes]}
        offset += array.nbytes
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)  # as safetensors does: the data starts 8-byte aligned
    return struct.pack("<Q", len(raw)) + raw


def _write(path: Path, header: bytes, tensors: dict[str, np.ndarray]) -> None:
    """The safetensors file, written beside `path` and renamed over it (atomic.py)."""
    with replacing_file(path) as f:
        f.write(header)
        for array in tensors.values():
            array = np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<"))
            f.write(array.reshape(-1).view(np.uint8).data)
