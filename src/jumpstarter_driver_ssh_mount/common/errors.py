"""The exception family of the mount core.

Every error is one line: what went wrong, then what to do about it. Messages never
contain key material; the identity is only ever named by the path sshfs was given.
"""

from __future__ import annotations

import posixpath
import sys


class MountError(Exception):
    """Base class of every error raised by the mount core."""


class SshfsNotFoundError(MountError):
    """The ``sshfs`` executable is not installed or not on ``PATH``."""

    def __init__(self) -> None:
        super().__init__(f"sshfs is not installed or not on PATH; install it: {install_hint('sshfs')}")


class FuseUnavailableError(MountError):
    """FUSE cannot be used here (no ``/dev/fuse``, no permission, no fusermount)."""


class MountpointError(MountError):
    """The local mountpoint cannot be used (a file, not empty, already mounted...)."""


class RemotePathError(MountError):
    """The device path to mount does not exist, is not a directory, or is not absolute."""


class InvalidOptionError(MountError, ValueError):
    """An ``-o`` option was refused: by us (flag injection, known-hosts writes), by sshfs, or by ssh (usage errors)."""


class ConnectError(MountError):
    """The device's SSH server could not be reached."""


class AuthenticationError(MountError):
    """The device's SSH server refused the identity."""


class HostKeyError(MountError):
    """The device's host key did not match the known-hosts file.

    ``where`` (``user@host port N (transport)``), ``reason`` (ssh's own words) and ``changed``
    (the file pins another key, rather than none) are set when ssh refused the key.
    """

    where: str = ""
    reason: str = ""
    changed: bool = False


class MountTimeoutError(MountError, TimeoutError):
    """The filesystem did not appear within the allowed time."""


class MountLostError(MountError):
    """sshfs exited while the filesystem was supposed to be mounted."""


class UnmountError(MountError):
    """The filesystem could not be unmounted."""


class RestoreError(MountError):
    """Preserved device files could not be put back (each is named).

    ``failed`` pairs each device path that could not be put back with why (empty when unknown).
    """

    failed: tuple[tuple[str, str], ...] = ()


class WaitTimeoutError(MountError, TimeoutError):
    """A device file did not reach the awaited state in time."""


class OutsideMountError(MountError, ValueError):
    """A device path that the mount does not cover; the message names the mount that would."""

    def __init__(self, device_path: str, remote_path: str, usage: str = "") -> None:
        self.device_path = device_path
        self.remote_path = remote_path
        self.covering = covering_directory(device_path)
        marker = f'@pytest.mark.jmp_mount(remote="{self.covering}"{usage})'
        super().__init__(
            f"{device_path} is outside this mount of {remote_path}; mount {self.covering} for it "
            f"(in a test: {marker}; in Python: mounted(remote_path={self.covering!r}))"
        )


def covering_directory(device_path: str) -> str:
    """The device directory to mount so that ``device_path`` (a file, usually) is inside it."""
    return posixpath.dirname(posixpath.normpath(device_path)) or "/"


_INSTALL_HINTS = {
    "sshfs": {
        "linux": "Debian/Ubuntu: sudo apt-get install sshfs; Fedora/RHEL: sudo dnf install fuse-sshfs",
        "darwin": "install macFUSE and SSHFS from https://macfuse.github.io/ (allow the kernel extension)",
    },
    "fuse": {
        "linux": "Debian/Ubuntu: sudo apt-get install fuse3; Fedora/RHEL: sudo dnf install fuse3",
        "darwin": "install macFUSE from https://macfuse.github.io/",
    },
}


def install_hint(what: str, platform: str = sys.platform) -> str:
    """How to install ``what`` ("sshfs" or "fuse") on ``platform``."""
    hints = _INSTALL_HINTS[what]
    return hints.get("darwin" if platform == "darwin" else "linux", hints["linux"])
