"""Unmounting a FUSE filesystem, and finding out what keeps one busy."""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys

from jumpstarter_driver_ssh_mount.common.errors import UnmountError
from jumpstarter_driver_ssh_mount.common.procfs import processes
from jumpstarter_driver_ssh_mount.sshfs.diagnose import last_line
from jumpstarter_driver_ssh_mount.sshfs.mountinfo import is_mountpoint, mounts_at

logger = logging.getLogger("jumpstarter_driver_ssh_mount")

UNMOUNT_TIMEOUT = 30.0  # seconds; a normal FUSE unmount takes milliseconds


def unmount_command(mountpoint: str, *, lazy: bool = False, platform: str = sys.platform) -> list[str]:
    """``fusermount3``/``fusermount -u`` (``-z`` when lazy), else ``umount`` (``-l``; macOS ``-f``)."""
    fusermount = shutil.which("fusermount3") or shutil.which("fusermount")
    if fusermount:
        return [fusermount, "-u", *(["-z"] if lazy else []), mountpoint]
    flag = ["-f"] if platform == "darwin" else ["-l"]
    return ["umount", *(flag if lazy else []), mountpoint]


def run_unmount(mountpoint: str, *, lazy: bool = False) -> subprocess.CompletedProcess[str]:
    """Run the unmount command; never raises for a non-zero exit (the caller decides)."""
    cmd = unmount_command(mountpoint, lazy=lazy)
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=UNMOUNT_TIMEOUT, stdin=subprocess.DEVNULL)
    except FileNotFoundError as exc:
        raise UnmountError(f"cannot unmount {mountpoint}: {cmd[0]} not found; install fuse3") from exc
    except subprocess.TimeoutExpired as exc:
        raise UnmountError(
            f"unmounting {mountpoint} did not finish in {UNMOUNT_TIMEOUT:.0f}s; try a lazy unmount"
        ) from exc


def unmount_path(mountpoint: str | os.PathLike[str], *, lazy: bool = False) -> str:
    """Unmount whatever is mounted on ``mountpoint`` (e.g. left by a killed client); its resolved path.

    :raises UnmountError: naming the problem: no such directory, nothing mounted there, or
        the unmount command's own message (with the ``lazy`` hint only when it is busy).
    """
    path = os.path.realpath(os.fspath(mountpoint))
    if not os.path.lexists(path):
        raise UnmountError(f"{path} does not exist; nothing to unmount")
    if not is_mountpoint(path):
        raise UnmountError(f"{path} is not mounted; nothing to unmount")
    result = run_unmount(path, lazy=lazy)
    if result.returncode != 0 and is_mountpoint(path):
        detail = (result.stderr or "").strip().splitlines()
        hint = "; it is busy, retry with --lazy" if is_busy(result) and not lazy else ""
        raise UnmountError(f"unmounting {path} failed: {detail[-1] if detail else result.returncode}{hint}")
    return path


def is_busy(result: subprocess.CompletedProcess[str]) -> bool:
    """True when the unmount failed because something still uses the filesystem."""
    return result.returncode != 0 and "busy" in (result.stderr or "").lower()


def holders(mountpoint: str, *, limit: int = 5) -> list[str]:
    """Processes whose cwd, root or open files lie inside ``mountpoint`` ("pid (name)").

    Reads only ``/proc`` links, never the mount itself, so it is safe on a hung mount.
    """
    base = mountpoint.rstrip("/")
    found: list[str] = []
    for process in processes():
        if len(found) >= limit:
            break
        if any(path == base or path.startswith(base + "/") for path in process.open_paths()):
            found.append(f"{process.pid} ({process.name})")
    return found


def detach(path: str, lazy: bool, warnings: list[str]) -> tuple[UnmountError | None, bool]:
    """Unmount ``path``; (the error if it is still mounted, whether it was detached lazily).

    A busy filesystem is detached lazily, with a warning in ``warnings`` naming who keeps it busy.
    """
    if not mounts_at(path):
        return None, False
    result = run_unmount(path, lazy=lazy)
    if result.returncode == 0 or not mounts_at(path):
        return None, lazy
    if is_busy(result) and not lazy:
        busy = ", ".join(holders(path)) or "unknown processes"
        logger.warning("%s is busy (used by %s); detaching it lazily", path, busy)
        warnings.append(f"{path} is busy (used by {busy}); detached it lazily")
        result = run_unmount(path, lazy=True)
        if result.returncode == 0 or not mounts_at(path):
            return None, True
    return UnmountError(f"cannot unmount {path}: {last_line(result.stderr)}; try a lazy unmount (-l)"), lazy
