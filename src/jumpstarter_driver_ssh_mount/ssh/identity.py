"""Handing a private key (or another secret) to ssh without writing it to disk.

On Linux the key lives in an anonymous memory file (``memfd_create``) that ssh opens as
``/proc/<our pid>/fd/<n>``. It exists only while this process holds it: a clean exit,
an exception or a ``kill -9`` all free it, and it is never on any filesystem.
Elsewhere the fallback is a 0600 file inside a private 0700 directory, removed on close.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Self


class PrivateFile:
    """Secret text made readable by path, to this user only, for as long as the object is open."""

    def __init__(self, text: str, name: str) -> None:
        self._fd: int | None = None
        self._dir: str | None = None
        if hasattr(os, "memfd_create") and Path(f"/proc/{os.getpid()}/fd").is_dir():
            self._fd = os.memfd_create(name, os.MFD_CLOEXEC)
            os.fchmod(self._fd, 0o600)  # ssh refuses keys readable by others
            _write_all(self._fd, text.encode())
            self.path = f"/proc/{os.getpid()}/fd/{self._fd}"
        else:
            self._dir = tempfile.mkdtemp(prefix=f"{name}-")
            self.path = os.path.join(self._dir, "id")
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            try:
                _write_all(fd, text.encode())
            finally:
                os.close(fd)

    @property
    def in_memory(self) -> bool:
        """True when the text never touched a filesystem."""
        return self._fd is not None

    def close(self) -> None:
        """Release the text. Safe to call more than once."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        if self._dir is not None:
            for name in os.listdir(self._dir):
                os.unlink(os.path.join(self._dir, name))
            os.rmdir(self._dir)
            self._dir = None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.path} in_memory={self.in_memory}>"


class IdentityFile(PrivateFile):
    """A private key made readable by path for as long as the object is open."""

    def __init__(self, key: str) -> None:
        super().__init__(key if key.endswith("\n") else key + "\n", "jmp-mount-identity")  # ssh wants the newline


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]
