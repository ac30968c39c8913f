"""Texts in, vectors out, for the command line: lines or JSON lines from a file or stdin,
and vectors as JSON arrays on stdout or one .npy, .json or .jsonl file written atomically."""

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO, TextIO

import numpy as np

from ..atomic import replacing_file
from .texts import text_problem

# -o's extension -> what it writes.
OUTPUT_FORMATS = {".npy": "NumPy array", ".json": "JSON array of arrays", ".jsonl": "JSON lines"}


def read_texts(
    texts: list[str], source: str | None, jsonl: bool, text_field: str = "text"
) -> list[str]:
    """`texts` as given, else the texts of `source` (a file, or "-" / None for stdin), read
    by `stream_texts` (a `.jsonl` file or `jsonl=True`: JSON lines). Raises ValueError
    naming the bad argument or line."""
    if texts and source:
        raise ValueError("pass texts as arguments or with -i, not both")
    if texts:
        for i, text in enumerate(texts, 1):
            if problem := text_problem(text):
                raise ValueError(f"TEXT argument {i} {problem}; every text needs some content")
        return texts
    if source is None and sys.stdin.isatty():
        raise ValueError("no input: pass texts as arguments, -i FILE, or pipe them on stdin")
    if source in (None, "-"):
        read = [text for _, text in stream_texts(sys.stdin, "stdin", jsonl, text_field)]
        name = "stdin"
    else:
        path = Path(source)
        if not path.is_file():
            raise ValueError(f"no input file {path}")
        name = str(path)
        with open(path, "rb") as f:
            jsonl = jsonl or name.endswith(".jsonl")
            read = [text for _, text in stream_texts(f, name, jsonl, text_field)]
    if not read:
        raise ValueError(f"{name} holds no texts")
    return read


def stream_texts(
    f: BinaryIO | TextIO, name: str, jsonl: bool = False, text_field: str = "text"
) -> Iterator[tuple[int, str]]:
    """(line number, text) of an open file or stdin, streamed and checked; the one reader
    of text files, for `embed -i` and corpus jobs alike.

    Lines end at \n (or \r\n) only: str.splitlines() also splits at \x0c, \x85 or
    U+2028 inside a text, which would shift every later line. Each line is strict UTF-8 (a
    leading byte-order mark dropped). JSON lines hold a string or an object whose
    `text_field` is one; blank JSON lines are skipped. Every text must pass the one text
    rule (encoding/texts.py)."""
    offset = 0
    for n, raw in enumerate(getattr(f, "buffer", f), 1):
        line = _decoded(raw, n, offset, name)
        offset += len(raw)
        if jsonl:
            if not line.strip():
                continue
            line = json_text(line, n, name, text_field)
        if problem := text_problem(line):
            raise ValueError(
                f"line {n} of {name} {problem}; every line needs some text. Fix or remove "
                "that line."
            )
        yield n, line


def _decoded(raw: bytes | str, n: int, offset: int, name: str) -> str:
    """One line as text, without its line end (and the file's byte-order mark)."""
    if isinstance(raw, bytes):
        try:
            raw = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            at = offset + e.start
            raise ValueError(
                f"line {n} of {name} is not UTF-8 (byte {at}: {raw[e.start:e.start + 1]!r}); "
                "convert the input to UTF-8, e.g. iconv -f latin1 -t utf-8"
            ) from None
    line = raw.removesuffix("\n").removesuffix("\r")
    return line.removeprefix("\ufeff") if n == 1 else line


def json_text(line: str, n: int, name: str, text_field: str) -> str:
    """The text of one JSON line: a string, or an object's `text_field`."""
    try:
        item = json.loads(line)
    except ValueError:
        raise ValueError(
            f"line {n} of {name} is not JSON; a .jsonl file (or --jsonl) holds one JSON value "
            "per line"
        ) from None
    if isinstance(item, dict):
        if text_field not in item:
            raise ValueError(
                f"line {n} of {name} has no {text_field!r} field (it has "
                f"{', '.join(map(repr, list(item)[:5])) or 'none'}); pass the field's name "
                "(--text-field, text_field=)"
            )
        item = item[text_field]
    if not isinstance(item, str):
        raise ValueError(
            f"line {n} of {name} holds {type(item).__name__}, not a JSON string or an object "
            f"with a string {text_field!r}"
        )
    return item


def output_format(path: str | Path) -> str:
    """The extension of an -o path (.npy, .json or .jsonl), or a ValueError naming it."""
    suffix = Path(path).suffix.lower()
    if suffix not in OUTPUT_FORMATS:
        what = f"extension {suffix!r}" if suffix else "no extension"
        raise ValueError(
            f"-o {path} has {what}; name a file ending in {', '.join(OUTPUT_FORMATS)} "
            "(the extension picks the format)"
        )
    return suffix


def format_rows(rows: np.ndarray) -> str:
    """One JSON array per row; numpy's str() of a float32 is its shortest exact text, and
    integer precisions (int8, binary) print as JSON integers."""
    return "".join("[" + ",".join(str(x) for x in row) + "]\n" for row in rows)


def save_rows(path: Path, rows: np.ndarray) -> str:
    """`rows` at exactly `path` (never `path` + ".npy"), whole or not at all, in the format
    its extension names; returns that format's description."""
    suffix = output_format(path)
    with replacing_file(path) as f:
        if suffix == ".npy":
            np.save(f, rows)  # a file object: np.save adds ".npy" only to names
        elif suffix == ".jsonl":
            f.write(format_rows(rows).encode())
        else:
            f.write(("[" + ",\n".join(format_rows(rows).splitlines()) + "]\n").encode())
    return OUTPUT_FORMATS[suffix]
