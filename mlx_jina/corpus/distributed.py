"""Data-parallel corpus embedding: rank 0 hands shards to the other ranks of an MLX group.

Only rank 0 reads the input and writes the output. It sends each shard's texts (UTF-8
bytes in one uint8 array, plus their byte lengths) with `mx.distributed.send`; the rank
embeds them and sends back the vectors, a fixed header (dtype code, shape, tokens) first
so every precision (float32, float16, int8, uint8, bit-packed binary) travels as is.

Why one thread per peer (measured with MLX 0.32.4, CPU build, ring backend):
- `recv` cannot select "whichever rank answers first": it names its source and blocks.
- Several Python threads may issue send/recv at once if each uses its own stream, made
  in that thread (`mx.new_stream(mx.cpu)`; streams are per thread in MLX 0.32): one
  stream runs its tasks in order, so a blocking recv on a shared stream would also stall
  rank 0's own embedding. With a stream per peer, recvs from ranks 1 and 2 and a matmul
  on the main thread ran side by side.
So each peer gets a thread and a stream; the thread keeps one shard in flight, pulls the
next shard from a shared iterator the moment its rank answers (a faster rank takes
more), and queues results for `ShardPool.map`. Rank 0 embeds too, in one more thread.
No prefetch: a shard's round trip is 4 messages (a header and a payload each way), some
ms of latency (median 19 ms per MLX round trip on a loaded 2-core VM) plus bytes over
bandwidth (4 KiB per 1024-d float32 vector), small next to embedding a shard of hundreds
of texts; a second shard in flight would need sends and recvs on separate streams, or a
large send and the rank's large reply could wait on each other.

Failures (measured): a SIGKILLed rank closes its sockets; the ring backend then fails
the pending recv with "[ring] connection to a peer was lost" within about a second, so
`map` raises ShardPoolError naming the rank and shard. `mlx.launch` also SIGTERMs the
other ranks once one exits non-zero (and itself always exits 0 in MLX 0.32.4); `map`
turns that SIGTERM into a ShardPoolError too. A rank that hangs without dying is caught only
by `stall_timeout`. The ring backend connects neighbours only, so this scheduler serves
at most 3 ranks there (0, 1 and N-1); rounds.py runs larger groups over collectives and
chooses between the two (`open_pool`, `serve`).
"""

from __future__ import annotations

import os
import queue
import signal
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Self

import mlx.core as mx
import numpy as np

from ..thread_streams import release_at_thread_exit
from .errors import ShardPoolError

EmbedShard = Callable[[list[str]], tuple[np.ndarray, int]]
Result = tuple[int, np.ndarray, int]

_WORK, _STOP = 1, 0  # request kinds
_OK, _FAILED = 0, 1  # reply statuses
_REQ = 4  # request header: kind, shard index, texts, payload bytes
_REP = 8  # reply header: status, shard index, tokens, dtype code, ndim, d0, d1, extra
_DTYPES = [np.float32, np.float16, np.int8, np.uint8, np.int32, np.int64, np.bool_]
_TEST_KILL = "MLX_JINA_DIST_TEST_KILL"  # "rank:n": that rank SIGKILLs itself at shard n+1


def init_group(backend: str = "any") -> mx.distributed.Group | None:
    """The launched group, or None when this process runs alone (no `mlx.launch`)."""
    if not mx.distributed.is_available():
        return None
    group = mx.distributed.init(backend=backend)
    return group if group.size() > 1 else None


# ---------------------------------------------------------------------------
# wire format: every message is a fixed int64 header, then arrays sized by it


def _send(x: np.ndarray, dst: int, group: mx.distributed.Group, stream: mx.Stream) -> None:
    if x.size:  # a zero-byte message is skipped on both sides
        mx.eval(mx.distributed.send(mx.array(x), dst, group=group, stream=stream))


def _recv(shape, dtype, src: int, group, stream) -> np.ndarray:
    if int(np.prod(shape)) == 0:
        return np.zeros(shape, dtype=dtype)
    x = mx.distributed.recv(shape, _mx_dtype(dtype), src, group=group, stream=stream)
    mx.eval(x)
    return np.array(x, copy=False)


