"""Every command's stdout when its reader goes away (`mlx-jina info ... | head`)."""

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def quiet_on_closed_pipe() -> Iterator[None]:
    """When the reader of stdout goes away (`mlx-jina info ... | head`), stop quietly with
    exit code 1, as cat does, instead of printing "Broken pipe" as an error."""
    try:
        yield
        sys.stdout.flush()  # here, not at exit, where the error could only be printed
    except BrokenPipeError:
        # Point stdout at /dev/null so that Python's own flush at exit can't complain.
        try:
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        except (OSError, ValueError):  # stdout is no real file (e.g. replaced in-process)
            pass
        sys.exit(1)
