"""Shards over the ranks of an MLX group: lockstep rounds over collectives, any size.

Rank 0 alone reads the input and writes the output; every rank embeds. Each round:

1. rank 0 broadcasts the round's plan: a fixed int64 header (stop or work, shards,
   payload bytes), then one uint8 payload holding each shard's rank, index and UTF-8
   texts (wire.py). A broadcast is an `all_sum` where the other ranks add zeros.
2. every rank embeds the shards the plan gives it (rank 0 too);
3. one `all_gather` of a fixed report per rank (status, shards, bytes, busy time,
   tokens), then one of the vectors, each rank's bytes padded to the longest.

Why collectives only: MLX's ring backend sends between ring neighbours only (rank 0 of 4
cannot `send` to rank 2), while its collectives span the ring, as on MPI and JACCL. A
second scheduler (send/recv to whichever rank is free) was kept for up to 3 ranks until
its transport was measured against the work: a shard of 10,000 texts cost about 1 s of
transport in rounds against minutes of embedding on a Mac (docs/corpus-distributed.md).

Work is balanced between rounds: each rank gets shards in proportion to its measured
tokens/s (1 to MAX_QUOTA per round). Before the first round every rank proves it runs
rank 0's job (agreement.py). Failures end the job with ShardPoolError: a rank that dies
breaks the next collective on every rank ("connection to a peer was lost"); a rank whose
shard function raises reports the error in its round; a frozen rank is caught by
`stall_timeout`; mlx.launch's SIGTERM (sent to every rank once one has died) is turned
into the same error. Shards already yielded stand, so a rerun resumes.
"""

from __future__ import annotations

import os
import queue
import signal
import threading
import time
import warnings
from collections.abc import Callable, Iterable, Iterator
from typing import Self

import mlx.core as mx
import numpy as np

from ..thread_streams import release_at_thread_exit
from .agreement import agree
from .errors import ShardPoolError
from .wire import Plan, Result, checked, pack_plan, pack_vectors, packed_size, unpack_plan, unpack_vectors

EmbedShard = Callable[[list[str]], tuple[np.ndarray, int]]

MAX_QUOTA = 4  # shards per rank per round: bounds a round's length and its memory
_WORK, _STOP = 1, 0
_OK, _FAILED = 0, 1
_HEADER = 4  # kind, shards, payload bytes, unused
_REPORT = 5  # status, shards done, payload bytes, busy microseconds, tokens
RETIRED_ENV = "MLX_JINA_DIST_MODE"  # chose between two schedulers; one is left


def init_group(backend: str = "any") -> mx.distributed.Group | None:
    """The launched group, or None when this process runs alone (no `mlx.launch`)."""
    if not mx.distributed.is_available():
        return None
    group = mx.distributed.init(backend=backend)
    return group if group.size() > 1 else None


# ---------------------------------------------------------------------------
# one round, on any rank


def _broadcast(x: np.ndarray | None, shape: tuple, dtype, group, stream) -> np.ndarray:
    """Rank 0's `x` on every rank (the others pass None and add zeros)."""
    if int(np.prod(shape)) == 0:
        return np.zeros(shape, dtype)
    x = np.zeros(shape, dtype) if x is None else x
    out = mx.distributed.all_sum(mx.array(x), group=group, stream=stream)
    mx.eval(out)
    return np.array(out, copy=False)


def _gather(x: np.ndarray, group, stream) -> np.ndarray:
    out = mx.distributed.all_gather(mx.array(x), group=group, stream=stream)
    mx.eval(out)
    return np.array(out, copy=False)  # a view of MLX's buffer: no copy of the round's bytes


def _embed_mine(mine, embed: EmbedShard | None) -> tuple[bytes | None, list, int, int]:
    """(failure message or None, results, busy microseconds, tokens)."""
    results, started = [], time.perf_counter()
    try:
        for index, texts in mine:
            vectors, tokens = embed(texts)
            results.append((index, checked(vectors), int(tokens)))
    except Exception as exc:  # noqa: BLE001 - reported to rank 0, then raised by the caller
        shard = mine[len(results)][0]
        message = f"rank failed on shard {shard}: {type(exc).__name__}: {exc}"
        return message.encode("utf-8")[:4000], [exc], 0, 0
    busy = int(1e6 * (time.perf_counter() - started))
    return None, results, busy, sum(r[2] for r in results)


