"""The server's embedding worker, driven directly: fair scheduling, cancellation,
deadlines, failures that stay with their job, and memory given back when idle.

Run: pytest -q tests/test_worker.py

Each test counts forward passes with a wrapper around the worker model's `engine.embed_batch`,
which can also hold the worker inside a pass while the test submits or cancels jobs.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import threading
import time

import mlx.core as mx
import numpy as np
import pytest

import mlx_jina
from mlx_jina.server import Limits
from mlx_jina.server.worker import DeadlineExceeded, Job, QueueFull, Worker

SMALL, NAN, BOOM = 9, 7, 8  # token ids the long rows never hold; NAN and BOOM misbehave


class Recorder:
    """Wraps the engine's `embed_batch`: records each pass's rows and task, holds the
    first pass until `release` is set, turns rows holding NAN into NaN and raises on BOOM."""

    def __init__(self, hold: bool = False):
        self.calls: list[tuple[str | None, list[list[int]]]] = []
        self.entered, self.release = threading.Event(), threading.Event()
        if not hold:
            self.release.set()

    def wrap(self, model: mlx_jina.Embedder) -> mlx_jina.Embedder:
        forward = model.engine.embed_batch

        def recorded(rows, task=None):
            self.calls.append((task, [list(r) for r in rows]))
            self.entered.set()
            assert self.release.wait(30)
            if any(BOOM in r for r in rows):
                raise RuntimeError("boom")
            out = forward(rows, task)
            nan = mx.array([NAN in r for r in rows])[:, None]
            return mx.where(nan, mx.array(float("nan")), out)

        model.engine.embed_batch = recorded
        return model

    def position(self, token: int) -> int:
        """Index of the first pass that held `token`."""
        return next(i for i, (_, rows) in enumerate(self.calls) if any(token in r for r in rows))


def long_rows(n: int, length: int, seed: int = 0) -> list[list[int]]:
    rng = random.Random(seed)
    return [[rng.randrange(20, 500) for _ in range(length)] for _ in range(n)]


def job(
    rows, task="retrieval", truncate_dim=None, normalized=True, precision="float32", deadline=None
) -> Job:
    return Job(task, rows, truncate_dim, normalized, precision, deadline)


@pytest.fixture
def start(tiny_qwen_base):
    """start(recorder, **limits) -> a started Worker on the multitask
    tiny model, 64 tokens a batch unless told; stopped after the test."""
    workers = []

    def make(recorder: Recorder, **limits):
        def load():
            model = mlx_jina.load(tiny_qwen_base, multitask=True, task="retrieval")
            return recorder.wrap(model)

        limits = Limits(**{"max_batch_tokens": 64, **limits})
        workers.append(Worker(load, limits=limits).start())
        return workers[-1]

    yield make
    for worker in workers:
        worker.stop()


@pytest.fixture(scope="module")
def direct(tiny_qwen_base):
    """The same multitask model, loaded on the test thread, called directly."""
    return mlx_jina.load(tiny_qwen_base, multitask=True, task="retrieval")


def assert_same(got: np.ndarray, want: np.ndarray) -> None:
    assert got.shape == want.shape and got.dtype == want.dtype
    if got.dtype.kind != "f":  # int8 codes may land one step apart; binary bits match
        assert np.abs(got.astype(int) - want.astype(int)).max() <= 1
        return
    got, want = got.astype(np.float64), want.astype(np.float64)
    cos = (got * want).sum(1) / np.linalg.norm(got, axis=1) / np.linalg.norm(want, axis=1)
    assert cos.min() >= 0.99999
    np.testing.assert_allclose(got, want, atol=1e-4)


# ---------------------------------------------------------------------------
# abandoned work


@pytest.mark.parametrize("how", ["job.cancel", "future.cancel"])
def test_cancelled_job_stops_before_its_next_batch(start, how):
    """A 12-batch job cancelled during its first batch computes no other batch,
    whether the app cancels the job (client gone) or asyncio cancels the future."""
    rec = Recorder(hold=True)
    worker = start(rec)
    big = job(long_rows(12, 40))  # 40 tokens a row, 64 a batch: one row per batch
    worker.submit(big)
    assert rec.entered.wait(10)
    big.cancel() if how == "job.cancel" else big.future.cancel()
    rec.release.set()
    worker.submit(job([[SMALL, 10, 11]])).result(10)
    assert big.future.cancelled() and big.cancelled
    assert len(rec.calls) == 2  # big's first batch, then the next job's
    m = worker.metrics
    assert (m.cancelled, m.timed_out, m.abandoned_tokens) == (1, 0, 40)
    text = m.render(worker.queue_depth)
    assert "mlx_jina_cancelled_total 1.0" in text
    assert "mlx_jina_abandoned_tokens_total 40.0" in text


def test_deadline_drops_the_rest_of_the_job(start):
    """Past its deadline a job gets DeadlineExceeded naming the timeout and the
    flag, before its next batch; a job already past it computes nothing."""
    assert Limits().request_timeout == 300
    rec = Recorder(hold=True)
    worker = start(rec, request_timeout=1.0)
    slow = job(long_rows(12, 40), deadline=time.monotonic() + 300)
    worker.submit(slow)
    assert rec.entered.wait(10)
    slow.deadline = time.monotonic()  # passes while its first batch runs
    rec.release.set()
    with pytest.raises(DeadlineExceeded, match=r"longer than 1 s \(--request-timeout\)"):
        slow.future.result(10)
    late = job([[SMALL, 10]], deadline=time.monotonic())
    with pytest.raises(DeadlineExceeded):
        worker.submit(late).result(10)
    assert len(rec.calls) == 1
    m = worker.metrics
    assert (m.timed_out, m.cancelled, m.abandoned_tokens) == (2, 0, 40)
    assert "mlx_jina_timed_out_total 2.0" in m.render(0)


# ---------------------------------------------------------------------------
# fairness, shared batches, a worker that survives its jobs


def test_short_job_waits_for_one_batch_not_a_long_job(start, direct):
    """A one-row job submitted while a 12-batch job runs is in the very next
    batch, not after all of the long job (position 12, as first-come-first-served was)."""
    position = 1
    rec = Recorder(hold=True)
    worker = start(rec)
    rows = long_rows(12, 40)
    big = worker.submit(job(rows))
    assert rec.entered.wait(10)
    small = worker.submit(job([[SMALL, 10, 11]]))
    rec.release.set()
    assert_same(small.result(10), direct.encode_ids([[SMALL, 10, 11]], task="retrieval"))
    assert_same(big.result(30), direct.encode_ids(rows, task="retrieval"))
    assert rec.position(SMALL) == position and len(rec.calls) == 13


def test_small_jobs_share_a_batch_per_task(start, direct):
    """Queued small jobs share one forward pass per adapter, whatever their
    output options; another adapter's rows get a pass of their own."""
    rec = Recorder(hold=True)
    worker = start(rec, max_batch_tokens=1024)
    first = worker.submit(job([[SMALL, 10, 11]]))
    assert rec.entered.wait(10)
    options = [
        {},
        {"truncate_dim": 32},
        {"normalized": False},
        {"precision": "int8"},
        {"precision": "binary", "truncate_dim": 32},
    ]
    rows = long_rows(7, 12, seed=1)
    jobs = [job([row], **o) for row, o in zip(rows, options, strict=False)]
    jobs += [job([row], task="clustering") for row in rows[5:]]
    futures = [worker.submit(j) for j in jobs]
    rec.release.set()
    first.result(10)
    for j, f in zip(jobs, futures, strict=True):
        want = direct.encode_ids(
            j.rows,
            task=j.adapter,
            truncate_dim=j.truncate_dim,
            normalize_embeddings=j.normalized,
            precision=j.precision,
        )
        assert_same(f.result(10), want)
    assert [(task, len(rows)) for task, rows in rec.calls] == [
        ("retrieval", 1),
        ("retrieval", 5),
        ("clustering", 2),
    ]


