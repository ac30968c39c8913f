"""Command-line values: numbers with their bounds, lists; argparse errors that name the
text. Shared by every command (`mlx-jina`, its corpus options, `index`, `convert`)."""

import argparse


def number(text: str, kind: type, low: float, what: str):
    """`text` as `kind`, at least `low` and finite, or an argparse error naming it."""
    try:
        value = kind(text)
    except ValueError:
        value = None
    if value is None or value != value or value in (float("inf"),) or value < low:
        raise argparse.ArgumentTypeError(f"{text!r} is not {what}")
    return value


def positive_int(text: str) -> int:
    return number(text, int, 1, "a positive integer")


def byte_count(text: str) -> int:
    return number(text, int, 0, "a number of bytes (0 or more)")


def positive_seconds(text: str) -> float:
    value = number(text, float, 0, "a positive number of seconds")
    if value == 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive number of seconds")
    return value


def seconds_or_zero(text: str) -> float:
    return number(text, float, 0, "a number of seconds")


def comma_list(text: str) -> tuple[str, ...]:
    items = tuple(item.strip() for item in text.split(",") if item.strip())
    if not items:
        raise argparse.ArgumentTypeError(f"{text!r} names nothing; give a comma-separated list")
    return items
