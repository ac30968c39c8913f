"""Embedding files that remember how they were made, so mixed settings are caught.

A file is safetensors: the vectors under "embeddings" (plus "ranges" for int8/uint8
with custom ranges) and a JSON fingerprint in the header metadata: model id, revision,
task, prompt, dims, precision and the mlx_jina version.

Files are untrusted input: load_embeddings checks every byte of the layout against the
file's own fingerprint before it returns vectors, because a wrong shape or a NaN row does
not fail later, it silently gives wrong search results. save_embeddings writes atomically.

An embed job's result (mlx_jina/corpus/) is one such file, `embeddings.safetensors`, read
memory-mapped (`np.memmap`, corpus/results.py), so a corpus larger than memory is searched
a chunk at a time. Its values are checked a chunk at a time too.
"""

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import mlx.core as mx
import numpy as np

from ..atomic import replacing_file
from ..checkpoint.safetensors import (
    DamagedFile,
    NUMPY_DTYPES,
    Header,
    header_bytes,
    read_array,
    read_header,
    write_tensors,
)
from ..checkpoint.identity import comparable
from ..tasks import MIN_DIM
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
# (a float query searches a binary corpus, and a new release reads old files). The model
# is compared by its content identity; by its name and revision only when a side has none
# or one of another scheme (files from earlier releases, or an Embedder built by hand).
COMPARED = ("identity", "task", "prompt", "dims")
BY_NAME = ("model", "revision")
# Ours hold a fingerprint and two tensor entries, about 1 KB; never read a giant one.
MAX_HEADER_BYTES = 1 << 20
# The safetensors dtypes of the precisions' arrays (and of float32 ranges).
FILE_DTYPES = ("F32", "F16", "I8", "U8")
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
    identity: str | None = None  # the model's content identity (checkpoint/identity.py)


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
    from .._version import __version__

    check_precision(precision)
    # As encode resolves them: a Jina API task name picks the prompt too, and a model
    # loaded with truncate_dim= cuts every call's vectors to it.
    task, prompt_name = model.resolve_task_prompt(task, prompt_name, prompt)
    if truncate_dim is None:
        truncate_dim = getattr(model, "truncate_dim", None)
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
        identity=getattr(model, "identity", None),
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
    "identity": (lambda v: v is None or isinstance(v, str), "a string or null"),
}
OPTIONAL = ("identity",)  # absent from files written before it existed


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
    header = header_bytes(tensors, {"format": FORMAT, "fingerprint": json.dumps(asdict(fp))})
    if len(header) > MAX_HEADER_BYTES:
        raise ValueError(
            f"Can't save {path}: the header would be {len(header):,} bytes, more than the "
            f"{MAX_HEADER_BYTES:,} load_embeddings reads. Shorten the prompt "
            f"({len(fp.prompt):,} characters)."
        )
    with replacing_file(path) as f:  # beside `path`, synced, then renamed over it
        write_tensors(f, header, tensors)
    return path


def embedding_header(fp: Fingerprint, rows: int) -> bytes:
    """The header `save_embeddings` writes for `rows` vectors of `fp`, for a writer that
    streams the rows after it (the embed job joining its shards)."""
    dtype, width = storage(fp.dims, fp.precision)
    shape = np.broadcast_to(np.zeros((), dtype), (rows, width))  # a shape, no memory
    return header_bytes(
        {"embeddings": shape}, {"format": FORMAT, "fingerprint": json.dumps(asdict(fp))}
    )


def load_embeddings(
    path: str | Path,
    expected: Fingerprint | None = None,
    *,
    force: bool = False,
    mmap: bool = False,
) -> EmbeddingFile:
    """Read an embedding file; with `expected`, refuse one made with other settings.
    `mlx_jina.load_embeddings` (corpus/results.py) also reads an embed job's folder, and
    documents the arguments.

    The file must match its own fingerprint (dtype, shape, finite vectors, well-formed
    safetensors), or it raises ValueError: it is damaged, and would search wrongly.
    """
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(
            f"{path} is a folder; mlx_jina.load_embeddings reads an embed job's folder."
        )
    if not path.exists():
        raise FileNotFoundError(f"No embedding file at {path}.")
    try:
        header = read_header(path, MAX_HEADER_BYTES)
        found = _fingerprint_of(header)
    except DamagedFile as e:
        raise ValueError(f"{path}: {e.problem}. {DAMAGED}") from None
    except ValueError as e:
        raise ValueError(f"{path}: {str(e).rstrip('.')}. {DAMAGED}") from None
    # Before the data is read: a mismatch need not wait for gigabytes.
    if expected is not None:
        check_fingerprint(found, expected, force=force, where=str(path))
    try:
        tensors = {name: read_array(path, info) for name, info in header.tensors.items()
                   if not (mmap and name == "embeddings")}  # fmt: skip
        if mmap:
            tensors["embeddings"] = _mapped(path, header.tensors["embeddings"], found)
        else:
            _check_values(tensors["embeddings"], found)
        if "ranges" in tensors:
            check_ranges(tensors["ranges"], found.dims)
    except ValueError as e:
        raise ValueError(f"{path}: {str(e).rstrip('.')}. {DAMAGED}") from None
    return EmbeddingFile(tensors["embeddings"], found, tensors.get("ranges"))


# Bytes read per check when mapping: bounds the memory the check takes.
CHECK_BYTES = 16 * 2**20