def _round(group, stream, plan: Plan | None, embed: EmbedShard | None):
    """One round on any rank (rank 0 passes the plan, the others None). Returns None when
    rank 0 said stop; else the reports, (N, _REPORT), and on rank 0 every rank's results
    as (rank, outcome) with outcome a list of Results or a ShardPoolError."""
    me = group.rank()
    payload = pack_plan(plan) if me == 0 else None
    header = np.array([_WORK, len(plan), payload.size, 0], np.int64) if me == 0 else None
    kind, shards, nbytes, _ = _broadcast(header, (_HEADER,), np.int64, group, stream).tolist()
    if kind == _STOP:
        return None
    payload = _broadcast(payload, (nbytes,), np.uint8, group, stream)
    mine = unpack_plan(payload, shards, me)
    failure, results, busy, tokens = _embed_mine(mine, embed)
    status = _OK if failure is None else _FAILED
    nbytes = packed_size(results) if failure is None else len(failure)
    report = np.array([status, len(mine), nbytes, busy, tokens], dtype=np.int64)
    reports = _gather(report, group, stream).reshape(group.size(), _REPORT)
    width = int(reports[:, 2].max())
    padded = np.zeros(width, np.uint8)
    if failure is None:
        pack_vectors(results, padded)
    else:
        padded[:nbytes] = np.frombuffer(failure, np.uint8)
    gathered = _gather(padded, group, stream).reshape(group.size(), width) if width else None
    if status == _FAILED and me != 0:
        raise results[0]  # reported: now this rank stops
    if me != 0:
        return reports, []
    outcomes = []
    for rank, (rank_status, count, size, _, _) in enumerate(reports.tolist()):
        raw = gathered[rank, :size] if size else b""
        if rank_status == _FAILED:
            text = bytes(raw).decode("utf-8", errors="replace").replace("rank failed", f"rank {rank} failed", 1)
            outcomes.append((rank, ShardPoolError(text)))
        elif count:
            outcomes.append((rank, unpack_vectors(raw, count)))
    return reports, outcomes


def _held(plan: Plan) -> str:
    """A round's shards, for an error: "3 (rank 1), 4 (rank 2)"."""
    return ", ".join(f"{index} (rank {rank})" for rank, index, _ in plan)


def _agree(group, settings: dict | None, stream) -> None:
    """Every rank checks the job against rank 0's before the first round."""
    try:
        agree(group, settings or {}, lambda words: _gather(words, group, stream))
    except RuntimeError as exc:
        if isinstance(exc, ShardPoolError):
            raise
        raise ShardPoolError(f"rank {group.rank()}: {str(exc).strip()}") from None


# ---------------------------------------------------------------------------
# ranks > 0


def serve(group: mx.distributed.Group, embed_shard: EmbedShard, settings: dict | None = None) -> None:
    """Ranks > 0: check `settings` (the job's, as settings.job_settings gives them) against
    rank 0's, then take part in every round until rank 0 says stop. An error in
    `embed_shard` is reported to rank 0 (which stops the job), then raised."""
    stream = mx.new_stream(mx.cpu)
    _agree(group, settings, stream)
    while True:
        try:
            if _round(group, stream, None, embed_shard) is None:
                return
        except ShardPoolError:
            raise
        except RuntimeError as exc:  # MLX: a rank of the ring is gone
            raise ShardPoolError(f"rank {group.rank()}: {str(exc).strip()}") from None


# ---------------------------------------------------------------------------
# rank 0


