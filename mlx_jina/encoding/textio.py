"""Texts in, vectors out, for the command line: lines or JSON lines from a file or stdin,
and vectors as JSON arrays on stdout or one .npy, .json or .jsonl file written atomically."""

import codecs
import json
import sys
from pathlib import Path

import numpy as np

from ..atomic import replacing_file
from .texts import text_problem

# -o's extension -> what it writes.
OUTPUT_FORMATS = {".npy": "NumPy array", ".json": "JSON array of arrays", ".jsonl": "JSON lines"}


def read_texts(texts: list[str], source: str | None, jsonl: bool) -> list[str]:
    """`texts` as given, else the lines of `source` (a file, or "-" / None for stdin).

    A `.jsonl` file (or `jsonl=True`) holds one JSON string or {"text": ...} object per
    line; blank lines are skipped there. Every text must pass the one text rule
    (encoding/texts.py). Raises ValueError naming the bad argument or line.
    """
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
        data, name = read_stdin(), "stdin"
    else:
        path = Path(source)
        if not path.is_file():
            raise ValueError(f"no input file {path}")
        data, name = path.read_bytes(), str(path)
    lines = split_lines(decode(data, name))
    if jsonl or name.endswith(".jsonl"):
        numbered = [(n, text) for n, line in enumerate(lines, 1)
                    if (text := json_line(line, n, name)) is not None]  # fmt: skip
    else:
        numbered = list(enumerate(lines, 1))
    for n, text in numbered:
        if problem := text_problem(text):
            raise ValueError(f"line {n} of {name} {problem}; every line needs some text")
    if not numbered:
        raise ValueError(f"{name} holds no texts")
    return [text for _, text in numbered]


def read_stdin() -> bytes | str:
    """stdin as bytes where it has them, so that the decoding below is ours (strict)."""
    buffer = getattr(sys.stdin, "buffer", None)
    return buffer.read() if buffer is not None else sys.stdin.read()


def decode(data: bytes | str, name: str) -> str:
    """UTF-8 text (a leading byte-order mark dropped), or a ValueError naming where it breaks."""
    if isinstance(data, str):
        return data
    skip = len(codecs.BOM_UTF8) if data.startswith(codecs.BOM_UTF8) else 0
    try:
        return data[skip:].decode("utf-8")
    except UnicodeDecodeError as e:
        at = e.start + skip
        line = data.count(b"\n", 0, at) + 1
        raise ValueError(
            f"line {line} of {name} is not UTF-8 (byte {at}: {data[at:at + 1]!r}); convert the "
            "input to UTF-8, e.g. iconv -f latin1 -t utf-8"
        ) from None


def split_lines(text: str) -> list[str]:
    """Lines split at \\n (and \\r\\n) only: str.splitlines() also splits at \\x0c, \\x85 or
    U+2028 inside a text, which would shift every later line number."""
    lines = text.split("\n")
    if lines[-1] == "":
        lines.pop()  # the final newline ends the last line; it starts no new one
    return [line.removesuffix("\r") for line in lines]


def json_line(line: str, n: int, name: str) -> str | None:
    """The text of one JSON line, or None for a blank line."""
    if not line.strip():
        return None
    try:
        item = json.loads(line)
    except ValueError:
        raise ValueError(f"line {n} of {name} is not JSON; drop --jsonl for plain text") from None
    if isinstance(item, dict):
        item = item.get("text")
    if not isinstance(item, str):
        raise ValueError(f'line {n} of {name} is not a JSON string or {{"text": ...}} object')
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
