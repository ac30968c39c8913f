"""Progress on stderr while texts are embedded: a tqdm bar, plain lines where a bar can't
show, or the caller's own function.

tqdm prints nothing on a terminal that reports 0 columns (some IDE consoles, `script`,
a serial line), so there a line is printed at the first update, then every few seconds,
and at the end.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable

LINE_EVERY = 10.0  # seconds between plain progress lines


def progress_bar(
    total: int | None, show, large: bool, desc: str = "Encoding", initial: int = 0
):
    """Something with `update(n)` and `close()` counting texts, or None. `show`: True,
    False, None (a bar for large jobs on a terminal) or a function called with the count
    of each finished batch."""
    if callable(show):
        return Callback(show)
    if show is None:
        show = large and sys.stderr.isatty()
    if not show:
        return None
    if terminal_columns() == 0:
        return Lines(total, desc, initial)
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, desc=desc, unit="text", file=sys.stderr,
                dynamic_ncols=True)  # fmt: skip


def terminal_columns() -> int | None:
    """stderr's terminal width; None when it is no terminal."""
    try:
        return os.get_terminal_size(sys.stderr.fileno()).columns
    except (AttributeError, OSError, ValueError):
        return None


class Callback:
    """The caller's function as a progress bar."""

    def __init__(self, function: Callable[[int], object]):
        self.function = function

    def update(self, n: int = 1) -> None:
        self.function(n)

    def set_postfix_str(self, text: str) -> None:
        pass

    def close(self) -> None:
        pass


class Lines:
    """Progress as plain lines: `Embedding: 1,024 of 10,000 texts (10%), 35 texts/s`."""

    def __init__(self, total: int | None, desc: str, initial: int = 0):
        self.total, self.desc, self.n, self.postfix = total, desc, initial, ""
        self.start, self.printed, self.printed_n = time.monotonic(), None, None

    def update(self, n: int = 1) -> None:
        self.n += n
        now = time.monotonic()
        if self.printed is None or now - self.printed >= LINE_EVERY:
            self._print(now)

    def set_postfix_str(self, text: str) -> None:
        self.postfix = text

    def close(self) -> None:
        if self.printed_n != self.n:  # the final count, unless that is the last line shown
            self._print(time.monotonic())

    def _print(self, now: float) -> None:
        self.printed, self.printed_n = now, self.n
        of = f" of {self.total:,}" if self.total else ""
        share = f" ({100 * self.n / self.total:.0f}%)" if self.total else ""
        rate = self.n / max(now - self.start, 1e-9)
        extra = f", {self.postfix}" if self.postfix else ""
        print(f"{self.desc}: {self.n:,}{of} texts{share}, {rate:,.0f} texts/s{extra}",
              file=sys.stderr, flush=True)  # fmt: skip
