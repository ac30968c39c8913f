"""Serve on a Unix domain socket only this user can open (`mlx-jina serve --uds PATH`).

A Unix socket is reached by its path, not a port: no other machine can reach it, and the
file's permissions decide who on this one can. The socket file is made 0600 from the
start (the umask is narrowed around bind, then chmod confirms it), so there is no moment
when another user could connect. uvicorn's own `uds=` option chmods the file to 0666,
which is why the server gets the socket bound here through `server.run(sockets=[...])`.

A path that holds anything but a socket is refused, never deleted. A socket file nobody
answers on (a server that was killed) is replaced; one a live server answers on is
refused. The file is removed when the server stops, if it is still the one made here.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import stat
import sys
from pathlib import Path

# sizeof(sockaddr_un.sun_path), its final NUL included: the longest path bind accepts is one less.
SUN_PATH_BYTES = 104 if sys.platform == "darwin" else 108
BACKLOG = 2048  # uvicorn's default; asyncio listens again with the server's own
OWNER_ONLY = 0o600
PROBE_TIMEOUT = 2.0  # seconds to wait for a server behind an existing socket file


def socket_path(path: str | os.PathLike) -> Path:
    """`path` with ~ expanded, made absolute, and checked to fit AF_UNIX and to have a
    folder to live in."""
    full = Path(os.path.abspath(os.path.expanduser(os.fspath(path))))
    size = len(os.fsencode(full))
    if size >= SUN_PATH_BYTES:
        raise ValueError(
            f"The Unix socket path {full} is {size} bytes; this system allows at most "
            f"{SUN_PATH_BYTES - 1}. Pick a shorter path, e.g. ~/.mlx-jina.sock."
        )
    if not full.parent.is_dir():
        raise FileNotFoundError(
            f"The folder of the Unix socket path {full} does not exist: create it "
            f"(mkdir -p {full.parent}) or pick another path."
        )
    return full


def check_unix_socket_path(path: str | os.PathLike) -> Path:
    """The full path, if a server could bind it now; else a clear error. Changes nothing,
    so `serve` can check before the model loads."""
    full = socket_path(path)
    _existing_is_stale(full)
    return full


def _existing_is_stale(path: Path) -> bool:
    """True if `path` is a socket file nobody answers on; False if nothing is there.
    Raises for anything else: a live server, a file, a folder, a link."""
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return False
    if not stat.S_ISSOCK(mode):
        raise ValueError(
            f"{path} exists and is not a socket; it is left as it is. Pass --uds a path "
            "that does not exist yet (or move that file away)."
        )
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        probe.settimeout(PROBE_TIMEOUT)
        try:
            probe.connect(os.fspath(path))
        except ConnectionRefusedError:
            return True  # its server is gone
        except FileNotFoundError:
            return False  # removed meanwhile
        except PermissionError:
            raise ValueError(
                f"{path} is a socket this user can't open (another user's?). Pick another path."
            ) from None
        except OSError:  # a timeout, a full backlog: something is there; leave it be
            pass
    raise ValueError(
        f"Another server is listening on {path}. Stop it, or pass --uds another path."
    )


def bind_unix_socket(path: str | os.PathLike) -> socket.socket:
    """A listening AF_UNIX socket at `path` whose file is 0600 from the moment it exists.

    Refuses (ValueError) a path that holds a file, a folder or a live server's socket, or
    that is too long for AF_UNIX; FileNotFoundError if its folder is missing. A stale
    socket file (nobody answers) is replaced.
    """
    full = socket_path(path)
    if _existing_is_stale(full):
        full.unlink()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        # The umask is process-wide, but only narrowed (to owner-only) for this one call.
        old = os.umask(0o177)
        try:
            sock.bind(os.fspath(full))
        finally:
            os.umask(old)
        os.chmod(full, OWNER_ONLY)  # whatever the file system made of the umask
        sock.listen(BACKLOG)  # from here a second server sees this one as live
    except BaseException:
        sock.close()
        raise
    return sock


def file_identity(path: Path) -> tuple[int, int, int] | None:
    """(device, inode, change time) of the socket file at `path`, None if there is none.
    The change time tells a new file apart from ours should it get our freed inode."""
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return None
    return (info.st_dev, info.st_ino, info.st_ctime_ns) if stat.S_ISSOCK(info.st_mode) else None


def remove_socket_file(path: Path, identity: tuple[int, int, int] | None) -> None:
    """Remove the socket file at `path` if it is still the one with `identity`: a server
    started on the same path since then keeps its file."""
    if identity is not None and file_identity(path) == identity:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def run_on_unix_socket(server, path: str | os.PathLike) -> None:
    """Run a `uvicorn.Server` on a 0600 Unix socket at `path` until it stops; remove the
    socket file then. Removed during the server's shutdown, not after `run` returns:
    uvicorn re-raises SIGTERM once it is done, which ends the process on the spot."""
    full = socket_path(path)
    sock = bind_unix_socket(full)
    identity = file_identity(full)
    shutdown = server.shutdown

    async def shutdown_then_remove(sockets=None) -> None:
        try:
            await shutdown(sockets=sockets)
        finally:
            remove_socket_file(full, identity)

    server.shutdown = shutdown_then_remove
    try:
        logging.getLogger("uvicorn.error").info(
            "Uvicorn running on unix socket %s (mode 0600; press CTRL+C to quit)", full
        )
        server.run(sockets=[sock])
    finally:
        sock.close()
        remove_socket_file(full, identity)


def run_server(server, uds: str | os.PathLike | None) -> None:
    """`server.run()` on its host and port, or with `uds` on a 0600 Unix socket there."""
    if uds is None:
        server.run()
    else:
        run_on_unix_socket(server, uds)
