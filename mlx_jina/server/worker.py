"""The embedding worker: one thread that owns the model and embeds queued jobs.

MLX arrays belong to the thread that created them, so the worker thread loads the model
and runs every forward pass; request handlers only enqueue token ids.

The worker runs one forward batch at a time and picks each batch afresh, by self-clocked
fair queuing over computed tokens: each job carries a start tag (the tokens it has been
given, counted from the virtual clock when it arrived), and the job whose next batch
would finish first opens the batch; other jobs of the same adapter fill the rest of the
token budget. A one-word query thus goes ahead of the next batch of a long request, and
a long request still gets a batch for every budget's worth of newcomers: nobody waits for
ever. So a short request waits for about one
batch, not for a long request, and concurrent small requests share forward passes.
One input longer than the token budget is a pass of its own, run in steps: each layer in
pieces of queries, sized so that a piece costs about one budget's batch (`long_steps`).
Each piece is a step in the same fair queue, charged as one budget's batch, so short
requests wait for one piece of it, not for all of it. Cancelled and expired jobs are
dropped before their next batch or step.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, InvalidStateError
from dataclasses import dataclass, field

import mlx.core as mx
import numpy as np

from ..encoding.batching import BATCH_PADDING, fits
from ..encoding.embedder import Embedder
from ..models.lora import using_task
from .memory import release_memory
from .metrics import Metrics
from .limits import Limits

# Seconds without work before the worker gives memory back to the system.
IDLE_SECONDS = 1.0
# A forward pass's fixed cost, in tokens of work (see batching.BATCH_PADDING): fair
# queuing charges it to the job that opens a batch, so tiny jobs are not free.
BATCH_COST = BATCH_PADDING


class QueueFull(Exception):
    pass


class DeadlineExceeded(Exception):
    """A job ran past its deadline; its remaining work was dropped."""


@dataclass(eq=False)
class Job:
    """Token ids of one request, embedded with one set of output options.

    `deadline` is a `time.monotonic()` value, or None for no limit.
    """

    adapter: str | None
    rows: list[list[int]]
    truncate_dim: int | None
    normalized: bool
    precision: str
    deadline: float | None = None
    future: Future = field(default_factory=Future)
    _cancelled: bool = field(default=False, init=False, repr=False)

    @property
    def tokens(self) -> int:
        return sum(len(r) for r in self.rows)

    def cancel(self) -> None:
        """Drop the job (thread-safe): no more of its batches run; the future is cancelled."""
        self._cancelled = True
        self.future.cancel()

    @property
    def cancelled(self) -> bool:
        # asyncio.wrap_future cancels the future when the awaiting task is cancelled.
        return self._cancelled or self.future.cancelled()


class _Work:
    """A job's progress on the worker: rows longest first, and what has been computed."""

    def __init__(self, job: Job, seq: int, task: str | None, dim: int):
        self.job, self.seq, self.task = job, seq, task
        self.order = sorted(range(len(job.rows)), key=lambda i: -len(job.rows[i]))
        self.done = 0  # rows of `order` computed
        self.served = 0  # computed tokens, padding included
        self.start = 0  # fair-queuing start tag: the virtual clock at arrival + served
        self.out = np.empty((len(job.rows), dim), np.float32)  # pooled, batch by batch
        self.solo = False  # failed in a shared batch: retried alone
        self.steps: Iterator[mx.array] | None = None  # a long row's pass, step by step
        self.step = 0  # steps of it run

    def long(self, budget: int) -> bool:
        """Whether the next row is over the budget: a pass of its own, run in steps."""
        return self.length(self.done) > budget

    def length(self, k: int) -> int:
        return len(self.job.rows[self.order[k]])

    def next_cost(self, budget: int) -> int:
        """The cost of this job's next batch if it ran alone (about): padded tokens plus
        a pass's fixed cost; a long row's step costs about a budget's batch."""
        if self.long(budget):
            return budget + (0 if self.step else BATCH_COST)
        return min(self.length(self.done) * (len(self.order) - self.done), budget) + BATCH_COST


