"""Reading device files through a mount by the bytes actually read, never by the size the device claims.

sshfs reports size 0 for ``/proc`` files, and a file can grow between ``lstat`` and the read,
so a size check before ``read_bytes()`` bounds nothing. Every chore that reads device
files (``collect``, ``snapshot``, ``wait_for``) reads through here instead: in chunks, at
most ``limit + 1`` bytes (the extra byte says the file is over the limit), asking between
chunks whether to stop (a deadline passed, or the caller gave up on the thread).

Files are opened without blocking (a FIFO swapped in after the ``lstat`` would block an
ordinary open) and must be regular files once open; only ``read_tail`` follows a symlink.
"""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Callable, Iterator

CHUNK = 64 * 1024  # bytes per read(): between two, a stop request is noticed

OPEN_FLAGS = os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC


class ReadStopped(Exception):
    """The caller asked to stop (its deadline passed, or it gave up) before the file was read."""


class NotRegularFile(OSError):
    """What was opened is not a regular file (it changed since it was looked at)."""


def never() -> bool:
    """The default ``should_stop``: read to the limit."""
    return False


@contextlib.contextmanager
def open_regular(path: str | os.PathLike[str], *, follow: bool = False) -> Iterator[tuple[int, os.stat_result]]:
    """``path`` opened for reading (no blocking; a symlink only followed with ``follow``), with its ``fstat``."""
    fd = os.open(path, OPEN_FLAGS | (0 if follow else os.O_NOFOLLOW))
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise NotRegularFile(f"{os.fspath(path)} is not a regular file")
        os.set_blocking(fd, True)
        yield fd, info
    finally:
        os.close(fd)


def chunks(fd: int, limit: int, should_stop: Callable[[], bool] = never) -> Iterator[bytes]:
    """What ``fd`` yields from its position, chunk by chunk, ``limit + 1`` bytes at most.

    Raises ReadStopped when ``should_stop()`` turns true before a chunk.
    """
    left = max(0, int(limit)) + 1
    while left > 0:
        if should_stop():
            raise ReadStopped()
        chunk = os.read(fd, min(CHUNK, left))
        if not chunk:
            return
        left -= len(chunk)
        yield chunk


def read_at_most(
    path: str | os.PathLike[str], limit: int, should_stop: Callable[[], bool] = never
) -> tuple[bytes, os.stat_result]:
    """At most ``limit + 1`` bytes of the regular file ``path`` (more than ``limit``: it is over), and its stat."""
    with open_regular(path) as (fd, info):
        return b"".join(chunks(fd, limit, should_stop)), info


def read_tail(path: str | os.PathLike[str], limit: int) -> bytes:
    """The last ``limit`` bytes of the regular file ``path`` by the size it reports; at most ``limit`` bytes.

    A file that reports less than it holds (size 0 in ``/proc``) is read from its start. A symlink
    is followed, as the mount resolves it (``wait_for`` names the path it waits on).
    """
    limit = int(limit)
    with open_regular(path, follow=True) as (fd, info):
        if info.st_size > limit:
            os.lseek(fd, info.st_size - limit, os.SEEK_SET)
        return b"".join(chunks(fd, limit - 1)) if limit > 0 else b""


def copy_at_most(
    path: str | os.PathLike[str], target: str | os.PathLike[str], limit: int, should_stop: Callable[[], bool] = never
) -> tuple[int, os.stat_result] | None:
    """Copy the regular file ``path`` to the new file ``target``, keeping its permission bits.

    Returns (bytes copied, the source's stat), or None when the file holds more than ``limit``
    bytes: then ``target`` is removed again, as it is when reading fails or stops (ReadStopped).
    The copy gets the source's permission bits (never set-id or sticky bits), readable by its owner.
    """
    with open_regular(path) as (fd, info):
        mode = (stat.S_IMODE(info.st_mode) & 0o777) | stat.S_IRUSR
        out = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        copied = 0
        try:
            with os.fdopen(out, "wb", closefd=False) as sink:
                for chunk in chunks(fd, limit, should_stop):
                    copied += len(chunk)
                    if copied > limit:
                        raise _OverLimit()
                    sink.write(chunk)
            os.fchmod(out, mode)
        except _OverLimit:
            _discard(out, target)
            return None
        except BaseException:
            _discard(out, target)
            raise
        os.close(out)
        return copied, info


class _OverLimit(Exception):
    pass


def _discard(fd: int, target: str | os.PathLike[str]) -> None:
    os.close(fd)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(target)
