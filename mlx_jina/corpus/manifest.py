"""The job folder: which files are the job's own, its manifest, its settings and its lock.

The folder holds `manifest.json`, `shard-000000.safetensors`... (one fingerprinted
embedding file per finished shard, until they are joined), `.embeddings.safetensors.partial`
while they are joined, then `embeddings.safetensors`, the result. The manifest records the
settings, the input's identity and every finished shard (rows, tokens, bytes, sha256); it
is replaced atomically after each step, so it always describes files that exist whole.
Before a shard file or the partial result is written, the manifest records it as pending
(name, size, sha256), so a file a killed run leaves behind is still provably the job's.

A file is deleted (by `force`, or when a resumed run tidies up) only when the manifest
proves the job wrote it: its name, and its size and sha256 as recorded. A file that merely
has one of the job's names is left alone, and the job stops, naming it, where it would be
in the way; a `manifest.json` the job did not write is never used or deleted.
"""

from __future__ import annotations

import hashlib
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
# How every manifest `Manifest.save` writes begins: tells a damaged manifest of ours from
# a manifest.json of someone else's.
HEAD = b'{\n "format": "mlx_jina.corpus/1"'
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


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


class DamagedManifest(ValueError):
    """The job's own manifest, but damaged: `force` may start the job over."""


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
    pending: dict | None = None  # the shard being written: {"file", "rows", "bytes", "sha256"}

    @property
    def shard_count(self) -> int | None:
        return None if self.texts is None else -(-self.texts // self.shard_size)

    def save(self, folder: Path) -> None:
        data = {
            "format": FORMAT, "settings": self.settings, "input": self.input,
            "shard_size": self.shard_size, "texts": self.texts, "complete": self.complete,
            "final": self.final, "pending": self.pending,
            "shards": {str(i): s for i, s in sorted(self.shards.items())},
        }  # fmt: skip
        try:
            with replacing_file(folder / MANIFEST) as f:
                f.write((json.dumps(data, indent=1) + "\n").encode())
        except OSError as e:  # a full disk: say which file
            e.filename = e.filename or str(folder / MANIFEST)
            raise


def read_manifest(folder: Path) -> Manifest | None:
    """The folder's manifest, None if it has none. A ValueError if the job did not write
    it; a DamagedManifest (a ValueError too) if it did but it is damaged."""
    path = folder / MANIFEST
    if not path.exists():
        return None
    from ..checkpoint.safetensors import open_regular

    with open_regular(path, MANIFEST_LIMIT) as f:
        raw = f.read(MANIFEST_LIMIT + 1)
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError) as e:  # bad JSON or bad UTF-8
        data, broken = None, e
    ours = isinstance(data, dict) and data.get("format") == FORMAT
    # Cut short or garbled, a manifest of ours still begins as every one we write.
    if not ours and not (data is None and (raw.startswith(HEAD) or HEAD.startswith(raw))):
        raise ValueError(
            f"{path} was not written by an embed job (it is not an mlx_jina corpus "
            "manifest), so it is neither used nor deleted. Move it away, or choose another "
            "out_dir (--out-dir)."
        )
    try:
        if data is None:
            raise ValueError(f"not valid JSON: {broken}")
        shards = {int(i): _shard_record(s) for i, s in data["shards"].items()}
        manifest = Manifest(
            settings=dict(data["settings"]), input=dict(data["input"]),
            shard_size=_count(data["shard_size"], 1), shards=shards,
            texts=None if data["texts"] is None else _count(data["texts"], 0),
            final=_final_record(data["final"]), complete=data["complete"] is True,
            pending=_pending_record(data.get("pending")),
        )  # fmt: skip
        if manifest.complete and (manifest.final is None or manifest.texts is None):
            raise ValueError("it says complete but records no result")
    except (KeyError, TypeError, ValueError, AttributeError, RecursionError) as e:
        raise DamagedManifest(
            f"{path} is damaged ({str(e)[:200]}). Pass force=True (--force) to start the job "
            "over; it deletes only the files the job can be shown to have written."
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


def _pending_record(record) -> dict | None:
    if record is None:
        return None
    if not isinstance(record, dict) or not SHARD.fullmatch(str(record.get("file"))):
        raise ValueError(f"its pending record is {str(record)[:80]}")
    for key in ("rows", "bytes"):
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


def matches(path: Path, record: dict) -> bool:
    """`path` is the file `record` describes: a regular file of its size and sha256."""
    try:
        return (path.is_file() and not path.is_symlink() and path.stat().st_size == record["bytes"]
                and file_sha256(path) == record.get("sha256"))  # fmt: skip
    except OSError:
        return False


def job_files(folder: Path, manifest: Manifest | None, ours: bool) -> tuple[list[str], list[str]]:
    """(the files the manifest proves the job wrote, the others that have the job's names).

    `ours`: manifest.json itself is the job's (even if damaged, then `manifest` is None).
    Proven: listed and pending shards of the recorded size and sha256, the partial result
    while the manifest records one, the result of the recorded size, and temporary files
    of those names. A temporary file of any other name is neither: it is in no one's way.
    """
    m = manifest
    proven = {MANIFEST} if ours else set()
    if m is not None:
        records = [*m.shards.values(), *([m.pending] if m.pending else [])]
        proven |= {r["file"] for r in records if matches(folder / r["file"], r)}
        joining = m.final is not None and "appended" in m.final
        if joining and (m.final["appended"] == 0 or _size(folder / PARTIAL) >= m.final["bytes"]):
            proven.add(PARTIAL)
        if m.final is not None and (m.complete or joining and m.final["appended"] == m.shard_count):
            if _size(folder / FINAL) == m.final["bytes"]:
                proven.add(FINAL)
        named = {MANIFEST, *(r["file"] for r in records)} if ours else set()
    else:
        named = {MANIFEST} if ours else set()
    found, strangers = [], []
    for entry in sorted(folder.iterdir()):
        name, temp = entry.name, TEMP.fullmatch(entry.name)
        if name in proven or temp and temp[1] in named:
            found.append(name)
        elif is_job_file(name) and not temp:
            strangers.append(name)
    return found, strangers


def _size(path: Path) -> int:
    try:
        return path.stat().st_size if path.is_file() and not path.is_symlink() else -1
    except OSError:
        return -1


def refuse_strangers(folder: Path, strangers: list[str], force: bool) -> None:
    """Stop before a file the job did not provably write is deleted or overwritten."""
    if not strangers:
        return
    more = f" and {len(strangers) - 5} more" if len(strangers) > 5 else ""
    why = "--force deletes only files the job's manifest proves it wrote" if force else (
        "the job deletes or overwrites only files its manifest proves it wrote")
    raise ValueError(
        f"{folder} holds {', '.join(strangers[:5])}{more}: the job's names, but no manifest "
        f"of this folder lists them with these bytes, and {why}. Move them away (or delete "
        "them if they are an earlier job's), or choose another out_dir (--out-dir)."
    )


def start_over(folder: Path) -> list[str]:
    """force=True: delete the files the folder's manifest proves its job wrote; returns
    their names. Refuses a manifest.json the job did not write, and any file with the
    job's names that it can't prove, before deleting anything."""
    try:
        manifest, ours = read_manifest(folder), (folder / MANIFEST).exists()
    except DamagedManifest:
        manifest, ours = None, True
    proven, strangers = job_files(folder, manifest, ours)
    refuse_strangers(folder, strangers, force=True)
    for name in proven:
        (folder / name).unlink()
    return proven


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
        kind = manifest.input.get("kind")
        if kind in ("stdin", "iterable"):
            what = "stdin" if kind == "stdin" else "a one-shot iterable"
            raise ValueError(
                f"The embed job in {folder} is not finished ({done} of {total or '?'} shards), "
                f"and it read {what}, which can't be read again, so it can't be resumed. Run "
                "it again with force=True (--force) and the whole input to start over; save "
                "the input to a file first, and a stopped job resumes where it stopped."
            )
        raise ValueError(
            f"The embed job in {folder} is not finished ({done} of {total or '?'} shards); "
            "run the same command again to finish it."
        )
    return folder / FINAL, manifest.texts or 0
