"""What the server tests share: a key and texts, vectors compared by cosine with an
independent reference (the same checkpoint loaded in the test), and one model served live
on 127.0.0.1."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

import mlx_jina
from live_server import live_server
from mlx_jina.server import Limits, Worker, create_app
from mlx_jina.tasks import TASKS

NAME = "jina-tiny"  # the name the served model answers to
KEY = "test-key"
AUTH = {"Authorization": f"Bearer {KEY}"}
DOCS = [
    "Mars is often called the Red Planet.",
    "Paris is the capital and largest city of France.",
    "The quick brown fox jumps over the lazy dog near the river bank.",
]
QUERY = "Which planet is red?"  # DOCS[0] answers it


def cosines(a, b) -> np.ndarray:
    a = np.atleast_2d(np.asarray(a, dtype=np.float64))
    b = np.atleast_2d(np.asarray(b, dtype=np.float64))
    return (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


def assert_same(got, want) -> None:
    got, want = np.atleast_2d(np.asarray(got, np.float32)), np.atleast_2d(np.asarray(want))
    assert got.shape == want.shape
    assert cosines(got, want).min() >= 0.99999


def assert_differ(got, want) -> None:
    """The wrong prompt gives clearly different vectors (so assert_same can fail)."""
    assert cosines(got, want).max() < 0.999


@contextlib.contextmanager
def served(path: Path, load: dict, limits: Limits | None = None, **app_kwargs) -> Iterator[str]:
    """`mlx_jina.load(path, **load)` behind `create_app` as NAME; yield its base URL."""
    worker = Worker(lambda: mlx_jina.load(path, **load), limits=limits).start()
    with live_server(create_app(worker, model_name=NAME, **app_kwargs)) as url:
        yield url


def direct_models(path: Path) -> Callable[..., mlx_jina.Embedder]:
    """task -> the checkpoint at `path` loaded here, merged: the independent reference."""
    models: dict[str, mlx_jina.Embedder] = {}

    def get(task: str = TASKS[0]) -> mlx_jina.Embedder:
        if task not in models:
            models[task] = mlx_jina.load(path, task=task)
        return models[task]

    return get
