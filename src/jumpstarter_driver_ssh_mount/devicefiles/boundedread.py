"""Reading device files by the bytes actually read, never by the size the device claims.

sshfs and SFTP report size 0 for ``/proc`` files, and a file can grow between ``lstat`` and
the read, so a size check before reading bounds nothing. Every chore that reads device
files (``collect``, ``snapshot``, ``wait_for``, ``read_many``) reads through here instead: in
chunks, at most ``limit + 1`` bytes (the extra byte says the file is over the limit), asking
between chunks whether to stop (a deadline passed, or the caller gave up on the thread).

Files are opened through the ``DeviceFS`` (``fs.open_regular``): without blocking (a FIFO
swapped in after the ``lstat`` would block an ordinary open), regular files only once open;
only ``read_tail`` follows a symlink.
"""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Callable, Iterable, Iterator, Mapping

from jumpstarter_driver_ssh_mount.devicefiles.fs import DeviceFS, FileStat, NotRegularFile, OverLimit, Reader

__all__ = [
    "CHUNK",
    "NotRegularFile",
    "ReadStopped",
    "copy_at_most",
    "open_local",
    "read_at_most",
    "read_each",
    "read_local_at_most",
    "read_tail",
]

CHUNK = 64 * 1024  # bytes per read(): between two, a stop request is noticed
OPEN_FLAGS = os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC


class ReadStopped(Exception):
    """The caller asked to stop (its deadline passed, or it gave up) before the file was read."""


def never() -> bool:
    """The default ``should_stop``: read to the limit."""
    return False


class FdReader:
    """A ``Reader`` over an open local file descriptor."""

    def __init__(self, fd: int) -> None:
        self.fd = fd

    def read(self, size: int) -> bytes:
        return os.read(self.fd, size)

    def seek(self, offset: int) -> None:
        os.lseek(self.fd, offset, os.SEEK_SET)


@contextlib.contextmanager
def open_local(path: str | os.PathLike[str], *, follow: bool = False) -> Iterator[tuple[FdReader, FileStat]]:
    """The local file ``path`` opened for reading (no blocking; a symlink only followed with ``follow``), its stat.

    :raises NotRegularFile: it is not a regular file once open.
    """
    fd = os.open(path, OPEN_FLAGS | (0 if follow else os.O_NOFOLLOW))
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise NotRegularFile(f"{os.fspath(path)} is not a regular file")
        os.set_blocking(fd, True)
        yield FdReader(fd), FileStat.of(info)
    finally:
        os.close(fd)


def read_local_at_most(path: str | os.PathLike[str], limit: int) -> tuple[bytes, FileStat]:
    """``read_at_most`` for a file on this host (a run record): never blocks on a FIFO, follows no symlink."""
    with open_local(path) as (reader, info):
        return b"".join(chunks(reader, limit)), info


def chunks(reader: Reader, limit: int, should_stop: Callable[[], bool] = never) -> Iterator[bytes]:
    """What ``reader`` yields from its position, chunk by chunk, ``limit + 1`` bytes at most.

    Raises ReadStopped when ``should_stop()`` turns true before a chunk.
    """
    left = max(0, int(limit)) + 1
    while left > 0:
        if should_stop():
            raise ReadStopped()
        chunk = reader.read(min(CHUNK, left))
        if not chunk:
            return
        left -= len(chunk)
        yield chunk


def read_at_most(
    fs: DeviceFS, path: str, limit: int, should_stop: Callable[[], bool] = never
) -> tuple[bytes, FileStat]:
    """At most ``limit + 1`` bytes of the regular file ``path`` (more than ``limit``: it is over), and its stat."""
    with fs.open_regular(path) as (reader, info):
        return b"".join(chunks(reader, limit, should_stop)), info


def read_tail(fs: DeviceFS, path: str, limit: int) -> bytes:
    """The last ``limit`` bytes of the regular file ``path`` by the size it reports; at most ``limit`` bytes.

    A file that reports less than it holds (size 0 in ``/proc``) is read from its start. A symlink
    is followed, on the device (``wait_for`` names the path it waits on).
    """
    limit = int(limit)
    with fs.open_regular(path, follow=True) as (reader, info):
        if info.size > limit:
            reader.seek(info.size - limit)
        return b"".join(chunks(reader, limit - 1)) if limit > 0 else b""


def read_each(
    fs: DeviceFS,
    paths: Iterable[str],
    max_bytes: int,
    settled: Mapping[str, bytes | OSError | None] | None = None,
) -> dict[str, bytes | OSError]:
    """``DeviceFS.read_many`` one file after the other (the default): ``max_bytes`` in all.

    A file holding more than what is left is an ``OverLimit`` and reads nothing of the cap. ``settled``:
    what is known already of some paths (their content, or their error; None: read it here), held to the
    same cap in the same order.
    """
    found: dict[str, bytes | OSError] = {}
    left = max_bytes
    for path in paths:
        known = settled.get(path) if settled is not None else None
        if isinstance(known, OSError):
            found[path] = known
            continue
        try:
            content = known if known is not None else read_at_most(fs, path, left)[0]
        except OSError as exc:
            found[path] = exc
            continue
        if len(content) > left:
            found[path] = OverLimit(path, left)
            continue
        left -= len(content)
        found[path] = content
    return found


def copy_at_most(
    fs: DeviceFS,
    path: str,
    target: str | os.PathLike[str],
    limit: int,
    should_stop: Callable[[], bool] = never,
) -> tuple[int, FileStat] | None:
    """Copy the regular device file ``path`` to the new local file ``target``, keeping its permission bits.

    Returns (bytes copied, the source's stat), or None when the file holds more than ``limit``
    bytes: then ``target`` is removed again, as it is when reading fails or stops (ReadStopped).
    The copy gets the source's permission bits (never set-id or sticky bits), readable by its owner.
    """
    with fs.open_regular(path) as (reader, info):
        mode = (stat.S_IMODE(info.mode) & 0o777) | stat.S_IRUSR
        out = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        copied = 0
        try:
            with os.fdopen(out, "wb", closefd=False) as sink:
                for chunk in chunks(reader, limit, should_stop):
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