def test_cancelled_future_does_not_kill_the_worker(start, direct):
    """asyncio.wrap_future cancels the future when its request task is
    cancelled; the worker then finishes that job's last batch and must not die on
    set_result (InvalidStateError), and serves the next job."""
    rec = Recorder(hold=True)
    worker = start(rec)
    doomed = job([[SMALL, 10, 11]])
    worker.submit(doomed)
    assert rec.entered.wait(10)  # its last (only) batch has started
    doomed.future.cancel()
    rec.release.set()
    after = worker.submit(job([[12, 13]]))
    assert_same(after.result(10), direct.encode_ids([[12, 13]], task="retrieval"))
    assert worker.alive


def test_a_failing_job_fails_alone(start, direct):
    """NaN output in a shared batch and bad arguments each fail only their own
    job; the worker lives on."""
    rec = Recorder(hold=True)
    worker = start(rec, max_batch_tokens=1024)
    worker.submit(job([[SMALL, 10, 11]]))
    assert rec.entered.wait(10)
    good = [[30, 31, 32, 33], [40, 41, 42]]
    jobs = {
        "nan": job([[30, 31, NAN, 33]]),
        "good": job(good),
        "dim": job([[30, 31]], truncate_dim=8),
        "vocab": job([[30, 10**6]]),
        "task": job([[30, 31]], task="no-such-task"),
    }
    futures = {name: worker.submit(j) for name, j in jobs.items()}
    rec.release.set()
    for name, error in [
        ("nan", FloatingPointError),
        ("dim", ValueError),
        ("vocab", ValueError),
        ("task", ValueError),
    ]:
        with pytest.raises(error):
            futures[name].result(10)
    assert_same(futures["good"].result(10), direct.encode_ids(good, task="retrieval"))
    assert rec.calls[1][1] == [[30, 31, NAN, 33], *good]  # the NaN row shared the batch
    assert worker.alive
    assert worker.submit(job([[12, 13]])).result(10).shape == (1, 64)


