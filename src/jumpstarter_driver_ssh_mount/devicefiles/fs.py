"""The device filesystem the device-file chores work on: ``DeviceFS``, whatever carries the bytes.

Every chore (``snapshot``, ``wait_for``, ``collect``, globbing) asks a ``DeviceFS`` instead of
touching local paths, so one set of chores serves each backend: ``localfs.LocalDirFS`` (the
device's directory seen through a FUSE mount) and ``sftp.sftpfs.SftpFS`` (an SFTP session).

Every path is an absolute, normalized device path (a ``str``; an undecodable byte kept as
``os.fsdecode`` keeps it). Errors are ``OSError`` with the errno a local filesystem would
give (``ENOENT``, ``EACCES``, ``ENOTCONN`` once the device cannot be reached any more).
Reads are bounded by the caller (``boundedread``): ``open_regular`` hands out a reader, never
a whole file. ``read_many`` is where bulk reads plug in (a backend that can keep many reads in
flight overrides it); the default reads one file after the other.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Protocol


class NotRegularFile(OSError):
    """What was opened is not a regular file (it changed since it was looked at)."""


class OverLimit(OSError):
    """A file held more than the bytes left to read (``read_many``)."""

    def __init__(self, path: str, limit: int) -> None:
        super().__init__(errno.EFBIG, f"more than the {limit} bytes left to read", path)


@dataclass(frozen=True)
class FileStat:
    """What the chores need of a device file's attributes (``os.stat_result`` has more; SFTP gives these)."""

    mode: int
    size: int
    mtime_ns: int = 0
    nlink: int = 1
    uid: int = 0
    gid: int = 0

    @classmethod
    def of(cls, info: os.stat_result) -> FileStat:
        """The attributes of a local ``stat``."""
        return cls(info.st_mode, info.st_size, info.st_mtime_ns, info.st_nlink, info.st_uid, info.st_gid)

    @property
    def is_regular(self) -> bool:
        return stat.S_ISREG(self.mode)

    @property
    def is_dir(self) -> bool:
        return stat.S_ISDIR(self.mode)

    @property
    def is_symlink(self) -> bool:
        return stat.S_ISLNK(self.mode)

    @property
    def permissions(self) -> int:
        """The permission bits (``stat.S_IMODE``)."""
        return stat.S_IMODE(self.mode)


class Reader(Protocol):
    """An open device file, read in chunks."""

    def read(self, size: int) -> bytes:
        """At most ``size`` bytes from the current position; ``b""`` at the end."""

    def seek(self, offset: int) -> None:
        """Move to ``offset`` bytes from the start."""


class DeviceFS(Protocol):
    """A device's filesystem as the chores use it (absolute device paths; ``OSError`` on failure)."""

    #: For messages: where the files are seen (a mountpoint, or ``sftp user@host:port``).
    where: str

    def lstat(self, path: str) -> FileStat:
        """The attributes of ``path`` itself (a symlink is a symlink)."""
        ...

    def stat(self, path: str) -> FileStat:
        """The attributes of what ``path`` names, symlinks resolved on the device."""
        ...

    def scandir(self, path: str) -> list[tuple[str, bool]]:
        """The names in directory ``path`` (no ``.``/``..``), each with whether it is a directory, not a link."""
        ...

    def open_regular(self, path: str, *, follow: bool = False) -> AbstractContextManager[tuple[Reader, FileStat]]:
        """``path`` opened for reading, with its attributes; ``NotRegularFile`` unless it is a regular file.

        A symlink is followed only with ``follow`` (else the open fails, ``ELOOP``); opening never blocks
        on a FIFO.
        """
        ...

    def write_bytes(self, path: str, data: bytes) -> None:
        """Create or truncate ``path`` and write ``data`` (a symlink there is followed, as ``open`` would)."""
        ...

    def chmod(self, path: str, mode: int) -> None:
        """Set ``path``'s permission bits."""
        ...

    def unlink(self, path: str) -> None:
        """Remove the file or symlink ``path``."""
        ...

    def mkdir(self, path: str, mode: int = 0o777) -> None:
        """Make the directory ``path`` (its parent must exist)."""
        ...

    def rmdir(self, path: str) -> None:
        """Remove the empty directory ``path``."""
        ...

    def rename(self, source: str, target: str) -> None:
        """Rename ``source`` to ``target``."""
        ...

    def readlink(self, path: str) -> str:
        """The target of the symlink ``path``, as the device stores it."""
        ...

    def present(self, path: str) -> bool:
        """True if ``path`` exists on the device now (a symlink counts), never from a cache."""
        ...

    def contains(self, path: str) -> bool:
        """True unless reading ``path`` would leave the files this filesystem serves (a link out of a mount)."""
        ...

    def read_many(self, paths: Sequence[str], max_bytes: int) -> dict[str, bytes | OSError]:
        """Each regular file's content, ``max_bytes`` in all; a file past what is left is an ``OverLimit``.

        The place for bulk reads; ``boundedread.read_each`` is the default, one file after the other.
        """
        ...
