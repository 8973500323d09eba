"""Which backend carries each mount's files: ``BackendChoice``, the one place ``auto`` is decided.

``auto`` is sshfs where a FUSE mount works here, else SFTP. Whether it works is asked once per
process (``sshfs.fuse.fuse_problem``: the real ``/dev/fuse``, ``sshfs``, ``fusermount``), and
learnt again if a FUSE mount still fails for want of FUSE: from then on ``auto`` takes SFTP.
The report header says once when files go via SFTP, and why.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from jumpstarter_driver_ssh_mount import DeviceFiles


class BackendChoice:
    """The ``--jmp-mount-backend`` setting and, for ``auto``, what this host can do."""

    def __init__(self, setting: str) -> None:
        self.setting = setting
        self._lock = threading.Lock()
        self._checked = False
        self._why_sftp: str | None = None

    def why_sftp(self) -> str | None:
        """Why ``auto`` takes SFTP here ("no usable /dev/fuse"...), None when it takes sshfs."""
        with self._lock:
            if not self._checked:
                from jumpstarter_driver_ssh_mount.sshfs.fuse import fuse_problem

                self._why_sftp = fuse_problem()
                self._checked = True
            return self._why_sftp

    def for_mount(self, asked: str | None = None) -> str:
        """The backend of one mount: ``asked`` (a marker's ``backend=``), else the setting; ``auto`` decided."""
        choice = asked or self.setting
        if choice != "auto":
            return choice
        return "sftp" if self.why_sftp() else "sshfs"

    def open(self, files: Callable[..., DeviceFiles], asked: str | None, say: Callable[[str], Any]) -> DeviceFiles:
        """``files(backend=...)`` for one mount; under ``auto``, SFTP when the FUSE mount fails for want of FUSE
        (``say`` tells the terminal so, once)."""
        from jumpstarter_driver_ssh_mount import FuseUnavailableError, SshfsNotFoundError

        backend = self.for_mount(asked)
        try:
            return files(backend=backend)
        except (FuseUnavailableError, SshfsNotFoundError) as exc:
            if backend != "sshfs" or (asked or self.setting) != "auto":
                raise
            say(self.fuse_failed(str(exc).split(";")[0]))
            return files(backend="sftp")

    def fuse_failed(self, problem: str) -> str:
        """A FUSE mount failed for want of FUSE (``problem``): ``auto`` takes SFTP from now on. The line to say so."""
        with self._lock:
            self._checked, self._why_sftp = True, f"FUSE failed: {problem}"
        return f"jumpstarter mount: files via sftp (FUSE failed: {problem})"

    def header(self) -> str | None:
        """``jumpstarter mount: files via sftp (no usable /dev/fuse)`` when files go via SFTP; else None."""
        if self.setting == "sftp":
            return "jumpstarter mount: files via sftp (--jmp-mount-backend sftp)"
        if self.setting == "auto" and (why := self.why_sftp()):
            return f"jumpstarter mount: files via sftp ({why})"
        return None
