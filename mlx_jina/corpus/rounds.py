"""Shards in lockstep rounds over MLX collectives, for groups of any size on any backend.

The ring backend links each rank to its two neighbours only, so rank 0 cannot `send` to
rank 2 of 4; but its collectives (`all_sum`, `all_gather`) span the whole ring, as they
do on MPI and JACCL. So beyond 3 ranks the job runs in rounds, every rank in each step:

1. rank 0 broadcasts the round's plan: a fixed int64 header (stop or work, shards,
   payload bytes), then one uint8 payload holding each shard's rank, index and UTF-8
   texts. A broadcast is an `all_sum` where the other ranks add zeros.
2. every rank embeds the shards the plan gives it (rank 0 too);
3. one `all_gather` of a fixed report per rank (status, shards, bytes, busy time,
   tokens), then one of the vectors, each rank's bytes padded to the longest.

Only rank 0 keeps what the gathers bring; every rank receives all of it, (N-1)/N of the
round's bytes (4 KiB per 1024-d float32 vector), next to seconds of embedding per shard.
Work is balanced between rounds: each rank gets shards in proportion to its measured
tokens/s (1 to MAX_QUOTA per round), so a Mac twice as fast takes two shards per round.
A rank that dies breaks the ring's next collective on every rank ("connection to a peer
was lost"), and mlx.launch SIGTERMs the rest: the job ends with ShardPoolError, and the
rerun resumes from the shards rank 0 wrote (a round's shards are written as it ends).
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable

import mlx.core as mx
import numpy as np

from ..thread_streams import release_at_thread_exit
from .distributed import (
    _DTYPES, EmbedShard, ShardPool, ShardPoolError, _checked, _explain, _Run, _test_kill_at,
    blob_texts, texts_blob, vectors_layout,
)  # fmt: skip

MAX_QUOTA = 4  # shards per rank per round: bounds a round's length and its memory
_WORK, _STOP = 1, 0
_OK, _FAILED = 0, 1
_HEADER = 4  # kind, shards, payload bytes, unused
_REPORT = 5  # status, shards done, payload bytes, busy microseconds, tokens
_META = 6  # per shard in a report: index, tokens, dtype code, ndim, d0, d1


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


# ---------------------------------------------------------------------------
# the plan: (rank, shard index, texts) for every shard of a round


def _pack_plan(plan: list[tuple[int, int, list[str]]]) -> np.ndarray:
    """[rank, index, texts, bytes] per shard, then each shard's `texts_blob`."""
    table, blobs = [], []
    for rank, index, texts in plan:
        blob = texts_blob(texts)
        table.append([rank, index, len(texts), len(blob)])
        blobs.append(blob)
    head = np.array(table, dtype=np.int64).tobytes()
    return np.frombuffer(head + b"".join(blobs), dtype=np.uint8)


def _unpack_plan(payload: np.ndarray, shards: int, me: int) -> list[tuple[int, list[str]]]:
    """This rank's (index, texts) pairs of the round."""
    raw = payload.tobytes()
    table = np.frombuffer(raw[: 32 * shards], dtype=np.int64).reshape(shards, 4)
    mine, offset = [], 32 * shards
    for rank, index, n, size in table.tolist():
        if rank == me:
            mine.append((index, blob_texts(raw[offset : offset + size], n)))
        offset += size
    return mine


# ---------------------------------------------------------------------------
# the report: what one rank sends back


def _packed_size(results: list[tuple[int, np.ndarray, int]]) -> int:
    return sum(8 * _META + vectors.nbytes for _, vectors, _ in results)


def _pack_vectors(results: list[tuple[int, np.ndarray, int]], into: np.ndarray) -> None:
    """Each shard's meta and vectors, written straight into the gather's uint8 buffer."""
    offset = 0
    for index, vectors, tokens in results:
        meta = np.array([index, tokens, *vectors_layout(vectors)], dtype=np.int64)
        for part in (meta, vectors):
            into[offset : offset + part.nbytes] = part.reshape(-1).view(np.uint8)
            offset += part.nbytes


def _unpack_vectors(raw, shards: int) -> list[tuple[int, np.ndarray, int]]:
    """`raw`: bytes or a uint8 array (a row of the gather); the vectors are copied out."""
    results, offset = [], 0
    for _ in range(shards):
        index, tokens, code, ndim, d0, d1 = np.frombuffer(raw, np.int64, _META, offset).tolist()
        offset += 8 * _META
        shape = (d0, d1)[:ndim]
        count = int(np.prod(shape))
        flat = np.frombuffer(raw, _DTYPES[code], count, offset)
        offset += flat.nbytes
        results.append((index, flat.reshape(shape).copy(), tokens))
    return results


