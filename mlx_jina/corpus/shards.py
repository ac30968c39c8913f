"""Shard files: written atomically, trusted only after checking, joined into one file.

Each finished shard is an embedding file (`save_embeddings`: fingerprinted, written
beside and renamed). The manifest records it as pending (rows, bytes and sha256, known
before the write) before the file is written, and lists it as finished only after the
file is in place; a listed shard is checked against its record before it is trusted. The
pending shard a killed run left, and temporary files of the job's writes, are deleted; a
file the manifest doesn't prove is the job's is never deleted or overwritten (manifest.py).

Shards may finish in any order (`write` and `record` take the index), so a later
scheduler can hand them to other processes. When every shard is in, `join` streams them,
in order, into one embedding file: `.embeddings.safetensors.partial` grows shard by shard
(the manifest records how far; a killed run cuts it back there and goes on), each shard is
deleted once the manifest counts it joined, and the finished file is renamed to
`embeddings.safetensors`. The disk holds the corpus once plus one shard, never twice.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from ..retrieval.store import (
    Fingerprint,
    embedding_header,
    load_embeddings,
    save_embeddings,
)
from .manifest import FINAL, PARTIAL, TEMP, Manifest, file_sha256, matches, shard_name

Step = Callable[[str, int], None]  # called after each step that a kill may follow


@contextmanager
def naming(path: Path) -> Iterator[None]:
    """Name `path` in an OSError that names no file (a failed write(): a full disk)."""
    try:
        yield
    except OSError as e:
        e.filename = e.filename or str(path)
        raise


def expected_record(fp: Fingerprint, vectors: np.ndarray, name: str) -> dict:
    """The record of the file `save_embeddings` will write for `vectors`: its size and
    sha256 computed from the same header and bytes, before anything is written."""
    header = embedding_header(fp, len(vectors))
    data = np.ascontiguousarray(vectors, dtype=vectors.dtype.newbyteorder("<"))
    digest = hashlib.sha256(header)
    digest.update(data.reshape(-1).view(np.uint8).data)
    return {"file": name, "rows": len(vectors), "bytes": len(header) + data.nbytes,
            "sha256": digest.hexdigest()}  # fmt: skip


class ShardStore:
    """The job folder's shards and result, as the manifest describes them."""

    def __init__(self, folder: Path, manifest: Manifest, fp: Fingerprint):
        self.folder, self.manifest, self.fp = folder, manifest, fp

    @property
    def joined(self) -> int:
        """Shards already moved into the partial result (their files are gone)."""
        m = self.manifest
        return m.shard_count if m.complete else (m.final or {}).get("appended", 0)

    def done(self, index: int) -> bool:
        return self.manifest.complete or index in self.manifest.shards

    def write(self, index: int, vectors: np.ndarray) -> dict:
        """Write shard `index` (atomically), recorded as pending first; its record, for
        `record` to list."""
        path = self.folder / shard_name(index)
        self.manifest.pending = expected_record(self.fp, vectors, path.name)
        self.manifest.save(self.folder)  # a kill from here on leaves a file it proves
        with naming(path):
            save_embeddings(path, vectors, self.fp)
        return {"file": path.name, "rows": len(vectors), "bytes": path.stat().st_size,
                "sha256": file_sha256(path)}  # fmt: skip

    def record(self, index: int, entry: dict, tokens: int) -> None:
        """List a written shard as finished: from now on it is never embedded again."""
        self.manifest.shards[index] = entry | {"tokens": tokens}
        self.manifest.pending = None
        self.manifest.save(self.folder)

    def verify(self) -> list[int]:
        """Drop from the manifest every listed shard that is not its recorded file (a
        file that differs from its record was refused before: manifest.job_files);
        returns their indices (they will be embedded again)."""
        bad = [i for i, entry in self.manifest.shards.items()
               if i >= self.joined and not self._intact(entry)]  # fmt: skip
        for i in bad:
            del self.manifest.shards[i]
        if bad:
            self.manifest.save(self.folder)
        return bad

    def _intact(self, entry: dict) -> bool:
        path = self.folder / entry["file"]
        try:
            if path.stat().st_size != entry["bytes"] or file_sha256(path) != entry.get("sha256"):
                return False
            return len(load_embeddings(path, self.fp).embeddings) == entry["rows"]
        except (OSError, ValueError):
            return False

    def clean(self) -> list[str]:
        """Delete what killed runs left that the manifest proves is the job's: the pending
        shard, temporary files of the job's writes, shards already joined; returns their
        names."""
        m = self.manifest
        gone = [e["file"] for i, e in m.shards.items() if i < self.joined]
        if m.pending is not None:
            gone.append(m.pending["file"])
        records = {r["file"]: r for r in [*m.shards.values(), *([m.pending] if m.pending else [])]}
        removed = []
        for entry in sorted(self.folder.iterdir()):
            name, temp = entry.name, TEMP.fullmatch(entry.name)
            proven = name in gone and matches(entry, records[name])
            if (proven or temp and temp[1] in {"manifest.json", *records}) and entry.is_file():
                entry.unlink()
                removed.append(name)
        if m.pending is not None:
            m.pending = None
            m.save(self.folder)
        return removed

    def join(self, step: Step) -> Path:
        """Stream the shards, in order, into the result file (see the module docstring)."""
        m, final, partial = self.manifest, self.folder / FINAL, self.folder / PARTIAL
        if m.complete:
            if not final.is_file() or final.stat().st_size != m.final["bytes"]:
                raise ValueError(
                    f"{final} is missing or has changed since the job finished. Pass "
                    "force=True (--force) to embed the corpus again."
                )
            return final
        n = m.shard_count
        if missing := [i for i in range(n) if i not in m.shards]:
            raise RuntimeError(f"shards {missing[:5]} are not finished; can't join yet")
        if m.final is None:  # recorded first: the partial file is the job's from its start
            m.final = {"appended": 0, "bytes": len(embedding_header(self.fp, m.texts))}
            m.save(self.folder)
        if m.final["appended"] < n:
            with naming(partial):
                self._append(partial, n, step)
        if partial.exists():
            os.replace(partial, final)
            _sync_folder(self.folder)
            step("final-renamed", 0)
        if not final.is_file() or final.stat().st_size != m.final["bytes"]:
            raise ValueError(
                f"{final} is missing or has the wrong size; the shards joined into it are "
                "gone. Pass force=True (--force) to embed the corpus again."
            )
        m.final = {"file": FINAL, "bytes": m.final["bytes"], "rows": m.texts}
        m.complete = True
        m.save(self.folder)
        return final

    def _append(self, partial: Path, n: int, step: Step) -> None:
        m = self.manifest
        start = m.final["appended"] == 0
        if not start and (not partial.is_file() or partial.stat().st_size < m.final["bytes"]):
            raise ValueError(
                f"{partial} is missing or shorter than the manifest records; the shards "
                "joined into it are gone. Pass force=True (--force) to embed the corpus again."
            )
        with open(partial, "wb" if start else "r+b") as f:
            if start:
                f.write(embedding_header(self.fp, m.texts))
            f.truncate(m.final["bytes"])  # drop what a killed append left half-written
            f.seek(m.final["bytes"])
            for index in range(m.final["appended"], n):
                entry = m.shards[index]
                if not self._intact(entry):
                    raise ValueError(
                        f"shard file {entry['file']} changed after it was checked; pass "
                        "force=True (--force) to embed the corpus again."
                    )
                rows = load_embeddings(self.folder / entry["file"], self.fp).embeddings
                f.write(np.ascontiguousarray(rows, dtype=rows.dtype.newbyteorder("<")).data)
                f.flush()
                os.fsync(f.fileno())
                step("final-appended", index)
                m.final = {"appended": index + 1, "bytes": f.tell()}
                m.save(self.folder)
                step("final-recorded", index)
                (self.folder / entry["file"]).unlink()


def _sync_folder(folder: Path) -> None:
    """Make a rename durable (not every platform can sync a folder)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