def _mx_dtype(dtype) -> mx.Dtype:
    name = np.dtype(dtype).name
    return mx.bool_ if name == "bool" else getattr(mx, name)


def _explain(exc: RuntimeError) -> str:
    """MLX's message, plus what to do when it is the ring backend's neighbour rule."""
    if "direct neighbors" not in str(exc):
        return str(exc).strip()
    return (
        f"{str(exc).strip()}; the ring backend links each rank to its 2 neighbours only, "
        "so MLX_JINA_DIST_MODE=peers takes at most 3 ranks with --backend ring: unset it "
        "(beyond 3 ranks, jobs then run in rounds over collectives) or use the mpi backend"
    )


def texts_blob(texts: list[str]) -> bytes:
    """Texts in one blob: their UTF-8 byte lengths (int64), then the bytes (one message
    instead of one per text: each message costs a round of MLX dispatch)."""
    encoded = [t.encode("utf-8") for t in texts]
    return np.array([len(b) for b in encoded], dtype=np.int64).tobytes() + b"".join(encoded)


def blob_texts(blob: bytes, n: int) -> list[str]:
    """The `n` texts of a `texts_blob`."""
    ends = (np.cumsum(np.frombuffer(blob[: 8 * n], dtype=np.int64)) + 8 * n).tolist()
    starts = [8 * n] + ends[:-1]
    return [blob[a:b].decode("utf-8") for a, b in zip(starts, ends)]


def vectors_layout(vectors: np.ndarray) -> list[int]:
    """[dtype code, ndim, d0, d1]: what a receiver needs to rebuild `vectors` from bytes."""
    shape = list(vectors.shape) + [0] * (2 - vectors.ndim)
    return [_DTYPES.index(vectors.dtype.type), vectors.ndim, *shape]


def _send_texts(texts: list[str], index: int, dst: int, group, stream) -> None:
    """Two messages: the header, then the texts' blob as one uint8 array."""
    payload = np.frombuffer(texts_blob(texts), dtype=np.uint8)
    _send(np.array([_WORK, index, len(texts), payload.size], dtype=np.int64), dst, group, stream)
    _send(payload, dst, group, stream)


def _recv_texts(group, stream) -> tuple[int, list[str]] | None:
    """(shard index, texts) from rank 0, or None when told to stop."""
    kind, index, n, nbytes = _recv((_REQ,), np.int64, 0, group, stream).tolist()
    if kind == _STOP:
        return None
    return index, blob_texts(_recv((nbytes,), np.uint8, 0, group, stream).tobytes(), n)


def _checked(vectors: np.ndarray) -> np.ndarray:
    vectors = np.ascontiguousarray(vectors)
    if vectors.dtype.type not in _DTYPES or vectors.ndim not in (1, 2):
        raise TypeError(f"cannot send vectors of dtype {vectors.dtype}, shape {vectors.shape}")
    return vectors


def _send_vectors(index: int, vectors: np.ndarray, tokens: int, group, stream) -> None:
    header = [_OK, index, int(tokens), *vectors_layout(vectors), 0]
    _send(np.array(header, dtype=np.int64), 0, group, stream)
    _send(vectors.reshape(-1), 0, group, stream)


def _send_failure(index: int, message: str, group, stream) -> None:
    text = np.frombuffer(message.encode("utf-8")[:4000], dtype=np.uint8)
    header = [_FAILED, index, 0, 0, 0, 0, 0, text.size]
    _send(np.array(header, dtype=np.int64), 0, group, stream)
    _send(text, 0, group, stream)


def _recv_vectors(src: int, group, stream) -> tuple[int, np.ndarray, int]:
    status, index, tokens, code, ndim, d0, d1, extra = _recv(
        (_REP,), np.int64, src, group, stream
    ).tolist()
    if status == _FAILED:
        message = _recv((extra,), np.uint8, src, group, stream).tobytes()
        message = message.decode("utf-8", errors="replace")
        raise ShardPoolError(f"rank {src} failed on shard {index}: {message}")
    shape = (d0, d1)[:ndim]
    flat = _recv((int(np.prod(shape)),), _DTYPES[code], src, group, stream)
    return index, flat.reshape(shape).copy(), tokens


