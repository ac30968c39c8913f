"""The embedding worker: one thread that owns the model and embeds queued jobs in shared batches.

MLX arrays belong to the thread that created them, so the worker thread loads the model
and runs every forward pass; request handlers only enqueue token ids.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field

import mlx.core as mx

from ..embedder import Embedder
from .metrics import Metrics
from .protocol import Limits


@dataclass
class Job:
    """Token ids of one request, embedded with one set of output options."""

    adapter: str | None
    rows: list[list[int]]
    truncate_dim: int | None
    normalized: bool
    precision: str
    future: Future = field(default_factory=Future)

    @property
    def tokens(self) -> int:
        return sum(len(r) for r in self.rows)

    @property
    def options(self) -> tuple:
        return (self.adapter, self.truncate_dim, self.normalized, self.precision)


class QueueFull(Exception):
    pass


class Worker:
    """One thread that loads the model and embeds queued jobs in shared batches.

    `load_model` runs on the worker thread, so every MLX array lives there.
    """

    def __init__(
        self,
        load_model: Callable[[], Embedder],
        *,
        limits: Limits | None = None,
        metrics: Metrics | None = None,
    ):
        self.limits = limits or Limits()
        self.metrics = metrics or Metrics()
        self._load_model = load_model
        self._jobs: queue.Queue[Job | None] = queue.Queue(maxsize=self.limits.max_queue)
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="mlx-jina-worker", daemon=True)
        self.model: Embedder | None = None

    def start(self) -> Worker:
        """Start the thread and wait for the model; a load error is raised here."""
        self._thread.start()
        self._ready.wait()
        if self._error is not None:
            raise self._error
        return self

    def stop(self, timeout: float = 10.0) -> None:
        if self._thread.is_alive():
            self._jobs.put(None)  # blocks only while the queue is full; the worker drains it
            self._thread.join(timeout)

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    @property
    def queue_depth(self) -> int:
        return self._jobs.qsize()

    def full(self) -> bool:
        return self._jobs.full()

    def submit(self, job: Job) -> Future:
        if not self.alive:
            raise RuntimeError("The embedding worker is not running.")
        try:
            self._jobs.put_nowait(job)
        except queue.Full:
            raise QueueFull from None
        return job.future

    def _run(self) -> None:
        try:
            self.model = self._load_model()
        except BaseException as e:  # handed to start()'s caller
            self._error = e
            return
        finally:
            self._ready.set()
        stopping = False
        while not stopping:
            job = self._jobs.get()
            if job is None:
                break
            jobs, tokens = [job], job.tokens
            # Take whatever else is waiting, up to the token budget.
            while tokens < self.limits.max_batch_tokens:
                try:
                    job = self._jobs.get_nowait()
                except queue.Empty:
                    break
                if job is None:
                    stopping = True
                    break
                jobs.append(job)
                tokens += job.tokens
            self.metrics.batch(len(jobs), tokens)
            self._embed(jobs)
            if self._jobs.empty():
                # MLX keeps freed buffers per size; each new padded length adds more. Free
                # them when idle so a long-running server does not grow.
                mx.clear_cache()

    def _embed(self, jobs: list[Job]) -> None:
        groups: dict[tuple, list[Job]] = {}
        for job in jobs:
            groups.setdefault(job.options, []).append(job)
        for (adapter, truncate_dim, normalized, precision), group in groups.items():
            rows = [row for job in group for row in job.rows]
            try:
                out = self.model.encode_ids(
                    rows,
                    task=adapter if self.model.multitask else None,
                    batch_size=len(rows),  # the token budget bounds each forward pass
                    truncate_dim=truncate_dim,
                    normalize_embeddings=normalized,
                    precision=precision,
                    show_progress_bar=False,
                    max_batch_tokens=self.limits.max_batch_tokens,
                )
            except Exception as e:
                for job in group:
                    job.future.set_exception(e)
                continue
            start = 0
            for job in group:
                job.future.set_result(out[start : start + len(job.rows)])
                start += len(job.rows)
