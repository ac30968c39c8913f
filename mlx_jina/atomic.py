"""Replace a file or a folder as a whole: write beside it, then swap the finished one in.

`replacing_file(path)` yields a new file opened for writing beside `path`; when the block
ends without an error it is synced and renamed over `path`, so a reader (or a crash)
sees the old file or the new one, never half of one.

`replacing(dst)` yields an empty folder `.NAME.tmp-<8 hex>` next to `dst`. When the
block ends without an error, that folder is exchanged with `dst` in one atomic call
(Linux renameat2 RENAME_EXCHANGE, macOS renamex_np RENAME_SWAP) and the old one is
deleted, so a kill at any moment leaves the complete old or the complete new folder at
`dst`. Where neither call works (another OS, some network file systems), two renames
do it: between them `dst` is missing, and the next run moves the old folder back. Each
run first removes leftovers of killed runs; a live run's folder is locked, so it stays.
"""

import ctypes
import errno
import os
import re
import secrets
import shutil
import sys
from collections.abc import Iterator
from typing import BinaryIO
from contextlib import contextmanager
from pathlib import Path

try:
    import fcntl
except ImportError:  # Windows: no flock, so no protection for concurrent runs
    fcntl = None

AT_FDCWD, RENAME_EXCHANGE, RENAME_SWAP = -100, 2, 2
UNSUPPORTED = {errno.ENOSYS, errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP}


def _libc_call():
    """The OS's atomic exchange as f(a: bytes, b: bytes) -> int, or None."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)  # the C library the process runs on
    except (OSError, TypeError):  # TypeError: Windows has no such handle
        return None
    if sys.platform == "darwin" and hasattr(libc, "renamex_np"):
        f = libc.renamex_np
        f.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_uint]
        return lambda a, b: f(a, b, RENAME_SWAP)
    if hasattr(libc, "renameat2"):  # glibc >= 2.28
        f = libc.renameat2
        f.argtypes = [ctypes.c_int, ctypes.c_char_p] * 2 + [ctypes.c_uint]
        return lambda a, b: f(AT_FDCWD, a, AT_FDCWD, b, RENAME_EXCHANGE)
    return None


_EXCHANGE = _libc_call()


def exchange(a: Path, b: Path) -> bool:
    """Swap two existing paths in one step; False where this OS or file system can't."""
    if _EXCHANGE is None:
        return False
    if _EXCHANGE(os.fsencode(a), os.fsencode(b)) == 0:
        return True
    code = ctypes.get_errno()
    if code in UNSUPPORTED:
        return False
    raise OSError(code, os.strerror(code), str(a), None, str(b))


def _pattern(dst: Path) -> re.Pattern:
    return re.compile(rf"\.{re.escape(dst.name)}\.(tmp|old)-[0-9a-f]{{8}}")


def _sibling(dst: Path, kind: str) -> Path:
    return dst.with_name(f".{dst.name}.{kind}-{secrets.token_hex(4)}")


@contextmanager
def _lock(folder: Path, wait: bool = True) -> Iterator[bool]:
    """Hold an flock on `folder` (released on exit, or when the process dies).

    Yields False when another process holds it and `wait` is False.
    """
    if fcntl is None:
        yield True
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            yield False
            return
        except OSError:
            pass  # a file system without flock: nothing to coordinate with
        yield True
    finally:
        os.close(fd)


def clean_leftovers(dst: Path) -> None:
    """Delete what killed runs left beside `dst`; put back a `dst` they left missing."""
    if not dst.parent.is_dir():
        return
    pattern = _pattern(dst)
    for entry in sorted(dst.parent.iterdir()):
        match = pattern.fullmatch(entry.name)
        if not match or entry.is_symlink() or not entry.is_dir():
            continue
        with _lock(entry, wait=False) as free:
            if not free:
                continue  # a live run is writing or swapping it
            if match[1] == "old" and not os.path.lexists(dst):
                os.rename(entry, dst)  # killed between the fallback's two renames
            else:
                shutil.rmtree(entry, ignore_errors=True)


def swap_in(new: Path, dst: Path) -> None:
    """Put the finished folder `new` at `dst` and delete what was there."""
    if not os.path.lexists(dst):
        os.rename(new, dst)
        return
    if exchange(new, dst):
        shutil.rmtree(new, ignore_errors=True)  # now the old folder
        return
    old = _sibling(dst, "old")
    with _lock(dst):  # so that a concurrent clean_leftovers leaves `old` alone
        os.rename(dst, old)
        try:
            os.rename(new, dst)
        except BaseException:
            os.rename(old, dst)
            raise
    shutil.rmtree(old, ignore_errors=True)


@contextmanager
def replacing(dst: Path) -> Iterator[Path]:
    """Yield an empty folder beside `dst`; swap it in as `dst` if the block succeeds.

    `dst` should be a real path (no symlinks), so that the swap happens where it points.
    On an error the temporary folder, and any parent folders made for it, are removed.
    """
    made = [p for p in (dst.parent, *dst.parent.parents) if not p.exists()]
    try:
        clean_leftovers(dst)
        dst.parent.mkdir(parents=True, exist_ok=True)
        new = _sibling(dst, "tmp")
        os.mkdir(new)
    except OSError as e:
        remove_empty(made)
        where = Path(e.filename).parent if e.filename else dst.parent
        raise ValueError(
            f"Cannot write to {where} ({e.strerror}). "
            "Choose an --mlx-path in a folder you can write to."
        ) from None
    try:
        with _lock(new):
            yield new
            if dst.is_dir():
                shutil.copymode(dst, new)  # keep the permissions the user gave it
            swap_in(new, dst)
    except BaseException:
        shutil.rmtree(new, ignore_errors=True)
        remove_empty(made)
        raise


def remove_empty(folders: list[Path]) -> None:
    """Remove the folders a failed write created, where they are still empty."""
    for folder in folders:  # deepest first
        try:
            folder.rmdir()
        except OSError:
            pass


@contextmanager
def replacing_file(path: Path, mode: int = 0o666) -> Iterator[BinaryIO]:
    """Yield a binary file beside `path`; if the block succeeds, sync it and rename it over
    `path`. The new file gets `mode` less the umask from the moment it exists (0o600 keeps
    a secret from other users throughout)."""
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"{path} is a folder; pass a file path.")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), mode)
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    # Sync the folder too, so the rename survives a crash (not every platform can).
    try:
        dir_fd = os.open(path.parent, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dir_fd)
    except OSError:
        pass
    finally:
        os.close(dir_fd)
