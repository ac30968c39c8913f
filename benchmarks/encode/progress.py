"""Progress lines on stderr, so the report alone goes to stdout."""

import sys


def log(*args) -> None:
    print(*args, file=sys.stderr, flush=True)