def test_an_error_in_a_shared_batch_fails_only_its_job(start, direct):
    """When a shared forward pass raises, each job is retried alone, so only the
    job that causes the error gets it."""
    rec = Recorder(hold=True)
    worker = start(rec, max_batch_tokens=1024)
    worker.submit(job([[SMALL, 10, 11]]))
    assert rec.entered.wait(10)
    good = [[30, 31, 32, 33], [40, 41, 42]]
    before, boom, after = (worker.submit(job(r)) for r in (good, [[30, BOOM, 32]], good[::-1]))
    rec.release.set()
    with pytest.raises(RuntimeError, match="boom"):
        boom.result(10)
    assert_same(before.result(10), direct.encode_ids(good, task="retrieval"))
    assert_same(after.result(10), direct.encode_ids(good[::-1], task="retrieval"))
    assert worker.alive


def test_mixed_tasks_and_options_match_direct_encode(start, direct):
    """Jobs of all four adapters and every output option, cut into many shared batches
    (a 128-token budget), give the vectors of direct encode_ids."""
    rec = Recorder(hold=True)
    worker = start(rec, max_batch_tokens=128)
    worker.submit(job([[SMALL, 10, 11]]))
    assert rec.entered.wait(10)
    rng = random.Random(3)
    precisions = ["float32", "float16", "int8", "uint8", "binary", "ubinary"]
    jobs = []
    for i in range(16):
        rows = [
            [rng.randrange(20, 500) for _ in range(rng.randint(3, 60))]
            for _ in range(rng.randint(1, 6))
        ]
        task = direct.tasks[i % len(direct.tasks)]
        jobs.append(
            job(
                rows,
                task=task,
                truncate_dim=rng.choice([None, 32, 48]),
                normalized=rng.random() < 0.7,
                precision=precisions[i % 6],
            )
        )
    futures = [worker.submit(j) for j in jobs]
    rec.release.set()
    for j, f in zip(jobs, futures, strict=True):
        want = direct.encode_ids(
            j.rows,
            task=j.adapter,
            truncate_dim=j.truncate_dim,
            normalize_embeddings=j.normalized,
            precision=j.precision,
        )
        assert_same(f.result(30), want)
    assert any(len(rows) > 1 for _, rows in rec.calls)


