"""Keep-alive durations as Ollama's clients send them (mlx_jina/server/durations.py)."""

from __future__ import annotations

import math

import pytest

from mlx_jina.server.durations import FOREVER, keep_alive_seconds, shown


@pytest.mark.parametrize(
    "value, seconds",
    [
        (300, 300.0), (0, 0.0), (0.5, 0.5), ("300", 300.0), (" 90s ", 90.0), ("5m", 300.0),
        ("1h30m", 5400.0), ("1.5h", 5400.0), ("2m30s", 150.0), ("250ms", 0.25), ("0", 0.0),
        ("10us", 1e-5), ("10µs", 1e-5), ("+5m", 300.0), (".5s", 0.5),
        (-1, FOREVER), ("-1", FOREVER), ("-5m", FOREVER), (-0.001, FOREVER), (2e9, FOREVER),
    ],
)  # fmt: skip
def test_durations_in_seconds(value, seconds):
    assert keep_alive_seconds(value) == pytest.approx(seconds)


@pytest.mark.parametrize(
    "value",
    ["", "soon", "5 m", "5x", "1h5", "m", "5m-", "--5m", "nan", "inf", "1e999",
     math.nan, math.inf, True, None, [5], {"m": 5}],
)  # fmt: skip
def test_bad_durations_name_the_value_and_the_spellings(value):
    with pytest.raises(ValueError) as e:
        keep_alive_seconds(value, "--keep-alive")
    assert f"--keep-alive={value!r} is not a duration" in str(e.value)
    assert '"5m"' in str(e.value) and "-1 (keep loaded)" in str(e.value)


@pytest.mark.parametrize(
    "seconds, text",
    [(FOREVER, "forever"), (300.0, "5m"), (3600.0, "1h"), (5400.0, "90m"), (90.0, "90s"),
     (0.0, "0s"), (0.25, "0.25s")],
)  # fmt: skip
def test_shown(seconds, text):
    assert shown(seconds) == text
    assert seconds == FOREVER or keep_alive_seconds(text) == seconds
