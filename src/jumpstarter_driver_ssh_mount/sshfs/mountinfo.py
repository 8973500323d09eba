"""Reading the mount table, and waking up the moment it changes.

Linux signals every change of a mount namespace's table as ``POLLPRI`` on
``/proc/self/mountinfo``, so readiness is an event, not a sleep. Other platforms fall
back to ``os.path.ismount`` and a fine-grained poll.
"""

from __future__ import annotations

import os
import re
import select
from dataclasses import dataclass

MOUNTINFO = "/proc/self/mountinfo"
_ESCAPE = re.compile(r"\\([0-7]{3})")


@dataclass(frozen=True)
class MountEntry:
    """One line of ``/proc/self/mountinfo`` (the fields this project uses)."""

    mountpoint: str
    fstype: str
    source: str
    options: str


def _unescape(field: str) -> str:
    return _ESCAPE.sub(lambda m: chr(int(m.group(1), 8)), field)


def parse_mountinfo(text: str) -> list[MountEntry]:
    """Parse mountinfo text (see proc(5)) into entries."""
    entries = []
    for line in text.splitlines():
        fields = line.split()
        if "-" not in fields:
            continue
        sep = fields.index("-")
        if len(fields) < sep + 3 or len(fields) < 6:
            continue
        entries.append(
            MountEntry(
                mountpoint=_unescape(fields[4]),
                fstype=fields[sep + 1],
                source=_unescape(fields[sep + 2]),
                options=fields[5],
            )
        )
    return entries


def read_mounts() -> list[MountEntry]:
    """The current mount table of this process's namespace (empty where there is none)."""
    try:
        with open(MOUNTINFO, encoding="utf-8", errors="surrogateescape") as f:
            return parse_mountinfo(f.read())
    except FileNotFoundError:
        return []


def mounts_at(mountpoint: str | os.PathLike[str]) -> list[MountEntry]:
    """Every mount stacked on ``mountpoint`` (an absolute, resolved path)."""
    target = os.fspath(mountpoint)
    return [e for e in read_mounts() if e.mountpoint == target]


def is_mountpoint(path: str | os.PathLike[str]) -> bool:
    """True when something is mounted on ``path``, even a dead FUSE mount that ``stat`` fails on."""
    if os.path.exists(MOUNTINFO):
        return bool(mounts_at(path))
    try:
        return os.path.ismount(path)
    except OSError:  # a dead FUSE mount: ENOTCONN
        return True


def mounts_under(directory: str | os.PathLike[str]) -> list[MountEntry]:
    """Every mount whose mountpoint is ``directory`` (an absolute, resolved path) or below it."""
    base = os.fspath(directory).rstrip("/") + "/"
    return [e for e in read_mounts() if (e.mountpoint + "/").startswith(base)]


def sshfs_mounts_under(directory: str | os.PathLike[str]) -> list[MountEntry]:
    """sshfs mounts whose mountpoint is ``directory`` or below it."""
    return [e for e in mounts_under(directory) if e.fstype == "fuse.sshfs"]


def anything_mounted_under(directory: str | os.PathLike[str]) -> bool:
    """True when a mountpoint is ``directory`` or below it, or when that cannot be known (no mountinfo)."""
    if not os.path.exists(MOUNTINFO):
        return True
    return bool(mounts_under(os.path.realpath(directory)))


class MountTableWatcher:
    """Wait until the mount table may have changed, or a timeout passes.

    ``wait(timeout)`` returns early on a mount table change (Linux) or when one of the
    extra file descriptors given to ``watch_fd`` becomes readable (e.g. a pidfd).
    """

    POLL_FALLBACK = 0.01  # seconds, where mountinfo cannot be polled

    def __init__(self) -> None:
        self._poll = select.poll()
        self._fd: int | None = None
        try:
            self._fd = os.open(MOUNTINFO, os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            return
        self._drain()
        self._poll.register(self._fd, select.POLLPRI | select.POLLERR)

    def watch_fd(self, fd: int) -> None:
        """Also wake up when ``fd`` becomes readable."""
        self._poll.register(fd, select.POLLIN)

    def _drain(self) -> None:
        # Reading the file to its end re-arms the POLLPRI notification.
        assert self._fd is not None
        os.lseek(self._fd, 0, os.SEEK_SET)
        while os.read(self._fd, 65536):
            pass

    def wait(self, timeout: float) -> None:
        """Block until something may have changed, at most ``timeout`` seconds."""
        if self._fd is None:
            timeout = min(timeout, self.POLL_FALLBACK)
        events = self._poll.poll(max(0, int(timeout * 1000)) if timeout > 0.001 else 1)
        if self._fd is not None and any(fd == self._fd for fd, _ in events):
            self._drain()

    def close(self) -> None:
        """Release the file descriptor."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> MountTableWatcher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