def test_queue_counts_waiting_jobs_and_stop_finishes_them(start):
    """Jobs outside the running batch count against max_queue (429 in the app), and
    stop() finishes the jobs already submitted before the thread ends."""
    rec = Recorder(hold=True)
    worker = start(rec, max_queue=2)
    first = worker.submit(job(long_rows(3, 40)))
    assert rec.entered.wait(10)
    waiting = [worker.submit(job([[SMALL, 10 + i]])) for i in range(2)]
    assert worker.queue_depth == 2 and worker.full()
    with pytest.raises(QueueFull):
        worker.submit(job([[SMALL, 20]]))
    rec.release.set()
    worker.stop()
    assert not worker.alive
    assert all(f.done() and not f.exception() for f in [first, *waiting])
    with pytest.raises(RuntimeError, match="not running"):
        worker.submit(job([[SMALL, 20]]))


# ---------------------------------------------------------------------------
# memory


MEMORY_PROBE = """
import json, os, random, sys, time
import mlx.core as mx
import mlx_jina
from mlx_jina.server import Limits
from mlx_jina.server.worker import Job, Worker

def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

def job(rows):
    return Job("retrieval", rows, None, True, "float32")

worker = Worker(lambda: mlx_jina.load(sys.argv[1], multitask=True, task="retrieval"),
                limits=Limits(max_batch_tokens=16384)).start()
worker.submit(job([[9, 10, 11]])).result(10)
assert worker.memory_released.wait(30)  # idle: the worker gave memory back
before = rss()
rng = random.Random(4)
rows = [[rng.randrange(20, 500) for _ in range(rng.randint(200, 400))] for _ in range(32)]
worker.submit(job(rows)).result(60)
del rows
assert worker.memory_released.wait(30)  # idle again, after the heavy job
grown = rss() - before
cached = mx.get_cache_memory()
worker.stop()
print(json.dumps({"grown": grown, "cached": cached}))
"""


@pytest.mark.skipif(not os.path.exists("/proc/self/statm"), reason="reads Linux's /proc")
def test_memory_is_given_back_when_idle(tiny_qwen_base):
    """Idle for 2 s after a heavy job (32 rows of 200-400 tokens, ~15 batches
    of different widths; 77 MiB at its peak), MLX's buffer cache is empty and RSS is back
    within 32 MiB of where it was before the job. Measured: 0.3-4 MiB in most runs, now
    and then 16-19 MiB that an MLX thread keeps live (a trim from any thread leaves it).
    Without the release: 76 MiB up, 75 MiB of it cached. Measured in a fresh process:
    the test process's own allocations would blur it."""
    proc = subprocess.run(
        [sys.executable, "-c", MEMORY_PROBE, str(tiny_qwen_base)],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.splitlines()[-1])
    assert result["grown"] < 32 * 2**20, f"RSS grew by {result['grown'] / 2**20:.1f} MiB"
    assert result["cached"] == 0


def test_a_stream_of_newcomers_does_not_starve_a_partly_served_job(start, direct):
    """With least-served-first from zero, every new request went ahead of a job that had
    been served once, so under steady traffic it waited until its deadline (the soak test
    saw 504s for small requests). Newcomers now start at the fair-queuing clock."""
    stream = {"left": 30}
    rec = Recorder()
    worker = start(rec)
    forward = worker.model.engine.embed_batch

    def feeding(rows, task=None):  # one new request arrives during every forward pass
        if stream["left"]:
            stream["left"] -= 1
            worker.submit(job([[SMALL, 12, 13]], task="clustering"))
        return forward(rows, task)

    worker.model.engine.embed_batch = feeding
    rows = long_rows(8, 40, seed=3)  # 8 passes of one row each at 64 tokens a batch
    old = worker.submit(job(rows))
    assert_same(old.result(30), direct.encode_ids(rows, task="retrieval"))
    passes = [task for task, _ in rec.calls]
    last = max(i for i, task in enumerate(passes) if task == "retrieval")
    assert last < 30  # done while newcomers still arrived: interleaved, not starved
    # and no newcomer waited for all of it: the first ones ran before its second pass
    assert passes.index("clustering") < passes.index("retrieval", 1)


