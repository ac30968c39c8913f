"""Embedding files that remember how they were made, so mixed settings are caught.

A file is safetensors: the vectors under "embeddings" (plus "ranges" for int8/uint8
with custom ranges) and a JSON fingerprint in the header metadata: model id, revision,
task, prompt, dims, precision and the mlx_jina version.
"""

import json
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import mlx.core as mx
import numpy as np
from safetensors.numpy import load_file, save_file

from .precision import BINARY_PRECISIONS, SCALAR_PRECISIONS, check_precision

FORMAT = "mlx_jina.embeddings/1"
# Vectors agree only if these match; precision and version are recorded, not compared
# (a float query searches a binary corpus, and a new release reads old files).
COMPARED = ("model", "revision", "task", "prompt", "dims")
DTYPES = {"float32": "float32", "float16": "float16", "int8": "int8", "uint8": "uint8",
          "binary": "int8", "ubinary": "uint8"}


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
    if not isinstance(dims, int) or not 1 <= dims <= model.dim:
        raise ValueError(f"truncate_dim={truncate_dim!r}; use 1 to {model.dim} or None.")
    return Fingerprint(
        model=model.source,
        revision=getattr(model, "revision", None),
        task=task,
        prompt=model.resolve_prompt(prompt_name, prompt, task),
        dims=dims,
        precision=precision,
        version=__version__,
    )


def save_embeddings(
    path: str | Path,
    embeddings: np.ndarray | mx.array,
    fingerprint: Fingerprint,
    *,
    ranges: np.ndarray | None = None,
) -> Path:
    """Write `embeddings` (2-D, as `encode` returned them) with their fingerprint.

    `ranges` are the int8/uint8 ranges you passed to `quantize_embeddings`, if any.
    """
    emb = np.array(embeddings) if isinstance(embeddings, mx.array) else np.asarray(embeddings)
    fp = fingerprint
    width = (fp.dims + 7) // 8 if fp.precision in BINARY_PRECISIONS else fp.dims
    if emb.ndim != 2 or emb.shape[1] != width or emb.dtype.name != DTYPES[fp.precision]:
        raise ValueError(
            f"The fingerprint says {fp.precision} vectors of {fp.dims} dimensions, which are "
            f"{DTYPES[fp.precision]} arrays of shape (n, {width}); got {emb.dtype.name} "
            f"{emb.shape}. Build the fingerprint with the arguments you passed to encode()."
        )
    tensors = {"embeddings": np.ascontiguousarray(emb)}
    if ranges is not None:
        if fp.precision not in SCALAR_PRECISIONS:
            raise ValueError(f"ranges apply to int8/uint8 vectors, not {fp.precision}.")
        tensors["ranges"] = np.asarray(ranges, dtype=np.float32).reshape(2, fp.dims)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    metadata = {"format": FORMAT, "fingerprint": json.dumps(asdict(fp))}
    save_file(tensors, str(path), metadata=metadata)
    return path


def load_embeddings(
    path: str | Path, expected: Fingerprint | None = None, *, force: bool = False
) -> EmbeddingFile:
    """Read an embedding file; with `expected`, refuse one made with other settings.

    Args:
        path: A file written by `save_embeddings`.
        expected: `fingerprint(model, ...)` for the model and settings you search with.
            Model, revision, task, prompt and dims must match.
        force: Load despite a mismatch (only when you know the vectors are compatible).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"No embedding file at {path}.")
    from safetensors import safe_open

    with safe_open(str(path), framework="numpy") as f:
        meta = f.metadata() or {}
    if meta.get("format") != FORMAT:
        raise ValueError(
            f"{path} is not an mlx_jina embedding file; write it with save_embeddings."
        )
    found = Fingerprint(**{k: v for k, v in json.loads(meta["fingerprint"]).items()
                           if k in {f.name for f in fields(Fingerprint)}})
    if expected is not None:
        check_fingerprint(found, expected, force=force, where=str(path))
    tensors = load_file(str(path))
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
