"""A corpus as a stream of checked texts: the lines of a text file, one field of each
line of a .jsonl file, stdin, or a Python iterable of strings. Never held whole.

A file is read once up front (`scan`): every text is checked (a blank line is refused
with its line number before any work starts), counted, and the bytes hashed, which is
the file's identity, so a resumed job knows the file is the same one. It is then read
again while the job embeds it. A list or tuple is scanned the same way. stdin and other
iterables can be read only once: each text is checked as it arrives (so a bad one may
stop the job after some shards were written) and such a job cannot be resumed.

Files and stdin are read by `encoding.textio.stream_texts`, the reader of `mlx-jina embed -i`:
the same lines, the same JSON lines, the same errors.
"""

from __future__ import annotations

import hashlib
import os
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from ..encoding.textio import stream_texts
from ..encoding.texts import text_problem

# How much of a file's start is hashed on its own: a quick "same file?" for messages.
HEAD_BYTES = 64 * 1024
READ_CHUNK = 1 << 20


@dataclass
class CorpusInput:
    """Where the texts come from; `texts()` streams them, checked, in order."""

    kind: str  # "file", "stdin", "sequence" (a list or tuple) or "iterable"
    name: str  # for messages: the path, "stdin" or "texts"
    source: object = None  # the Path, or the Python object
    jsonl: bool = False
    text_field: str = "text"
    identity: dict = field(default_factory=dict)  # filled by scan()

    @property
    def resumable(self) -> bool:
        """Only what can be read again, and recognized, can be resumed."""
        return self.kind in ("file", "sequence")

    def scan(self) -> dict:
        """Check every text, count them and hash the input (files and sequences); for
        stdin and iterables only describe them. Returns (and keeps) the identity."""
        base = {"kind": self.kind}
        if self.kind == "file":
            base |= {"format": "jsonl" if self.jsonl else "lines", "path": str(self.source)}
            if self.jsonl:
                base["text_field"] = self.text_field
            base |= _file_identity(self.source)
        if self.resumable:
            digest, count = hashlib.sha256(), 0
            for text in self.texts():
                if self.kind == "sequence":  # a file's bytes are hashed in _file_identity
                    data = text.encode("utf-8")
                    digest.update(len(data).to_bytes(8, "little") + data)
                count += 1
            if self.kind == "sequence":
                base["sha256"] = digest.hexdigest()
            base["texts"] = count
        self.identity = base
        return base

    def check_unchanged(self) -> None:
        """Raise if the input file changed since `scan`: the texts read since may not be the
        ones its identity (the manifest's) describes."""
        if self.kind != "file" or "size" not in self.identity:
            return
        info = Path(self.source).stat()
        if (info.st_size, info.st_mtime_ns) != (self.identity["size"], self.identity["mtime_ns"]):
            raise ValueError(
                f"{self.name} changed while it was being embedded; the shards read since may "
                "hold the new text. Run again with force=True (--force) to start over."
            )

    def texts(self) -> Iterator[str]:
        """The texts in order, each checked by the one text rule."""
        if self.kind == "file":
            return _file_texts(self.source, self.jsonl, self.text_field)
        if self.kind == "stdin":
            return (text for _, text in stream_texts(sys.stdin, "stdin", self.jsonl, self.text_field))
        return _checked_items(self.source)


def open_corpus(
    source: str | os.PathLike | Iterable[str], *, text_field: str = "text", jsonl: bool | None = None
) -> CorpusInput:
    """The input `source` names: a path (`.jsonl` reads JSON lines, anything else plain
    lines), "-" for stdin, or an iterable of strings. A plain `str` is a path, never a text."""
    if not isinstance(text_field, str) or not text_field:
        raise ValueError(f"text_field={text_field!r}; name the JSON field that holds the text.")
    if isinstance(source, (str, os.PathLike)):
        if str(source) == "-":
            return CorpusInput("stdin", "stdin", None, bool(jsonl), text_field)
        path = Path(source)
        if not path.exists():
            raise FileNotFoundError(f"No input file {path}. Pass a .txt or .jsonl file, or '-' for stdin.")
        if not path.is_file():
            what = "a folder" if path.is_dir() else "not a regular file"
            raise ValueError(f"The input {path} is {what}; pass a .txt or .jsonl file, or '-' for stdin.")
        use_jsonl = path.suffix == ".jsonl" if jsonl is None else jsonl
        return CorpusInput("file", str(path), path.resolve(), use_jsonl, text_field)
    if isinstance(source, (list, tuple)):
        return CorpusInput("sequence", "texts", source)
    if isinstance(source, (bytes, dict)) or not isinstance(source, Iterable):
        raise ValueError(
            f"texts_or_path is {type(source).__name__}; pass a file path, '-' for stdin, "
            "or an iterable of strings."
        )
    return CorpusInput("iterable", "texts", source)


def _file_identity(path: Path) -> dict:
    """Size, mtime, the hash of the first 64 KiB and of the whole file."""
    info = path.stat()
    whole, head, seen = hashlib.sha256(), hashlib.sha256(), 0
    with open(path, "rb") as f:
        while chunk := f.read(READ_CHUNK):
            whole.update(chunk)
            if seen < HEAD_BYTES:
                head.update(chunk[: HEAD_BYTES - seen])
            seen += len(chunk)
    return {
        "size": seen,
        "mtime_ns": info.st_mtime_ns,
        "head_sha256": head.hexdigest(),
        "sha256": whole.hexdigest(),
    }


def _file_texts(path: Path, jsonl: bool, text_field: str) -> Iterator[str]:
    with open(path, "rb") as f:  # bytes, decoded line by line: a bad byte's line is exact
        for _, text in stream_texts(f, str(path), jsonl, text_field):
            yield text


def _checked_items(items: Iterable) -> Iterator[str]:
    for i, text in enumerate(items):
        if not isinstance(text, str):
            raise ValueError(f"texts[{i}] is {type(text).__name__}, not a string.")
        if problem := text_problem(text):
            raise ValueError(f"texts[{i}] {problem}; every text needs some content.")
        yield text