def _mapped(path: Path, info, fp: Fingerprint) -> np.ndarray:
    """The vectors as a read-only np.memmap, checked by chunks read from the file (not
    through the map, which would keep every page resident)."""
    dtype = np.dtype(NUMPY_DTYPES[info.dtype])
    rows, width = info.shape
    step = max(1, CHECK_BYTES // max(1, width * dtype.itemsize))
    with open(path, "rb") as f:
        for start in range(0, rows, step):
            f.seek(info.offset + start * width * dtype.itemsize)
            n = min(step, rows - start)
            chunk = np.fromfile(f, dtype, n * width)
            if chunk.size != n * width:
                raise ValueError("it is truncated: it ended while it was read")
            _check_values(chunk.reshape(n, width), fp)
    if rows == 0:  # nothing to map: mmap refuses an empty range
        return np.zeros((0, width), dtype)
    return np.memmap(path, dtype, mode="r", offset=info.offset, shape=(rows, width))


def check_fingerprint(
    found: Fingerprint, expected: Fingerprint, *, force: bool = False, where: str = "The corpus"
) -> None:
    """Raise ValueError naming every setting where `found` differs from `expected`."""
    names = [n for n in COMPARED if n != "identity"]
    if not comparable(found.identity, expected.identity):
        names = [*BY_NAME, *names]
    elif found.identity != expected.identity:
        # Say which model each side is, by the names people know them by.
        names = ["identity", *names]
        if found.model != expected.model:
            names.insert(0, "model")
    diffs = [
        f"{name} {getattr(found, name)!r} (expected {getattr(expected, name)!r})"
        for name in names
        if name == "identity"
        or (name == "model" and not same_model(found.model, expected.model))
        or (name != "model" and getattr(found, name) != getattr(expected, name))
    ]
    if diffs and not force:
        raise ValueError(
            f"{where} was embedded with other settings: {'; '.join(diffs)}. Its vectors are not "
            "comparable with yours: re-embed it, or pass force=True if you know they are."
        )


def same_model(a: str, b: str) -> bool:
    """The same model id, or two spellings of one local folder: how models without a
    content identity (files and jobs from earlier releases) are compared."""
    if a == b:
        return True
    try:
        return Path(a).is_dir() and Path(a).resolve() == Path(b).resolve()
    except OSError:
        return False


# --- the checks, shared by save and load ------------------------------------------------


def _check_fields(data) -> Fingerprint:
    """A Fingerprint from decoded JSON, or a ValueError naming the first bad field."""
    if not isinstance(data, dict):
        raise ValueError(f"the fingerprint is {_short(data)}, not a JSON object")
    missing = [name for name in FIELDS if name not in data and name not in OPTIONAL]
    if missing:
        raise ValueError(f"the fingerprint has no {', '.join(missing)}")
    for name, (valid, want) in FIELDS.items():
        if not valid(data[name]):
            raise ValueError(f"fingerprint field {name} is {_short(data[name])}; use {want}")
    # Fields a newer release may add are ignored, so this one still reads its files.
    return Fingerprint(**{name: data[name] for name in FIELDS if name in data})


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


def _fingerprint_of(header: Header) -> Fingerprint:
    """The file's fingerprint, with its tensors checked against it (no data read)."""
    meta = header.metadata
    if meta.get("format") != FORMAT:
        raise ValueError(f"it is not an mlx_jina embedding file (no format {FORMAT!r})")
    if "fingerprint" not in meta:
        raise ValueError("it has no fingerprint in its metadata")
    try:
        data = json.loads(meta["fingerprint"])
    except (TypeError, ValueError, RecursionError):
        raise ValueError(f"its fingerprint is not JSON: {_short(meta['fingerprint'])}") from None
    fp = _check_fields(data)
    _check_names(header.tensors, fp)
    for name, tensor in header.tensors.items():
        if tensor.dtype not in FILE_DTYPES:
            raise ValueError(
                f"tensor {name!r} has dtype {tensor.dtype!r}; embedding files use "
                f"{', '.join(FILE_DTYPES)}"
            )
    embeddings = header.tensors["embeddings"]
    _check_layout(np.dtype(NUMPY_DTYPES[embeddings.dtype]), embeddings.shape, fp)
    ranges = header.tensors.get("ranges")
    if ranges is not None and (ranges.dtype, ranges.shape) != ("F32", (2, fp.dims)):
        dtype = np.dtype(NUMPY_DTYPES[ranges.dtype])
        raise ValueError(
            f"its ranges are {dtype} {ranges.shape}; they must be float32 (2, {fp.dims})"
        )
    return fp


def _check_names(tensors: dict, fp: Fingerprint) -> None:
    """'embeddings', plus 'ranges' for int8/uint8, and nothing else."""
    if "embeddings" not in tensors:
        raise ValueError("it has no 'embeddings' tensor")
    extra = sorted(set(tensors) - {"embeddings", "ranges"})
    if extra:
        raise ValueError(
            f"it has unexpected tensor(s) {', '.join(map(repr, extra))}; embedding files "
            "hold 'embeddings' and, for int8/uint8, 'ranges'"
        )
    if "ranges" in tensors and fp.precision not in SCALAR_PRECISIONS:
        raise ValueError(f"it has ranges, which apply to int8/uint8 vectors, not {fp.precision}")