def _embed_mine(mine, embed: EmbedShard | None, kill) -> tuple[bytes | None, list, int, int]:
    """(failure message or None, results, busy microseconds, tokens)."""
    results, started = [], time.perf_counter()
    try:
        for index, texts in mine:
            kill()
            vectors, tokens = embed(texts)
            results.append((index, _checked(vectors), int(tokens)))
    except Exception as exc:  # noqa: BLE001 - reported to rank 0, then raised by the caller
        shard = mine[len(results)][0]
        message = f"rank failed on shard {shard}: {type(exc).__name__}: {exc}"
        return message.encode("utf-8")[:4000], [exc], 0, 0
    busy = int(1e6 * (time.perf_counter() - started))
    return None, results, busy, sum(r[2] for r in results)


def _round(group, stream, plan, embed: EmbedShard | None, kill) -> tuple[np.ndarray, list] | None:
    """One round on any rank (rank 0 passes the plan, the others None). Returns None when
    rank 0 said stop; else the reports, (N, _REPORT), and on rank 0 every rank's results
    as (rank, outcome) with outcome a list of Results or a ShardPoolError."""
    me = group.rank()
    payload = _pack_plan(plan) if me == 0 else None
    header = np.array([_WORK, len(plan), payload.size, 0], np.int64) if me == 0 else None
    kind, shards, nbytes, _ = _broadcast(header, (_HEADER,), np.int64, group, stream).tolist()
    if kind == _STOP:
        return None
    payload = _broadcast(payload, (nbytes,), np.uint8, group, stream)
    mine = _unpack_plan(payload, shards, me)
    failure, results, busy, tokens = _embed_mine(mine, embed, kill)
    status = _OK if failure is None else _FAILED
    nbytes = _packed_size(results) if failure is None else len(failure)
    report = np.array([status, len(mine), nbytes, busy, tokens], dtype=np.int64)
    reports = _gather(report, group, stream).reshape(group.size(), _REPORT)
    width = int(reports[:, 2].max())
    padded = np.zeros(width, np.uint8)
    if failure is None:
        _pack_vectors(results, padded)
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
            outcomes.append((rank, _unpack_vectors(raw, count)))
    return reports, outcomes


def _held(plan: list[tuple[int, int, list[str]]]) -> str:
    """A round's shards, for an error: "3 (rank 1), 4 (rank 2)"."""
    return ", ".join(f"{index} (rank {rank})" for rank, index, _ in plan)


def _stop(group, stream=None) -> None:
    _broadcast(np.array([_STOP, 0, 0, 0], np.int64), (_HEADER,), np.int64, group, stream)


# ---------------------------------------------------------------------------
# ranks > 0


def serve_rounds(group: mx.distributed.Group, embed_shard: EmbedShard) -> None:
    """Ranks > 0: take part in every round until rank 0 says stop. An error in
    `embed_shard` is reported to rank 0 (which stops the job), then raised."""
    stream = mx.new_stream(mx.cpu)
    release_at_thread_exit()
    kill_at, done = _test_kill_at(group.rank()), [0]

    def kill() -> None:
        if done[0] == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)  # test hook: die holding a shard
        done[0] += 1

    while True:
        try:
            if _round(group, stream, None, embed_shard, kill) is None:
                return
        except RuntimeError as exc:
            raise ShardPoolError(f"rank {group.rank()}: {_explain(exc)}") from None


# ---------------------------------------------------------------------------
# rank 0


