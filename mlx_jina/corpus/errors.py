"""The error of a distributed corpus job, and how a command ends on it; importable
without MLX (the CLI catches it)."""

from __future__ import annotations

import os
import sys
from typing import NoReturn


class ShardPoolError(RuntimeError):
    """The distributed job cannot go on (a rank was lost, failed or froze, or the ranks
    disagree on the job); its str is one line. `resumable`: finished shards stand, so the
    same command resumes."""

    def __init__(self, message: str, *, resumable: bool = True):
        super().__init__(message)
        self.resumable = resumable


def exit_on(error: ShardPoolError, hint: str | None = None) -> NoReturn:
    """Print the job's one line, then end the process at once with exit status 1.

    Why not `sys.exit`: after a lost or frozen rank, a thread may still be inside MLX (a
    collective that never returns, or a thread clearing its streams as it ends). Python's
    teardown ends such a thread with pthread_exit, whose forced unwind through MLX's C++
    frames calls std::terminate: "terminate called without an active exception", exit -6
    (seen in a core dump of rank 0). `os._exit` skips the teardown. Nothing is lost: every
    shard and the manifest were written whole (atomically) before they were recorded, the
    job's lock is a file lock the OS drops, and stdout and stderr are flushed here.

    `hint`: what to do next, when the job is resumable (the CLI knows a stdin job isn't).
    """
    hint = hint or "finished shards are kept: run the same command to resume"
    hint = f"; {hint}" if error.resumable else ""
    line = " ".join(str(error).split())
    sys.stdout.flush()
    print(f"mlx-jina: {line}{hint}", file=sys.stderr, flush=True)
    os._exit(1)
