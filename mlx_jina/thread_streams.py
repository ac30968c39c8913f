"""MLX streams belong to the thread that made them: free them when that thread ends.

MLX used from a thread other than the main one (the server's worker, a user's thread
pool, the corpus job's rank threads) made processes abort at exit with "terminate called
without an active exception" (ml-explore/mlx#3126): measured here, 3 of 30 processes
that encoded in one thread with MLX's reference BLAS, 7 of 30 with OpenBLAS. MLX 0.32's
answer is `mx.clear_streams()`, called by each thread before it ends and by the main
thread before the interpreter tears down; with it, 0 of 30 (tests/test_embedder.py).

A thread that touches MLX through this package gets a thread-local sentinel; Python
drops a thread's locals as the thread ends, in that thread, so the sentinel's finalizer
runs there and clears that thread's streams. The main thread's are cleared at exit.
"""

from __future__ import annotations

import atexit
import threading

import mlx.core as mx

_local = threading.local()


class _Sweeper:
    __slots__ = ()

    def __del__(self) -> None:  # in the ending thread; no threading calls here (a dummy
        try:  # Thread would be made for a thread that threading already forgot)
            mx.synchronize()
            mx.clear_streams()
        except Exception:  # noqa: BLE001 - never raise from a finalizer at thread exit
            pass


def release_at_thread_exit() -> None:
    """Make sure this thread's MLX streams are freed when it ends (cheap when repeated)."""
    if threading.current_thread() is threading.main_thread():
        return  # _main_exit does the main thread's
    if getattr(_local, "sweeper", None) is None:
        _local.sweeper = _Sweeper()


@atexit.register
def _main_exit() -> None:
    mx.synchronize()
    if hasattr(mx, "clear_streams"):
        mx.clear_streams()