class RoundPool(ShardPool):
    """Rank 0's side in rounds; the same `map`, `close` and `shards_by_rank` as ShardPool."""

    def __init__(self, group, embed_local: EmbedShard | None = None, *, stall_timeout=None):
        super().__init__(group, embed_local, stall_timeout=stall_timeout)
        ranks = ([0] if embed_local is not None else []) + self.peers
        self.quota = {rank: 1 for rank in ranks}
        self._round: tuple[float, float, str] | None = None  # started, time limit, shards

    def _workers(self) -> dict[int, Callable[[int, _Run], None]]:
        """One thread runs the rounds (rank 0's own shards included)."""
        return {0: self._rounds}

    def _plan(self, run: _Run) -> list[tuple[int, int, list[str]]]:
        plan = []
        for rank in [*self.peers, 0]:  # rank 0 last: it also writes, so it gets the remainder
            for _ in range(self.quota.get(rank, 0)):
                if (shard := run.next_shard()) is None:
                    return plan
                plan.append((rank, *shard))
        return plan

    def _rounds(self, _rank: int, run: _Run) -> None:
        stream, plan = mx.new_stream(mx.cpu), []
        release_at_thread_exit()
        try:
            while plan := self._plan(run):
                self._start_round(plan)
                reports, outcomes = _round(self.group, stream, plan, self.embed_local, lambda: None)
                self._round = None
                for rank, outcome in outcomes:
                    if isinstance(outcome, ShardPoolError):
                        if rank:
                            self._lost.add(rank)  # it stops after its report
                        run.results.put((rank, outcome))
                        return
                    for result in outcome:
                        run.results.put((rank, result))
                self._rebalance(reports)
        except RuntimeError as exc:  # MLX: a rank of the ring is gone
            self._lost.update(self.peers)
            message = f"a rank was lost in the round of shards {_held(plan)}: {_explain(exc)}"
            run.results.put((0, ShardPoolError(message)))
        except BaseException as exc:  # noqa: BLE001 - the input failed: map raises it as is
            run.results.put((0, exc))
        finally:
            run.results.put((0, None))

    def _start_round(self, plan: list[tuple[int, int, list[str]]]) -> None:
        """A round may last stall_timeout per shard of its busiest rank."""
        per_rank = [sum(1 for r, _, _ in plan if r == rank) for rank in self.quota]
        limit = (self.stall_timeout or 0) * max(per_rank, default=1)
        self._round = (time.monotonic(), limit, _held(plan))

    def _check(self, run: _Run) -> None:
        super()._check(run)  # SIGTERM (run.inflight stays empty in rounds)
        if self.stall_timeout is None or (current := self._round) is None:
            return
        started, limit, held = current
        if time.monotonic() - started > limit:
            self._lost.update(self.peers)
            raise ShardPoolError(
                f"the round of shards {held} gave no answer in {limit:g} s (stall_timeout "
                f"{self.stall_timeout:g} s per shard); a rank is frozen or far too slow; stopping"
            )

    def _rebalance(self, reports: np.ndarray) -> None:
        """Shards per round in proportion to each rank's tokens/s in this round."""
        speeds = {rank: tokens / busy for rank, (_, count, _, busy, tokens)
                  in enumerate(reports.tolist()) if tokens > 0 and busy > 0 and rank in self.quota}  # fmt: skip
        if len(speeds) < 2:
            return
        slowest = min(speeds.values())
        for rank, speed in speeds.items():
            self.quota[rank] = max(1, min(MAX_QUOTA, round(speed / slowest)))

    def close(self) -> None:
        """Tell every rank to stop, unless the ring is broken already."""
        if self._closed:
            return
        self._closed = True
        for thread in self._threads.values():
            thread.join(timeout=self.stall_timeout)
        alive = any(t.is_alive() for t in self._threads.values())
        if not self._lost and not alive:
            try:
                _stop(self.group)
            except RuntimeError:
                pass  # a rank is gone already
        self._restore()


# ---------------------------------------------------------------------------
# which of the two schedulers a launched group uses


MODE_ENV = "MLX_JINA_DIST_MODE"
MODES = ("auto", "peers", "rounds")


def mode(group: mx.distributed.Group) -> str:
    """"peers" (ShardPool: any shard to any free rank) up to 3 ranks, where even the ring
    backend links rank 0 to every rank; "rounds" beyond. MLX_JINA_DIST_MODE overrides
    (e.g. peers for more ranks on MPI, whose ranks all reach each other)."""
    choice = os.environ.get(MODE_ENV, "auto").strip() or "auto"
    if choice not in MODES:
        raise ValueError(f"{MODE_ENV}={choice!r}; choose one of {', '.join(MODES)}.")
    if choice == "auto":
        return "peers" if group.size() <= 3 else "rounds"
    return choice


def _agreed_mode(group: mx.distributed.Group) -> str:
    """Every rank's mode, checked equal on all ranks with one all_gather."""
    mine = mode(group)
    try:
        codes = _gather(np.array([MODES.index(mine)], np.int64), group, None).tolist()
    except RuntimeError as exc:
        raise ShardPoolError(f"rank {group.rank()}: {_explain(exc)}") from None
    if len(set(codes)) > 1:
        seen = ", ".join(f"rank {r}: {MODES[c]}" for r, c in enumerate(codes))
        raise ShardPoolError(f"the ranks disagree on {MODE_ENV} ({seen}); set it alike on every host")
    return mine


def open_pool(group, embed_local: EmbedShard | None = None, *, stall_timeout=None) -> ShardPool:
    """Rank 0's scheduler for this group (None: this process alone)."""
    if group is None or _agreed_mode(group) == "peers":
        return ShardPool(group, embed_local, stall_timeout=stall_timeout)
    return RoundPool(group, embed_local, stall_timeout=stall_timeout)


def serve(group: mx.distributed.Group, embed_shard: EmbedShard) -> None:
    """Ranks > 0: serve rank 0's scheduler until it says stop."""
    if _agreed_mode(group) == "peers":
        from .distributed import serve_shards

        return serve_shards(group, embed_shard)
    return serve_rounds(group, embed_shard)