def gate_pieces(layer, events: list, entered: threading.Event, release: threading.Event):
    """Hold the worker in the first piece of `layer` over a long row; record each piece."""
    pieces = layer.pieces

    def gated(x, rows, causal):
        for k, piece in enumerate(pieces(x, rows, causal)):
            events.append("first piece" if k == 0 else "piece")
            if k == 0:
                entered.set()
                assert release.wait(30)
            yield piece

    layer.pieces = gated


def test_short_jobs_run_between_the_pieces_of_a_long_input(start, direct):
    """One input over the token budget was one forward pass, so a 32K-token text kept
    every short request waiting for the whole pass (minutes on a CPU). It now runs in
    steps, each layer in pieces of queries that cost about one budget's batch: a short job
    that arrives during the first piece is served right after it, and both vectors equal
    direct encode_ids."""
    rec = Recorder()
    worker = start(rec)  # 64 tokens a batch: a 100-token row comes in 40-query pieces
    layers = worker.model.model.layers
    entered, release = threading.Event(), threading.Event()
    events: list[str] = []
    gate_pieces(layers[0], events, entered, release)
    last = layers[-1]

    def recorded_last(h, mask, *rest):
        if h.shape[1] == 100:
            events.append("last layer")
        return last(h, mask, *rest)

    layers[-1] = recorded_last
    row = long_rows(1, 100, seed=5)[0]
    long = worker.submit(job([row]))
    assert entered.wait(10)
    short = worker.submit(job([[SMALL, 10, 11]]))
    short.add_done_callback(lambda f: events.append("short done"))
    release.set()
    assert_same(long.result(30), direct.encode_ids([row], task="retrieval"))
    assert_same(short.result(30), direct.encode_ids([[SMALL, 10, 11]], task="retrieval"))
    assert events == ["first piece", "short done", "piece", "piece", "last layer"]
    assert worker.metrics.batches == 2  # the long row counts as one batch, as before


def test_a_long_input_is_dropped_between_its_steps(start):
    """A cancelled long input computes no further step of its pass."""
    rec = Recorder()
    worker = start(rec)
    entered, release = threading.Event(), threading.Event()
    events: list[str] = []
    gate_pieces(worker.model.model.layers[0], events, entered, release)
    long = job(long_rows(2, 100, seed=6))  # two long rows: 2 passes of 4 steps
    worker.submit(long)
    assert entered.wait(10)
    long.cancel()
    release.set()
    worker.submit(job([[SMALL, 10, 11]])).result(30)  # after the drop, in the same thread
    assert events == ["first piece"] and worker.metrics.cancelled == 1
    assert worker.metrics.abandoned_tokens == 25  # one step of four, of a 100-token row


@pytest.mark.parametrize("rows", [1, 7, 40, 99])
@pytest.mark.parametrize("base", ["tiny_qwen_base", "tiny_eurobert_base"])
def test_a_pass_in_pieces_equals_the_whole_pass(request, base, rows):
    """Causal (Qwen3) and bidirectional (EuroBERT) layers computed in pieces of queries
    give the vector of the whole pass."""
    model = mlx_jina.load(request.getfixturevalue(base), task="retrieval")
    ids, lengths = model.engine.padded(long_rows(1, 100, seed=7))
    want = np.array(model.model.embed(ids, lengths))
    steps = list(model.model.embed_steps(ids, lengths, rows))
    assert len(steps) == (len(model.model.layers) - 1) * -(-100 // rows) + 1
    np.testing.assert_allclose(np.array(steps[-1]), want, atol=1e-5)