# ---------------------------------------------------------------------------
# ranks > 0


def serve_shards(group: mx.distributed.Group, embed_shard: EmbedShard) -> None:
    """Ranks > 0: take shards from rank 0, embed them, send the vectors back, until told
    to stop. An error in `embed_shard` is sent to rank 0 (which stops the job), then raised."""
    stream = mx.new_stream(mx.cpu)  # this thread's own: see the module docstring
    release_at_thread_exit()
    kill_at = _test_kill_at(group.rank())
    done = 0
    while True:
        try:
            shard = _recv_texts(group, stream)
        except RuntimeError as exc:
            raise ShardPoolError(f"rank {group.rank()}: {_explain(exc)}") from None
        if shard is None:
            return
        index, texts = shard
        if done == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)  # test hook: die holding a shard
        try:
            vectors, tokens = embed_shard(texts)
            vectors = _checked(vectors)
        except Exception as exc:
            _send_failure(index, f"{type(exc).__name__}: {exc}", group, stream)
            raise
        _send_vectors(index, vectors, tokens, group, stream)
        done += 1


def _test_kill_at(rank: int) -> int | None:
    """Tests only: MLX_JINA_DIST_TEST_KILL="rank:n" kills that rank at its shard n+1."""
    value = os.environ.get(_TEST_KILL, "")
    who, _, n = value.partition(":")
    return int(n) if value and int(who) == rank else None


# ---------------------------------------------------------------------------
# rank 0


class _Run:
    """One `map` call's shared state: the input, the results, what each rank holds."""

    def __init__(self, shards: Iterable[tuple[int, list[str]]]):
        self.shards = iter(shards)
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.results: queue.Queue = queue.Queue()
        self.inflight: dict[int, tuple[int, float]] = {}  # rank -> (shard, started)
        self.sigterm = False

    def next_shard(self) -> tuple[int, list[str]] | None:
        with self.lock:  # the input may be a generator reading files: one reader at a time
            return None if self.stop.is_set() else next(self.shards, None)


