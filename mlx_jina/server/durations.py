"""Keep-alive durations as Ollama spells them: seconds as a number, or "5m", "1h30m", "90s".

A negative duration keeps the model loaded for good (math.inf); 0 unloads it once its
requests are answered. Standard library only: the CLI parses --keep-alive with it.
"""

from __future__ import annotations

import math
import re

FOREVER = math.inf
# Ollama's default: an idle model gives its memory back after five minutes.
DEFAULT_KEEP_ALIVE = 300.0
# Go's time.ParseDuration units, which Ollama's clients send.
UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "μs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)")
SPELLINGS = '"5m", "1h30m", "90s", 300 (seconds), 0 (unload now) or -1 (keep loaded)'


def keep_alive_seconds(value: object, what: str = "keep_alive") -> float:
    """`value` in seconds: a JSON number or a duration string; negative means FOREVER.

    Raises ValueError naming the value and the spellings that work.
    """
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ValueError(f"{what}={value!r} is not a duration; use {SPELLINGS}.")
    seconds = parse(value) if isinstance(value, str) else float(value)
    if seconds is None or math.isnan(seconds) or (math.isinf(seconds) and seconds > 0):
        raise ValueError(f"{what}={value!r} is not a duration; use {SPELLINGS}.")
    # Past ~30 years a timer is as good as none (and event loops dislike huge delays).
    return FOREVER if seconds < 0 or seconds > 1e9 else seconds


def parse(text: str) -> float | None:
    """A duration string in seconds, or None when it is not one."""
    text = text.strip()
    sign = -1.0 if text.startswith("-") else 1.0
    body = text[1:] if text.startswith(("+", "-")) else text  # one sign, as Go takes it
    try:
        return sign * float(body)  # a bare number: seconds
    except ValueError:
        pass
    if not body or PART.sub("", body):  # anything left over is not a duration
        return None
    return sign * sum(float(n) * UNITS[unit] for n, unit in PART.findall(body))


def shown(seconds: float) -> str:
    """How a duration reads in messages and --help: "5m", "30s", "forever"."""
    if seconds == FOREVER:
        return "forever"
    if seconds and seconds % 3600 == 0:
        return f"{seconds / 3600:g}h"
    if seconds and seconds % 60 == 0:
        return f"{seconds / 60:g}m"
    return f"{seconds:g}s"
