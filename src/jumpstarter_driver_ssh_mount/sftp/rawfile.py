"""An open device file as Python's ``io`` stack expects it: ``SftpRawFile``, for ``DevicePath.open``.

Buffering and text decoding come from ``io.BufferedReader``/``BufferedWriter``/``TextIOWrapper``
over it, exactly as for a local file; each raw read or write is one SFTP request.
"""

from __future__ import annotations

import io
from typing import Any

from jumpstarter_driver_ssh_mount.common.defaults import SFTP_BLOCK_SIZE
from jumpstarter_driver_ssh_mount.sftp.errno_map import oserrors
from jumpstarter_driver_ssh_mount.sftp.loop import LoopThread


async def read_to_end(handle: Any, offset: int) -> bytes:
    """Everything from ``offset`` on: the size the file reports in parallel requests (asyncssh keeps many
    in flight), then on until the end it really has (a ``/proc`` file reports 0)."""
    data = await handle.read(-1, offset)
    parts, offset = [data], offset + len(data)
    while chunk := await handle.read(SFTP_BLOCK_SIZE, offset):
        parts.append(chunk)
        offset += len(chunk)
    return b"".join(parts)


class SftpRawFile(io.RawIOBase):
    """An asyncssh file handle, read and written at a position of our own."""

    def __init__(self, loop: LoopThread, handle: Any, path: str, mode: str) -> None:
        super().__init__()
        self._loop, self._handle, self._path, self._mode = loop, handle, path, mode
        self._offset = 0
        self.name = path

    def readable(self) -> bool:
        return "r" in self._mode or "+" in self._mode

    def writable(self) -> bool:
        return any(c in self._mode for c in "wax+")

    def seekable(self) -> bool:
        return True

    def _run(self, call: Any) -> Any:
        return self._loop.run(oserrors(call, self._path))

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        data: bytes = self._run(lambda: self._handle.read(min(len(view), SFTP_BLOCK_SIZE), self._offset))
        view[: len(data)] = data
        self._offset += len(data)
        return len(data)

    def readall(self) -> bytes:
        data: bytes = self._run(lambda: read_to_end(self._handle, self._offset))
        self._offset += len(data)
        return data

    def write(self, data: Any) -> int:
        chunk = bytes(data)
        if "a" in self._mode:
            self._offset = self._size()
        self._run(lambda: self._handle.write(chunk, self._offset))
        self._offset += len(chunk)
        return len(chunk)

    def _size(self) -> int:
        attrs = self._run(self._handle.stat)
        return int(attrs.size or 0)

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        if whence == io.SEEK_CUR:
            offset += self._offset
        elif whence == io.SEEK_END:
            offset += self._size()
        if offset < 0:
            raise ValueError(f"negative seek position {offset}")
        self._offset = offset
        return offset

    def tell(self) -> int:
        return self._offset

    def truncate(self, size: int | None = None) -> int:
        size = self._offset if size is None else size
        self._run(lambda: self._handle.truncate(size))
        return size

    def close(self) -> None:
        if not self.closed:
            try:
                self._run(self._handle.close)
            finally:
                super().close()
