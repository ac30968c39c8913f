"""Texts in, vectors out, for the command line: lines or JSON lines from a file or stdin,
and vectors as JSON arrays on stdout or one .npy file written atomically."""

import json
import sys
from pathlib import Path

import numpy as np

from ..atomic import replacing_file


def read_texts(texts: list[str], source: str | None, jsonl: bool) -> list[str]:
    """`texts` as given, else the lines of `source` (a file, or "-" / None for stdin).

    A `.jsonl` file (or `jsonl=True`) holds one JSON string or {"text": ...} object per
    line; blank lines are skipped there. Raises ValueError naming the bad line.
    """
    if texts and source:
        raise ValueError("pass texts as arguments or with -i, not both")
    if texts:
        return texts
    if source is None and sys.stdin.isatty():
        raise ValueError("no input: pass texts as arguments, -i FILE, or pipe them on stdin")
    if source in (None, "-"):
        lines, name = sys.stdin.read().splitlines(), "stdin"
    else:
        path = Path(source)
        if not path.is_file():
            raise ValueError(f"no input file {path}")
        lines, name = path.read_text(encoding="utf-8").splitlines(), str(path)
    if not (jsonl or name.endswith(".jsonl")):
        return lines
    return [text for n, line in enumerate(lines, 1) if (text := json_line(line, n, name)) is not None]


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


def format_rows(rows: np.ndarray) -> str:
    """One JSON array per row; numpy's str() of a float32 is its shortest exact text."""
    return "".join("[" + ",".join(str(x) for x in row) + "]\n" for row in rows)


def save_array(path: Path, array: np.ndarray) -> None:
    """`array` as a .npy file at exactly `path`, whole or not at all."""
    with replacing_file(path) as f:
        np.save(f, array)
