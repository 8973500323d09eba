"""``SftpFS``: the device's files through one SFTP session (the SFTP backend's ``DeviceFS``).

Every call asks the device: nothing is cached, so a listing or an ``exists`` is the device's
state now. Paths go to the device as bytes (``os.fsencode``), so names that are not UTF-8 round
trip. SFTP opens follow symlinks on the device; a chore that must not follow one (``collect``,
``snapshot``) checks with ``lstat`` first, and every open checks the type before it opens: an
SFTP server opening a FIFO would wait for a writer, and the whole session with it. A call that finds
the connection gone (the device rebooted) has the session log in again (``SftpSession.revive``).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import posixpath
import stat
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import asyncssh

from jumpstarter_driver_ssh_mount.common.defaults import SFTP_BLOCK_SIZE
from jumpstarter_driver_ssh_mount.devicefiles.boundedread import read_each
from jumpstarter_driver_ssh_mount.devicefiles.fs import FileStat, NotRegularFile
from jumpstarter_driver_ssh_mount.sftp.errno_map import as_oserror, oserrors
from jumpstarter_driver_ssh_mount.sftp.loop import LoopThread
from jumpstarter_driver_ssh_mount.sftp.readmany import fetch_many, lost_connection
from jumpstarter_driver_ssh_mount.sftp.session import SftpSession
from jumpstarter_driver_ssh_mount.sftp.stall import run_watched

NS = 1_000_000_000


def file_stat(attrs: asyncssh.SFTPAttrs) -> FileStat:
    """SFTP attributes as ``FileStat`` (version 3 has whole seconds and no link count)."""
    mode = attrs.permissions or 0
    if not stat.S_IFMT(mode):
        mode |= {
            asyncssh.FILEXFER_TYPE_REGULAR: stat.S_IFREG,
            asyncssh.FILEXFER_TYPE_DIRECTORY: stat.S_IFDIR,
            asyncssh.FILEXFER_TYPE_SYMLINK: stat.S_IFLNK,
        }.get(attrs.type, 0)
    mtime_ns = (attrs.mtime or 0) * NS + (attrs.mtime_ns or 0)
    return FileStat(mode, attrs.size or 0, mtime_ns, attrs.nlink or 1, attrs.uid or 0, attrs.gid or 0)


class SftpReader:
    """A ``Reader`` over an open SFTP file: each ``read`` is one request to the device."""

    def __init__(self, loop: LoopThread, handle: Any, path: str) -> None:
        self._loop, self._handle, self._path = loop, handle, path
        self._offset = 0

    def read(self, size: int) -> bytes:
        data: bytes = self._loop.run(oserrors(lambda: self._handle.read(size, self._offset), self._path))
        self._offset += len(data)
        return data

    def seek(self, offset: int) -> None:
        self._offset = offset


class SftpFS:
    """The device's files through ``sftp`` (an asyncssh ``SFTPClient`` living on ``loop``)."""

    def __init__(
        self, session: SftpSession, remote_path: str, where: str, down: Callable[[], str | None] | None = None
    ) -> None:
        self._session = session
        self._down = down  # why the device does not answer (the exporter's check), asked when a call stalls
        self._closing: set[asyncio.Task[None]] = set()  # handles being closed in the background
        self.remote_path = posixpath.normpath(remote_path)
        self.where = where

    @property
    def loop(self) -> LoopThread:
        """The event loop thread the session lives on."""
        return self._session.loop

    @property
    def _loop(self) -> LoopThread:
        return self._session.loop

    @property
    def _sftp(self) -> asyncssh.SFTPClient:
        """The session's SFTP client now (a new one after the session logged in again)."""
        return self._session.sftp

    def _run(self, path: str, call: Any) -> Any:
        """Run ``call()`` (a coroutine function) on the loop; errors as ``OSError`` about ``path``.

        A connection the device dropped (a reboot) is logged in again first, or once the call finds it
        lost, and the call made again once: over the same route, failing at once while the device is down.
        """
        session = self._session
        seen = session.generation
        if not session.connected:
            session.revive(seen, path)
            seen = session.generation
        try:
            return run_watched(session.loop, oserrors(call, path), self._down, session.abort)
        except OSError as exc:
            if exc.errno != errno.ENOTCONN or session.connected:  # a live connection: the error is the call's
                raise
        session.revive(seen, path)
        return run_watched(session.loop, oserrors(call, path), self._down, session.abort)

    def lstat(self, path: str) -> FileStat:
        return file_stat(self._run(path, lambda: self._sftp.lstat(os.fsencode(path))))

    def stat(self, path: str) -> FileStat:
        return file_stat(self._run(path, lambda: self._sftp.stat(os.fsencode(path))))

    def scandir(self, path: str) -> list[tuple[str, bool]]:
        entries = self._run(path, lambda: self._sftp.readdir(os.fsencode(path)))
        return [
            (os.fsdecode(e.filename), file_stat(e.attrs).is_dir) for e in entries if e.filename not in (b".", b"..")
        ]

    @contextmanager
    def open_regular(self, path: str, *, follow: bool = False) -> Iterator[tuple[SftpReader, FileStat]]:
        info = self.stat(path) if follow else self.lstat(path)
        if info.is_symlink:
            raise OSError(errno.ELOOP, os.strerror(errno.ELOOP), path)
        if not info.is_regular:
            raise NotRegularFile(f"{path} is not a regular file")
        handle = self._run(path, lambda: self._sftp.open(os.fsencode(path), "rb"))
        try:
            opened = file_stat(self._run(path, handle.stat))
            if not opened.is_regular:
                raise NotRegularFile(f"{path} is not a regular file")
            yield SftpReader(self._loop, handle, path), opened
        finally:
            self._close(handle, path)

    def _close(self, handle: Any, path: str) -> None:
        with contextlib.suppress(OSError):
            self._run(path, handle.close)

    def open_handle(self, path: str, mode: str) -> Any:
        """An asyncssh file handle for ``path`` opened with ``mode`` (``rb``, ``wb``, ``ab``, ``r+b``...).

        What is there is looked at first: a directory is ``IsADirectoryError`` (as a local open says), and
        anything but a regular file is refused (``NotRegularFile``): the server would wait on a FIFO.
        """
        try:
            info = self.stat(path)
        except FileNotFoundError:
            info = None
        if info is not None and info.is_dir:
            raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), path)
        if info is not None and not info.is_regular:
            raise NotRegularFile(f"{path} is not a regular file")
        return self._run(path, lambda: self._sftp.open(os.fsencode(path), mode))

    def read_whole(self, path: str) -> bytes:
        """All of the regular file ``path`` (a symlink followed on the device), in one go on the loop.

        One look (a directory or anything but a regular file is refused, as ``open_handle`` does),
        then the size it reports, in parallel requests; a file that reports 0 (``/proc``) is read on
        until its end.
        """
        return self._run(path, lambda: self._read_whole(path))

    async def _read_whole(self, path: str) -> bytes:
        name = os.fsencode(path)
        info = file_stat(await self._sftp.stat(name))
        if info.is_dir:
            raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), path)
        if not info.is_regular:
            raise NotRegularFile(f"{path} is not a regular file")
        handle: Any = await self._sftp.open(name, "rb")  # binary: reads give bytes
        try:
            data: bytes = await handle.read(info.size, 0) if info.size else b""
            parts, offset = [data], len(data)
            while not (data or info.size) and (chunk := await handle.read(SFTP_BLOCK_SIZE, offset)):
                parts.append(chunk)  # it said 0 bytes (/proc): on until its end
                offset += len(chunk)
        finally:
            self._close_later(handle)
        return b"".join(parts)  # as much as its size says, as a local read racing a writer would get

    def _close_later(self, handle: Any) -> None:
        """Close ``handle`` without waiting for the answer (one round trip less per file read whole)."""
        task = asyncio.ensure_future(handle.close())
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)
        task.add_done_callback(lambda t: t.cancelled() or t.exception())  # a gone session closed it anyway

    def write_bytes(self, path: str, data: bytes) -> None:
        handle = self.open_handle(path, "wb")
        try:
            self._run(path, lambda: handle.write(data, 0))
        finally:
            self._close(handle, path)

    def chmod(self, path: str, mode: int) -> None:
        self._run(path, lambda: self._sftp.chmod(os.fsencode(path), mode))

    def unlink(self, path: str) -> None:
        self._run(path, lambda: self._sftp.remove(os.fsencode(path)))

    def mkdir(self, path: str, mode: int = 0o777) -> None:
        attrs = asyncssh.SFTPAttrs(permissions=mode)
        try:
            self._run(path, lambda: self._sftp.mkdir(os.fsencode(path), attrs))
        except OSError as exc:
            if exc.errno == errno.EIO and self.present(path):  # SFTP v3 has no "exists" code
                raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), path) from None
            raise

    def rmdir(self, path: str) -> None:
        self._run(path, lambda: self._sftp.rmdir(os.fsencode(path)))

    def rename(self, source: str, target: str) -> None:
        old, new = os.fsencode(source), os.fsencode(target)
        try:  # replaces target, as os.rename does
            self._run(source, lambda: self._sftp.posix_rename(old, new))
        except OSError as exc:
            if exc.errno != errno.EOPNOTSUPP:
                raise
            self._run(source, lambda: self._sftp.rename(old, new))

    def readlink(self, path: str) -> str:
        return os.fsdecode(self._run(path, lambda: self._sftp.readlink(os.fsencode(path))))

    def realpath(self, path: str) -> str:
        """``path`` with every symlink resolved, on the device."""
        return os.fsdecode(self._run(path, lambda: self._sftp.realpath(os.fsencode(path))))

    def present(self, path: str) -> bool:
        try:
            self.lstat(path)
        except FileNotFoundError:
            return False
        except OSError as exc:
            if exc.errno == errno.ENOTCONN:
                raise
            return exc.errno != errno.ENOTDIR
        return True

    def contains(self, path: str) -> bool:
        if self.remote_path == "/":
            return True
        resolved = self.realpath(path)
        return resolved == self.remote_path or resolved.startswith(self.remote_path + "/")

    def read_many(self, paths: Sequence[str], max_bytes: int) -> dict[str, bytes | OSError]:
        """``read_each``'s result, with every file's look and read in flight together (``readmany``)."""
        paths = list(paths)
        if len(paths) < 2:
            return read_each(self, paths, max_bytes)
        settled = self._run(paths[0], lambda: fetch_many(self._sftp, paths, max_bytes, file_stat))
        if lost_connection(settled):
            return read_each(self, paths, max_bytes)  # logs in again, as every call does
        return read_each(self, paths, max_bytes, settled)


__all__ = ["SftpFS", "SftpReader", "as_oserror", "file_stat"]