class _Run:
    """One `map` call's shared state: the input, the results, SIGTERM seen."""

    def __init__(self, shards: Iterable[tuple[int, list[str]]]):
        self.shards = iter(shards)
        self.stop = threading.Event()
        self.results: queue.Queue = queue.Queue()
        self.sigterm = False

    def next_shard(self) -> tuple[int, list[str]] | None:
        return None if self.stop.is_set() else next(self.shards, None)


class RoundPool:
    """Rank 0's side: `map` hands shards to every rank (itself too, with `embed_local`)."""

    def __init__(
        self,
        group: mx.distributed.Group | None,
        embed_local: EmbedShard | None = None,
        *,
        stall_timeout: float | None = None,
        settings: dict | None = None,
    ):
        """`group` from `init_group` (None: this process alone). `stall_timeout`: seconds
        a rank may take per shard before the job stops with an error (default: no limit;
        a dead rank is detected without it, a frozen one is not). `settings`: the job's,
        checked against every rank's before any shard (the ranks pass theirs to `serve`)."""
        if group is not None and group.rank() != 0:
            raise ValueError("RoundPool runs on rank 0; other ranks call serve.")
        self.peers = list(range(1, group.size())) if group is not None else []
        if not self.peers and embed_local is None:
            raise ValueError("no rank to embed with: pass embed_local or launch more ranks.")
        self.group, self.embed_local, self.stall_timeout = group, embed_local, stall_timeout
        self.shards_by_rank = {rank: 0 for rank in [0, *self.peers]}
        self.quota = {rank: 1 for rank in ([0] if embed_local is not None else []) + self.peers}
        self._thread: threading.Thread | None = None
        self._round: tuple[float, float, str] | None = None  # started, time limit, shards
        self._lost = self._frozen = self._failed = self._closed = False
        self._restore: Callable[[], None] = lambda: None
        if group is not None:
            if os.environ.get(RETIRED_ENV, "").strip():
                warnings.warn(f"{RETIRED_ENV} is ignored: corpus jobs always run in rounds, "
                              "on any number of ranks", stacklevel=2)  # fmt: skip
            self._agree(settings)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def map(self, shards: Iterable[tuple[int, list[str]]]) -> Iterator[Result]:
        """Hand out `(shard index, texts)` pairs; yield `(shard index, vectors, tokens)`
        as rounds complete. Raises ShardPoolError when a rank is lost, fails or stalls
        (shards yielded so far stand)."""
        if self._closed:
            raise ValueError(f"this {type(self).__name__} is closed.")
        if self._lost:
            raise ShardPoolError("a rank was lost; start the job again.")
        if self._thread is not None:  # an abandoned map's round finishes first
            self._thread.join()
        if not self.peers:  # alone: no thread, no signal handling
            for index, texts in shards:
                vectors, tokens = self.embed_local(texts)
                self.shards_by_rank[0] += 1
                yield index, vectors, tokens
            return
        run = _Run(shards)
        self._thread = threading.Thread(target=self._rounds, args=(run,), daemon=True)
        self._restore()
        # Kept after a failure: mlx.launch's SIGTERM often lands while the job shuts
        # down, and its one-line error and exit status must still get out.
        self._restore = self._catch_sigterm(run)
        try:
            self._thread.start()
            yield from self._collect(run)
        except ShardPoolError:
            self._failed = True
            raise
        finally:
            run.stop.set()  # the thread finishes the round in hand, then ends

    def _agree(self, settings: dict | None) -> None:
        stream = mx.new_stream(mx.cpu)
        try:
            _agree(self.group, settings, stream)
        except ShardPoolError:
            self._lost = self._failed = True  # the others stop too: no stop to send
            raise

    def _collect(self, run: _Run) -> Iterator[Result]:
        while True:
            try:
                rank, item = run.results.get(timeout=0.2)
            except queue.Empty:
                self._check(run)
                continue
            if isinstance(item, BaseException):
                raise item
            if item is None:
                return
            self.shards_by_rank[rank] += 1
            yield item

    def _check(self, run: _Run) -> None:
        if run.sigterm:
            self._lost = True
            raise ShardPoolError(
                "stopped by SIGTERM (mlx.launch ends every rank once one exits: see the "
                "other ranks' messages); shards done so far are kept, rerun to resume"
            )
        if self.stall_timeout is None or (current := self._round) is None:
            return
        started, limit, held = current
        if time.monotonic() - started > limit:
            self._lost = self._frozen = True
            raise ShardPoolError(
                f"the round of shards {held} gave no answer in {limit:g} s (stall_timeout "
                f"{self.stall_timeout:g} s per shard); a rank is frozen or far too slow; stopping"
            )

    def _plan(self, run: _Run) -> Plan:
        plan = []
        for rank in [*self.peers, 0]:  # rank 0 last: it also writes, so it gets the remainder
            for _ in range(self.quota.get(rank, 0)):
                if (shard := run.next_shard()) is None:
                    return plan
                plan.append((rank, *shard))
        return plan

    def _rounds(self, run: _Run) -> None:
        stream, plan = mx.new_stream(mx.cpu), []
        release_at_thread_exit()
        try:
            while plan := self._plan(run):
                self._start_round(plan)
                reports, outcomes = _round(self.group, stream, plan, self.embed_local)
                self._round = None
                for rank, outcome in outcomes:
                    if isinstance(outcome, ShardPoolError):
                        self._lost = self._lost or rank != 0  # that rank stops after its report
                        run.results.put((rank, outcome))
                        return
                    for result in outcome:
                        run.results.put((rank, result))
                self._rebalance(reports)
        except RuntimeError as exc:  # MLX: a rank of the ring is gone
            self._lost = True
            message = f"a rank was lost in the round of shards {_held(plan)}: {str(exc).strip()}"
            run.results.put((0, ShardPoolError(message)))
        except BaseException as exc:  # noqa: BLE001 - the input failed: map raises it as is
            run.results.put((0, exc))
        finally:
            run.results.put((0, None))

    def _start_round(self, plan: Plan) -> None:
        """A round may last stall_timeout per shard of its busiest rank."""
        per_rank = [sum(1 for r, _, _ in plan if r == rank) for rank in self.quota]
        limit = (self.stall_timeout or 0) * max(per_rank, default=1)
        self._round = (time.monotonic(), limit, _held(plan))

    def _rebalance(self, reports: np.ndarray) -> None:
        """Shards per round in proportion to each rank's tokens/s in this round."""
        speeds = {rank: tokens / busy for rank, (_, count, _, busy, tokens)
                  in enumerate(reports.tolist()) if tokens > 0 and busy > 0 and rank in self.quota}  # fmt: skip
        if len(speeds) < 2:
            return
        slowest = min(speeds.values())
        for rank, speed in speeds.items():
            self.quota[rank] = max(1, min(MAX_QUOTA, round(speed / slowest)))

    @staticmethod
    def _catch_sigterm(run: _Run) -> Callable[[], None]:
        """Turn SIGTERM into a clear error in `map` (main thread only); returns the undo."""
        if threading.current_thread() is not threading.main_thread():
            return lambda: None

        def handler(signum, frame) -> None:
            run.sigterm = True

        previous = signal.signal(signal.SIGTERM, handler)
        return lambda: signal.signal(signal.SIGTERM, previous)

    def close(self) -> None:
        """Wait for the round in hand, then tell every rank to stop, unless the ring is
        broken already. The rounds thread is joined whenever it can end (it ends at once
        after a lost rank), so no thread is left inside MLX; only a frozen rank's
        collective never returns (see errors.exit_on)."""
        if self._closed:
            return
        self._closed = True
        thread = self._thread
        if thread is not None and not self._frozen:
            thread.join(timeout=None if self._lost else self.stall_timeout)
        if self.peers and not self._lost and not (thread is not None and thread.is_alive()):
            try:
                _broadcast(np.array([_STOP, 0, 0, 0], np.int64), (_HEADER,), np.int64, self.group, None)
            except RuntimeError:
                pass  # a rank is gone already
        if not self._failed:
            self._restore()
