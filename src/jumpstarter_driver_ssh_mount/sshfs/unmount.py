"""Unmounting a FUSE filesystem, and finding out what keeps one busy."""

from __future__ import annotations

import shutil
import subprocess
import sys

from .errors import UnmountError
from .procfs import processes

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
