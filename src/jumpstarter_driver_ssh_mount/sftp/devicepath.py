"""``DevicePath``: a device file on the SFTP backend, with pathlib's file API and never a local path.

``remote_path`` on the SFTP backend is one of these. ``/``, ``name``, ``parent``, ``suffix``,
``stem``, ``with_name``, ``with_suffix``, ``read_text``/``read_bytes``, ``write_text``/``write_bytes``,
``open``, ``exists``, ``is_file``, ``is_dir``, ``is_symlink``, ``iterdir``, ``glob``/``rglob``,
``stat``/``lstat``, ``mkdir``, ``rmdir``, ``unlink``, ``rename``/``replace``, ``chmod``, ``readlink``,
``touch`` and ``resolve`` ask the device, every time (no cache). It cannot be mistaken for a local path:
``os.fspath()``, ``open()`` and every ``os`` function raise a ``TypeError`` naming the pathlib method
to use, and ``str()`` is ``device:/the/path``, which names no local file.
"""

from __future__ import annotations

import io
import os
import posixpath
import stat
from collections.abc import Iterator
from typing import IO, Any

from jumpstarter_driver_ssh_mount.devicefiles.matching import Matcher
from jumpstarter_driver_ssh_mount.sftp.rawfile import SftpRawFile
from jumpstarter_driver_ssh_mount.sftp.sftpfs import SftpFS

PREFIX = "device:"