class Worker:
    """One thread that loads the model and embeds submitted jobs, batch by batch.

    `load_model` runs on the worker thread, so every MLX array lives there. Jobs'
    batches interleave by fair queuing. While it runs, MLX's buffer cache is capped at
    `limits.cache_limit`, and emptied after IDLE_SECONDS idle.
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
        self._cond = threading.Condition()
        self._incoming: list[Job] = []  # submitted, not yet taken by the worker
        self._held = self._in_batch = 0  # jobs the worker holds; of those, in this batch
        self._stopping = False
        self._seq = itertools.count()  # arrival order
        self._clock = 0  # fair queuing's virtual time: the finish tag of the last batch opener
        self._ready = threading.Event()
        # Set once idle memory is given back, cleared when work arrives (tests wait on it).
        self.memory_released = threading.Event()
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
        """Finish the jobs already submitted, then end the thread."""
        with self._cond:
            self._stopping = True
            self._cond.notify()
        if self._thread.is_alive():
            self._thread.join(timeout)

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    @property
    def queue_depth(self) -> int:
        """Jobs waiting for the worker: submitted and unfinished, not in the running batch."""
        with self._cond:
            return len(self._incoming) + self._held - self._in_batch

    def full(self) -> bool:
        return self.queue_depth >= self.limits.max_queue

    def submit(self, job: Job) -> Future:
        with self._cond:
            if not self.alive or self._stopping:
                raise RuntimeError("The embedding worker is not running.")
            if len(self._incoming) + self._held - self._in_batch >= self.limits.max_queue:
                raise QueueFull
            self._incoming.append(job)
            self._cond.notify()
        return job.future

    def _run(self) -> None:
        try:
            self.model = self._load_model()
        except BaseException as e:  # handed to start()'s caller
            self._error = e
            return
        finally:
            self._ready.set()
        previous = mx.set_cache_limit(self.limits.cache_limit)
        work: list[_Work] = []
        while self._take(work):
            try:
                self._step(work)
            except Exception as e:  # a bug: fail the jobs held, but keep serving
                for w in work:
                    self._settle(w.job, error=e)
                work.clear()
            with self._cond:
                self._held, self._in_batch = len(work), 0
        mx.set_cache_limit(previous)

    def _take(self, work: list[_Work]) -> bool:
        """Add newly submitted jobs to `work`. With nothing to do, wait for some, and give
        memory back once idle for IDLE_SECONDS. False: stopped, and nothing left to do."""
        if not work:
            with self._cond:
                idle = not self._cond.wait_for(self._news, IDLE_SECONDS)
            if idle:
                release_memory()
                self.memory_released.set()
                self.metrics.memory_released.set(1)
        with self._cond:
            self._cond.wait_for(lambda: work or self._news())
            new, self._incoming = self._incoming, []
            if new:
                self.memory_released.clear()
                self.metrics.memory_released.set(0)
            self._held += len(new)
        for job in new:
            if w := self._admit(job):
                # Start at the clock, not at zero: else a stream of newcomers would keep
                # a partly served job waiting for ever.
                w.start = self._clock
                work.append(w)
        return bool(work) or not self._stopping

    def _news(self) -> bool:
        return bool(self._incoming) or self._stopping

    def _admit(self, job: Job) -> _Work | None:
        """Check the job's arguments up front, so a bad job fails alone and costs nothing."""
        try:
            task = self.model.validate(
                job.rows,
                task=job.adapter if self.model.multitask else None,
                truncate_dim=job.truncate_dim,
                precision=job.precision,
            )
        except Exception as e:
            self._settle(job, error=e)
            return None
        w = _Work(job, next(self._seq), task, self.model.dim)
        if not job.rows:
            self._finish(w)
            return None
        return w

    def _step(self, work: list[_Work]) -> None:
        """Drop cancelled and expired jobs, then run one batch and hand out its rows."""
        now = time.monotonic()
        for w in list(work):
            if w.job.cancelled:
                self.metrics.dropped(w.served, timed_out=False)
            elif w.job.deadline is not None and now >= w.job.deadline:
                limit = self.limits.request_timeout
                limit = f"{limit:g} s" if limit is not None else "its deadline"
                self._settle(
                    w.job,
                    error=DeadlineExceeded(
                        f"The request took longer than {limit} (--request-timeout); its "
                        "remaining inputs were dropped. Send fewer or shorter inputs per "
                        "request, or raise --request-timeout."
                    ),
                )
                self.metrics.dropped(w.served, timed_out=True)
            else:
                continue
            work.remove(w)
        if not work:
            return
        batch, width = self._plan(work)
        with self._cond:
            self._in_batch = len(batch)
        if batch[0][0].long(self.limits.max_batch_tokens):
            self._long_step(batch[0][0], work)
            return
        rows = [w.job.rows[i] for w, n in batch for i in w.order[w.done : w.done + n]]
        try:
            vectors = np.array(self.model.embed_batch(rows, batch[0][0].task))
        except Exception as e:
            if len(batch) > 1:  # rows of several jobs: retry each alone to find the culprit
                for w, _ in batch:
                    w.solo = True
            else:
                self._settle(batch[0][0].job, error=e)
                work.remove(batch[0][0])
            return
        self.metrics.batch(len(batch), len(rows) * width)
        start = 0
        for w, n in batch:
            w.out[w.order[w.done : w.done + n]] = vectors[start : start + n]
            start += n
            w.done += n
            w.served += n * width
            w.start += n * width + (BATCH_COST if w is batch[0][0] else 0)
            if w.done == len(w.order):
                work.remove(w)
                self._finish(w)
        self._clock = max(self._clock, batch[0][0].start)  # the opener's finish tag

    def _long_step(self, w: _Work, work: list[_Work]) -> None:
        """Run one step of `w`'s long row (starting its pass if need be); after the last,
        hand out its vector."""
        budget, layers = self.limits.max_batch_tokens, len(self.model.model.layers)
        length = w.length(w.done)
        rows, steps = long_steps(length, budget, layers)
        cost = w.next_cost(budget)  # charged as it runs
        try:
            if w.steps is None:
                ids, lengths = self.model.engine.padded([w.job.rows[w.order[w.done]]])
                w.steps = self.model.model.embed_steps(ids, lengths, rows)
            with using_task(w.task):  # LoRA layers read it while the graph is built
                out = next(w.steps)
            mx.eval(out)
        except Exception as e:
            w.steps = None
            self._settle(w.job, error=e)
            work.remove(w)
            return
        w.step, w.start, w.served = w.step + 1, w.start + cost, w.served + -(-length // steps)
        self._clock = max(self._clock, w.start)
        if w.step < steps:  # more to go
            return
        self.metrics.batch(1, length)
        w.out[w.order[w.done]] = np.array(out.astype(mx.float32))[0]
        w.done, w.steps, w.step = w.done + 1, None, 0
        if w.done == len(w.order):
            work.remove(w)
            self._finish(w)

    def _plan(self, work: list[_Work]) -> tuple[list[tuple[_Work, int]], int]:
        """The next batch: (job, rows taken) pairs and the padded width.

        The first job in line opens it with its longest rows; jobs of the same task, in
        line order, fill what the token budget and the padding cap leave.
        """
        budget = self.limits.max_batch_tokens
        line = sorted(work, key=lambda w: (w.start + w.next_cost(budget), w.seq))
        first = line[0]
        batch, count, width, real = [], 0, 0, 0
        for w in line:
            if w is not first and (w.task != first.task or w.solo or first.solo):
                continue
            n = 0
            while w.done + n < len(w.order):
                length = w.length(w.done + n)
                if not fits(count, width, real, length, self.limits.max_batch_tokens):
                    break
                count, width, real, n = count + 1, max(width, length), real + length, n + 1
            if n:
                batch.append((w, n))
        return batch, width

    def _finish(self, w: _Work) -> None:
        job = w.job
        if job.cancelled:  # during its last batch
            self.metrics.dropped(w.served, timed_out=False)
            return
        try:
            out = self.model.finish(
                mx.array(w.out),
                truncate_dim=job.truncate_dim,
                normalize_embeddings=job.normalized,
                precision=job.precision,
            )
            self._settle(job, result=np.array(out))
        except Exception as e:
            self._settle(job, error=e)

    @staticmethod
    def _settle(job: Job, *, result=None, error: BaseException | None = None) -> None:
        try:
            if error is None:
                job.future.set_result(result)
            else:
                job.future.set_exception(error)
        except InvalidStateError:  # cancelled meanwhile; nobody waits for it
            pass


def long_steps(length: int, budget: int, layers: int) -> tuple[int, int]:
    """(queries per piece, steps) for one row of `length` tokens over a `budget`: a piece
    of q queries attends to up to `length` keys, so q = budget² / length costs about what
    a budget's batch of budget-long rows does; the last layer is one step (one query)."""
    rows = max(1, min(length, budget * budget // length))
    return rows, (layers - 1) * -(-length // rows) + 1