class ShardPool:
    """Rank 0's side: `map` hands shards to every rank (itself too, with `embed_local`)."""

    def __init__(
        self,
        group: mx.distributed.Group | None,
        embed_local: EmbedShard | None = None,
        *,
        stall_timeout: float | None = None,
    ):
        """`group` from `init_group` (None: this process alone). `stall_timeout`: seconds
        a rank may hold one shard before the job stops with an error (default: no limit;
        a dead rank is detected without it, a frozen one is not)."""
        if group is not None and group.rank() != 0:
            raise ValueError("ShardPool runs on rank 0; other ranks call serve_shards.")
        self.group = group
        self.embed_local = embed_local
        self.peers = list(range(1, group.size())) if group is not None else []
        if not self.peers and embed_local is None:
            raise ValueError("no rank to embed with: pass embed_local or launch more ranks.")
        self.stall_timeout = stall_timeout
        self.shards_by_rank = {rank: 0 for rank in [0, *self.peers]}
        self._threads: dict[int, threading.Thread] = {}
        self._lost: set[int] = set()
        self._closed = False
        self._restore: Callable[[], None] = lambda: None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def map(self, shards: Iterable[tuple[int, list[str]]]) -> Iterator[Result]:
        """Hand out `(shard index, texts)` pairs, each to the next free rank; yield
        `(shard index, vectors, tokens)` as they complete, in any order. Raises
        ShardPoolError when a rank is lost, fails or stalls (shards yielded so far stand)."""
        if self._closed:
            raise ValueError(f"this {type(self).__name__} is closed.")
        if self._lost:
            raise ShardPoolError(f"rank {min(self._lost)} was lost; start the job again.")
        for thread in self._threads.values():  # an abandoned map's shards finish first
            thread.join()
        if not self.peers:  # alone: no threads, no signal handling
            for index, texts in shards:
                vectors, tokens = self.embed_local(texts)
                self.shards_by_rank[0] += 1
                yield index, vectors, tokens
            return
        run = _Run(shards)
        self._threads = {
            rank: threading.Thread(target=loop, args=(rank, run), daemon=True)
            for rank, loop in self._workers().items()
        }
        self._restore()
        # Kept until close(): mlx.launch's SIGTERM often lands while close() waits for
        # the shards in hand, and the job's one-line error must still get out.
        self._restore = self._catch_sigterm(run)
        try:
            for thread in self._threads.values():
                thread.start()
            yield from self._collect(run, len(self._threads))
        finally:
            run.stop.set()  # threads finish the shard they hold, then end

    def _workers(self) -> dict[int, Callable[[int, _Run], None]]:
        """A thread per rank: one per peer, and one for rank 0's own embedding."""
        workers = {peer: self._peer_loop for peer in self.peers}
        if self.embed_local is not None:
            workers[0] = self._local_loop
        return workers

    def _collect(self, run: _Run, running: int) -> Iterator[Result]:
        while running:
            try:
                rank, item = run.results.get(timeout=0.2)
            except queue.Empty:
                self._check(run)
                continue
            if isinstance(item, BaseException):
                raise item
            if item is None:
                running -= 1
                continue
            self.shards_by_rank[rank] += 1
            yield item

    def _check(self, run: _Run) -> None:
        if run.sigterm:
            raise ShardPoolError(
                "stopped by SIGTERM (mlx.launch ends every rank once one exits: see the "
                "other ranks' messages); shards done so far are kept, rerun to resume"
            )
        if self.stall_timeout is None:
            return
        now = time.monotonic()
        for rank, (index, started) in list(run.inflight.items()):
            if rank and now - started > self.stall_timeout:
                self._lost.add(rank)
                raise ShardPoolError(
                    f"rank {rank} gave no answer for shard {index} in "
                    f"{self.stall_timeout:g} s (stall_timeout); stopping"
                )

    def _peer_loop(self, rank: int, run: _Run) -> None:
        # MLX streams belong to the thread that made them; a blocking recv on this one
        # stalls neither rank 0's own embedding nor the other peers
        stream, index = mx.new_stream(mx.cpu), None
        release_at_thread_exit()
        try:
            while (shard := run.next_shard()) is not None:
                index, texts = shard
                run.inflight[rank] = (index, time.monotonic())
                _send_texts(texts, index, rank, self.group, stream)
                run.results.put((rank, _recv_vectors(rank, self.group, stream)))
                del run.inflight[rank]
        except ShardPoolError as exc:  # the rank reported a failure and stops
            self._lost.add(rank)
            run.results.put((rank, exc))
        except RuntimeError as exc:  # MLX: the connection is gone
            self._lost.add(rank)
            held = f"holding shard {index}" if index is not None else "before any shard"
            where = "is out of reach" if "direct neighbors" in str(exc) else f"was lost {held}"
            error = ShardPoolError(f"rank {rank} {where}: {_explain(exc)}")
            run.results.put((rank, error))
        except BaseException as exc:  # noqa: BLE001 - the input failed: map raises it as is
            run.results.put((rank, exc))
        finally:
            run.results.put((rank, None))

    def _local_loop(self, rank: int, run: _Run) -> None:
        try:
            while (shard := run.next_shard()) is not None:
                index, texts = shard
                vectors, tokens = self.embed_local(texts)
                run.results.put((0, (index, vectors, tokens)))
        except BaseException as exc:  # noqa: BLE001 - map raises it in the caller
            run.results.put((0, exc))
        finally:
            run.results.put((0, None))

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
        """Tell every rank still reachable to stop (after the shards they hold)."""
        if self._closed:
            return
        self._closed = True
        for rank, thread in self._threads.items():
            if rank not in self._lost:  # a lost rank's thread may never return
                thread.join(timeout=self.stall_timeout)
        for peer in self.peers:
            thread = self._threads.get(peer)
            if peer in self._lost or (thread is not None and thread.is_alive()):
                continue
            header = np.array([_STOP, -1, 0, 0], dtype=np.int64)
            try:
                _send(header, peer, self.group, None)
            except RuntimeError:
                pass  # that rank is gone already
        self._restore()