class DevicePath:
    """An absolute path on the device, reached through ``fs`` (an SFTP session)."""

    def __init__(self, fs: SftpFS, path: str) -> None:
        self._fs = fs
        self.path = "/" + posixpath.normpath("/" + path).lstrip("/")  # absolute, normalized, one leading /

    # -- a path --------------------------------------------------------------------
    def __truediv__(self, other: str | os.PathLike[str]) -> DevicePath:
        other = other.path if isinstance(other, DevicePath) else os.fspath(other)
        return DevicePath(self._fs, posixpath.join(self.path, other))

    def joinpath(self, *others: str) -> DevicePath:
        """``self / a / b ...``."""
        result = self
        for other in others:
            result = result / other
        return result

    @property
    def name(self) -> str:
        return posixpath.basename(self.path)

    @property
    def suffix(self) -> str:
        name = self.name
        i = name.rfind(".")
        return name[i:] if 0 < i < len(name) - 1 else ""

    @property
    def stem(self) -> str:
        suffix = self.suffix
        return self.name[: -len(suffix)] if suffix else self.name

    @property
    def parent(self) -> DevicePath:
        return DevicePath(self._fs, posixpath.dirname(self.path))

    @property
    def parts(self) -> tuple[str, ...]:
        return ("/", *[p for p in self.path.split("/") if p])

    def with_name(self, name: str) -> DevicePath:
        return self.parent / name

    def with_suffix(self, suffix: str) -> DevicePath:
        return self.parent / (self.stem + suffix)

    def is_absolute(self) -> bool:
        return True

    def __str__(self) -> str:
        return PREFIX + self.path

    def __repr__(self) -> str:
        return f"DevicePath({self.path!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, DevicePath) and other.path == self.path and other._fs is self._fs

    def __hash__(self) -> int:
        return hash((self.path, id(self._fs)))

    def __lt__(self, other: DevicePath) -> bool:
        return self.path < other.path

    def __fspath__(self) -> str:
        raise TypeError(
            f"{self.path} is a file on the device (files via sftp), not on this host: use its pathlib methods "
            f"instead of open() or os functions: .read_text(), .read_bytes(), .write_text(), .write_bytes(), "
            f".open(), .iterdir(), .stat(), .exists()"
        )

    # -- asking the device ---------------------------------------------------------
    def stat(self, *, follow_symlinks: bool = True) -> os.stat_result:
        """The device file's attributes (``st_mode``, ``st_size``, ``st_mtime``, ``st_uid``...)."""
        info = self._fs.stat(self.path) if follow_symlinks else self._fs.lstat(self.path)
        mtime = info.mtime_ns / 1e9
        return os.stat_result((info.mode, 0, 0, info.nlink, info.uid, info.gid, info.size, mtime, mtime, mtime))

    def lstat(self) -> os.stat_result:
        return self.stat(follow_symlinks=False)

    def _mode(self, follow: bool = True) -> int | None:
        try:
            return (self._fs.stat(self.path) if follow else self._fs.lstat(self.path)).mode
        except (FileNotFoundError, NotADirectoryError):
            return None

    def exists(self, *, follow_symlinks: bool = True) -> bool:
        return self._mode(follow_symlinks) is not None

    def is_file(self) -> bool:
        mode = self._mode()
        return mode is not None and stat.S_ISREG(mode)

    def is_dir(self) -> bool:
        mode = self._mode()
        return mode is not None and stat.S_ISDIR(mode)

    def is_symlink(self) -> bool:
        mode = self._mode(follow=False)
        return mode is not None and stat.S_ISLNK(mode)

    def iterdir(self) -> Iterator[DevicePath]:
        """The directory's entries now (one listing from the device)."""
        for name, _ in self._fs.scandir(self.path):
            yield self / name

    def glob(self, pattern: str) -> Iterator[DevicePath]:
        """Entries matching ``pattern`` (``**`` any depth; symlinked directories are not entered), sorted."""
        for path in Matcher(self._fs, top=self.path).match(self.path, pattern):
            yield DevicePath(self._fs, path)

    def rglob(self, pattern: str) -> Iterator[DevicePath]:
        return self.glob(f"**/{pattern}")

    def open(
        self,
        mode: str = "r",
        buffering: int = -1,
        encoding: str | None = None,
        errors: str | None = None,
        newline: str | None = None,
    ) -> IO[Any]:
        """The device file opened as ``open()`` would open a local one (text or binary, buffered)."""
        binary = "b" in mode
        sftp_mode = mode.replace("t", "").replace("b", "") + "b"
        handle = self._fs.open_handle(self.path, sftp_mode)
        raw = SftpRawFile(self._fs.loop, handle, self.path, sftp_mode)
        if buffering == 0 and binary:
            return raw  # type: ignore[return-value]
        size = buffering if buffering > 1 else io.DEFAULT_BUFFER_SIZE
        buffered: Any
        if "+" in mode:
            buffered = io.BufferedRandom(raw, size)
        elif raw.writable():
            buffered = io.BufferedWriter(raw, size)
        else:
            buffered = io.BufferedReader(raw, size)
        if binary:
            return buffered
        return io.TextIOWrapper(buffered, encoding or "utf-8", errors, newline)

    def read_bytes(self) -> bytes:
        """The whole file, read now (many requests in flight; a ``/proc`` file whole although it says 0 bytes)."""
        return self._fs.read_whole(self.path)

    def read_text(self, encoding: str | None = None, errors: str | None = None) -> str:
        """The whole file as text, decoded (and newlines translated) as ``Path.read_text`` does."""
        with io.TextIOWrapper(io.BytesIO(self.read_bytes()), encoding or "utf-8", errors) as text:
            return text.read()

    def write_bytes(self, data: bytes) -> int:
        self._fs.write_bytes(self.path, bytes(data))
        return len(data)

    def write_text(
        self, data: str, encoding: str | None = None, errors: str | None = None, newline: str | None = None
    ) -> int:
        with self.open("w", encoding=encoding, errors=errors, newline=newline) as f:
            return f.write(data)

    def touch(self, mode: int = 0o666, exist_ok: bool = True) -> None:
        if self.exists():
            if not exist_ok:
                raise FileExistsError(f"{self.path} exists on the device")
            return
        self.open("ab").close()

    def mkdir(self, mode: int = 0o777, parents: bool = False, exist_ok: bool = False) -> None:
        try:
            self._fs.mkdir(self.path, mode)
        except FileNotFoundError:
            if not parents or self.parent.path == self.path:
                raise
            self.parent.mkdir(parents=True, exist_ok=True)
            self.mkdir(mode, parents=False, exist_ok=exist_ok)
        except FileExistsError:
            if not exist_ok or not self.is_dir():
                raise

    def rmdir(self) -> None:
        self._fs.rmdir(self.path)

    def unlink(self, missing_ok: bool = False) -> None:
        try:
            self._fs.unlink(self.path)
        except FileNotFoundError:
            if not missing_ok:
                raise

    def rename(self, target: str | DevicePath) -> DevicePath:
        """Rename on the device (a relative ``target`` is relative to the current directory: ``/`` here)."""
        new = target if isinstance(target, DevicePath) else DevicePath(self._fs, posixpath.join("/", target))
        self._fs.rename(self.path, new.path)
        return new

    def replace(self, target: str | DevicePath) -> DevicePath:
        return self.rename(target)

    def chmod(self, mode: int) -> None:
        self._fs.chmod(self.path, mode)

    def readlink(self) -> DevicePath:
        return DevicePath(self._fs, posixpath.join(posixpath.dirname(self.path), self._fs.readlink(self.path)))

    def resolve(self, strict: bool = False) -> DevicePath:
        """The path with every symlink resolved on the device."""
        return DevicePath(self._fs, self._fs.realpath(self.path))
