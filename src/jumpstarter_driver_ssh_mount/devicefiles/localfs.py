"""``LocalDirFS``: the device's files as a local directory shows them (the FUSE mount's ``DeviceFS``).

A device path maps to the same place below the mountpoint (``devicepaths.local_path``). Files are
opened without blocking and, unless asked, without following a symlink. ``present`` opens
regular files and directories once: sshfs's listing cache ("fast" mode) can keep an entry of
a deleted file for 20 s, and a failed open drops it. ``contains`` checks that what a path
resolves to locally stays below the mountpoint (a link sshfs hands to the host's kernel).
"""

from __future__ import annotations

import os
import stat
from collections.abc import Sequence
from contextlib import AbstractContextManager
from pathlib import Path

from jumpstarter_driver_ssh_mount.devicefiles.boundedread import FdReader, open_local, read_each
from jumpstarter_driver_ssh_mount.devicefiles.devicepaths import local_path
from jumpstarter_driver_ssh_mount.devicefiles.fs import FileStat


class LocalDirFS:
    """The device directory ``remote_path``, visible at ``mountpoint``."""

    def __init__(self, mountpoint: Path, remote_path: str) -> None:
        self.mountpoint = mountpoint
        self.remote_path = remote_path
        self.where = str(mountpoint)

    def local(self, path: str) -> Path:
        """Where the device path ``path`` is visible locally (``OutsideMountError`` if the mount misses it)."""
        return local_path(self.mountpoint, self.remote_path, path)

    def lstat(self, path: str) -> FileStat:
        return FileStat.of(os.lstat(self.local(path)))

    def stat(self, path: str) -> FileStat:
        return FileStat.of(os.stat(self.local(path)))

    def scandir(self, path: str) -> list[tuple[str, bool]]:
        with os.scandir(self.local(path)) as entries:
            return [(entry.name, _is_real_dir(entry)) for entry in entries]

    def open_regular(self, path: str, *, follow: bool = False) -> AbstractContextManager[tuple[FdReader, FileStat]]:
        return open_local(self.local(path), follow=follow)

    def write_bytes(self, path: str, data: bytes) -> None:
        self.local(path).write_bytes(data)

    def chmod(self, path: str, mode: int) -> None:
        os.chmod(self.local(path), mode)

    def unlink(self, path: str) -> None:
        os.unlink(self.local(path))

    def mkdir(self, path: str, mode: int = 0o777) -> None:
        os.mkdir(self.local(path), mode)

    def rmdir(self, path: str) -> None:
        os.rmdir(self.local(path))

    def rename(self, source: str, target: str) -> None:
        os.rename(self.local(source), self.local(target))

    def readlink(self, path: str) -> str:
        return os.readlink(self.local(path))

    def present(self, path: str) -> bool:
        local = self.local(path)
        try:
            mode = os.lstat(local).st_mode
        except OSError:
            return False  # as os.path.lexists
        if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
            return True  # opening a device node or FIFO on the device could have effects there
        try:
            fd = os.open(local, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
        except FileNotFoundError:
            return False
        except OSError:
            return True
        os.close(fd)
        return True

    def contains(self, path: str) -> bool:
        root = os.path.realpath(self.mountpoint)
        resolved = os.path.realpath(self.local(path))
        return resolved == root or resolved.startswith(root + os.sep)

    def read_many(self, paths: Sequence[str], max_bytes: int) -> dict[str, bytes | OSError]:
        return read_each(self, paths, max_bytes)


def _is_real_dir(entry: os.DirEntry[str]) -> bool:
    try:
        return entry.is_dir(follow_symlinks=False)  # the entry's type: no extra round trip to the device
    except OSError:
        return False
