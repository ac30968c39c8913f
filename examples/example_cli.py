"""What the example scripts share: loading the model for one task and reading a text file,
each exiting with one line instead of a traceback. Imported from beside them."""

import sys
from pathlib import Path

import mlx_jina


def fail(message: str) -> None:
    sys.exit(f"{Path(sys.argv[0]).name}: error: {message}")


def load_model(model: str, task: str) -> mlx_jina.Embedder:
    """`model` for `task`, or exit with one line: a merged per-task folder holds only its
    own task, and the error names it; a base repo or a unified -mlx folder holds them all."""
    try:
        return mlx_jina.load(model, task=task)
    except (ValueError, OSError) as e:
        hint = "" if "task" not in str(e) else (
            f" This script needs the {task} adapter: pass --model a base repo or a unified "
            f"-mlx folder (they hold every adapter), or a {task} model.")
        fail(" ".join(f"{e}{hint}".split()))


def read_lines(path: Path, strip: bool = True) -> list[str]:
    """The lines of a UTF-8 text file (with `strip`, the non-blank ones, stripped), or exit
    with one line."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        fail(f"can't read {path}: {e}")
    return [t.strip() for t in lines if t.strip()] if strip else lines
