"""The job folder: which files are the job's own, its manifest, its settings and its lock.

The folder holds `manifest.json`, `shard-000000.safetensors`... (one fingerprinted
embedding file per finished shard, until they are joined), `.embeddings.safetensors.partial`
while they are joined, then `embeddings.safetensors`, the result. The manifest records the
settings, the input's identity and every finished shard (rows, tokens, bytes, sha256); it
is replaced atomically after each step, so it always describes files that exist whole.
Only files with these names (and the temporary files of their atomic writes) are ever
deleted; anything else in the folder is left alone.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from ..atomic import replacing_file

try:
    import fcntl
except ImportError:  # Windows: no flock, so no guard against two jobs in one folder
    fcntl = None

FORMAT = "mlx_jina.corpus/1"
MANIFEST = "manifest.json"
FINAL = "embeddings.safetensors"
PARTIAL = ".embeddings.safetensors.partial"
SHARD = re.compile(r"shard-(\d{6,})\.safetensors")
# What a killed replacing_file() leaves: `.NAME.<8 hex>.tmp`, NAME one of ours.
TEMP = re.compile(r"\.(manifest\.json|shard-\d{6,}\.safetensors)\.[0-9a-f]{8}\.tmp")
MANIFEST_LIMIT = 256 * 2**20
# Settings recorded but not compared: a new release resumes an old job.
NOT_COMPARED = ("version",)


def shard_name(index: int) -> str:
    return f"shard-{index:06d}.safetensors"


def is_job_file(name: str) -> bool:
    return name in (MANIFEST, FINAL, PARTIAL) or bool(SHARD.fullmatch(name) or TEMP.fullmatch(name))


@dataclass
class Manifest:
    """What the job is and how far it got. `shards` maps a shard index to its record."""

    settings: dict
    input: dict
    shard_size: int
    shards: dict[int, dict] = field(default_factory=dict)
    texts: int | None = None  # the input's text count, once known
    final: dict | None = None  # {"appended": k, "bytes": b} while joining; then the result
    complete: bool = False

    @property
    def shard_count(self) -> int | None:
        return None if self.texts is None else -(-self.texts // self.shard_size)

    def save(self, folder: Path) -> None:
        data = {
            "format": FORMAT, "settings": self.settings, "input": self.input,
            "shard_size": self.shard_size, "texts": self.texts, "complete": self.complete,
            "final": self.final, "shards": {str(i): s for i, s in sorted(self.shards.items())},
        }  # fmt: skip
        with replacing_file(folder / MANIFEST) as f:
            f.write((json.dumps(data, indent=1) + "\n").encode())


def read_manifest(folder: Path) -> Manifest | None:
    """The folder's manifest, None if it has none; ValueError if it is not ours or damaged."""
    from ..checkpoint.safetensors import read_json

    path = folder / MANIFEST
    if not path.exists():
        return None
    data = read_json(path, MANIFEST_LIMIT)
    try:
        if data.get("format") != FORMAT:
            raise ValueError(f"its format is {data.get('format')!r}, not {FORMAT!r}")
        shards = {int(i): _shard_record(s) for i, s in data["shards"].items()}
        manifest = Manifest(
            settings=dict(data["settings"]), input=dict(data["input"]),
            shard_size=_count(data["shard_size"], 1), shards=shards,
            texts=None if data["texts"] is None else _count(data["texts"], 0),
            final=_final_record(data["final"]), complete=data["complete"] is True,
        )  # fmt: skip
        if manifest.complete and (manifest.final is None or manifest.texts is None):
            raise ValueError("it says complete but records no result")
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise ValueError(
            f"{path} is damaged or not an mlx_jina corpus manifest ({e}). Pass force=True "
            "(--force) to start the job over."
        ) from None
    return manifest


def _count(value, low: int) -> int:
    if type(value) is not int or value < low:
        raise ValueError(f"{value!r} is not an integer >= {low}")
    return value


def _shard_record(record) -> dict:
    if not isinstance(record, dict) or not SHARD.fullmatch(str(record.get("file"))):
        raise ValueError(f"a shard record is {str(record)[:80]}")
    for key in ("rows", "tokens", "bytes"):
        _count(record.get(key), 0)
    return record


def _final_record(record) -> dict | None:
    """None, {"appended": k, "bytes": b} while joining, or the finished result's record."""
    if record is None:
        return None
    if not isinstance(record, dict):
        raise ValueError(f"its final record is {str(record)[:80]}")
    _count(record.get("bytes"), 0)
    if "appended" in record:
        _count(record["appended"], 0)
    elif record.get("file") != FINAL:
        raise ValueError(f"its final record names {str(record.get('file'))[:80]}")
    return record


def differences(found: dict, wanted: dict, what: str) -> list[str]:
    """`what NAME VALUE (the job has VALUE)` for each compared key that differs."""
    return [
        f"{what} {key} {wanted.get(key)!r} (the job in the folder has {found.get(key)!r})"
        for key in sorted(set(found) | set(wanted))
        if key not in NOT_COMPARED and found.get(key) != wanted.get(key)
    ]


@contextmanager
def job_lock(folder: Path) -> Iterator[None]:
    """Hold the folder's lock: two jobs in one folder would overwrite each other's shards.
    The OS releases it when the process dies, even by SIGKILL."""
    if fcntl is None:
        yield
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ValueError(
                f"Another embed job is running in {folder}; wait for it, or choose another "
                "--out-dir."
            ) from None
        except OSError:
            pass  # a file system without flock
        yield
    finally:
        os.close(fd)


def remove_job_files(folder: Path) -> list[str]:
    """Delete the job's own files (force=True); returns their names. Nothing else goes."""
    removed = []
    for entry in sorted(folder.iterdir()):
        if is_job_file(entry.name) and entry.is_file() and not entry.is_symlink():
            entry.unlink()
            removed.append(entry.name)
    return removed


def finished_file(folder: Path) -> tuple[Path, int]:
    """The result of a finished job in `folder` and its row count, or a ValueError that
    says how far the job got."""
    manifest = read_manifest(folder)
    if manifest is None:
        raise ValueError(
            f"{folder} is a directory without {MANIFEST}, not an embed job's folder; pass an "
            "embedding file, or the out_dir of an embed_corpus job."
        )
    if not manifest.complete:
        done, total = len(manifest.shards), manifest.shard_count
        raise ValueError(
            f"The embed job in {folder} is not finished ({done} of {total or '?'} shards); "
            "run the same command again to finish it."
        )
    return folder / FINAL, manifest.texts or 0
