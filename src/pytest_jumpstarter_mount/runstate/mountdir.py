"""Where the plugin's mountpoints live: a private directory pytest's tmp cleanup never reaches.

``<tmp>/pytest-jmp-mount-<uid>/<run id>-<worker id>/``: mode 0700, owned by us, removed
with ``rmdir`` at the end. Never under ``basetemp``, whose retention cleanup would
``rm -rf`` through a mount left by a killed run.

Each run directory holds an ``owner`` record (``runstore``): plugin, uid, and the process's identity
(pid, start time, PID namespace, boot id, host name; see ``sshfs.liveness``). A later run
sweeps only directories whose record says they are ours and whose process is dead by that
rule: it lazily unmounts what is still mounted there and removes the directories with
``rmdir``. A directory of a process this run cannot see (another PID namespace, another
host) is left alone and counted for the report header. Anything else, mounted or not, is
never touched.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import stat
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from jumpstarter_driver_ssh_mount import PRIVATE_DIR_PREFIX
from jumpstarter_driver_ssh_mount.common.liveness import Verdict
from pytest_jumpstarter_mount.runstate.runstore import OWNER_FILE, runs, write_owner


class MountDirError(Exception):
    """The mount directory cannot be used (one line, with the fix)."""


def default_base() -> Path:
    """``<tmp>/pytest-jmp-mount-<uid>``: the per-user parent of every run's directory."""
    return Path(tempfile.gettempdir()) / f"pytest-jmp-mount-{os.getuid()}"


def private_dir(path: Path) -> Path:
    """Make ``path`` a 0700 directory we own, or fail with a UsageError naming the fix."""
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        info = path.lstat()
    except OSError as exc:
        raise MountDirError(
            f"cannot create mount directory {path}: {exc.strerror}; pass a writable --jmp-mount-dir"
        ) from None
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid():
        raise MountDirError(f"mount directory {path} is not a directory owned by you; pass --jmp-mount-dir")
    if stat.S_IMODE(info.st_mode) & 0o077:
        os.chmod(path, 0o700)
    if not os.access(path, os.W_OK | os.X_OK):
        raise MountDirError(f"mount directory {path} is not writable; pass a writable --jmp-mount-dir")
    return path


def run_dir(base: Path, run_id: str, worker_id: str) -> Path:
    """This run's (and this xdist worker's) own directory under ``base``, with its owner record."""
    path = private_dir(private_dir(base) / f"{run_id}-{worker_id}")
    write_owner(path)
    return path


def close_run_dir(path: Path) -> None:
    """Remove the owner record and the directory, if nothing else is left in it."""
    with contextlib.suppress(FileNotFoundError):
        if not any(p.name != OWNER_FILE for p in path.iterdir()):
            (path / OWNER_FILE).unlink()
    remove_if_empty(path)


@dataclass
class Swept:
    """What a sweep did: the mountpoints it removed, and the runs it left alone because it cannot see them."""

    mountpoints: list[str] = field(default_factory=list)
    unseen: list[Verdict] = field(default_factory=list)


def sweep(base: Path, on_stale: Callable[[Path], None] | None = None) -> Swept:
    """Clean up after killed runs under ``base``: the mountpoints removed, the runs left unseen.

    ``on_stale(run_dir)`` is called for each dead run's directory before it is closed
    (to release what else that run recorded there, e.g. its controller leases).
    """
    swept = Swept()
    for run_entry in runs(base):
        run, verdict = run_entry.path, run_entry.verdict
        if verdict is not None and verdict.unseen:
            swept.unseen.append(verdict)
        if verdict is None or not verdict.dead:
            continue
        swept.mountpoints += _remove_mountpoints(run)
        if on_stale is not None:
            on_stale(run)
        close_run_dir(run)
    return swept


def _remove_mountpoints(run: Path) -> list[str]:
    """Lazily unmount what a dead run left mounted in ``run``, then ``rmdir`` its mountpoints."""
    from jumpstarter_driver_ssh_mount.sshfs.mountinfo import mounts_at  # only with something to sweep
    from jumpstarter_driver_ssh_mount.sshfs.unmount import run_unmount

    removed = []
    for mountpoint in sorted(run.iterdir()):
        if not mountpoint.name.startswith(PRIVATE_DIR_PREFIX):
            continue
        if any(e.fstype == "fuse.sshfs" for e in mounts_at(mountpoint)):
            run_unmount(str(mountpoint), lazy=True)
        if not mounts_at(mountpoint):
            with contextlib.suppress(OSError):
                mountpoint.rmdir()
                removed.append(str(mountpoint))
    return removed


def remove_if_empty(path: Path) -> None:
    """``rmdir`` only: a directory that still holds anything (a stale mount) stays."""
    with contextlib.suppress(OSError):
        path.rmdir()


@contextlib.contextmanager
def directory_lock(path: Path, *, wait: bool = True) -> Iterator[bool]:
    """Hold an exclusive ``flock`` on directory ``path`` (no lock file is left behind).

    Yields True once held. With ``wait=False`` it does not wait: it yields False when another
    process holds the lock or the directory cannot be opened.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        if wait:
            raise
        yield False
        return
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            if wait:
                raise
            yield False
            return
        yield True
    finally:
        os.close(fd)  # releases the lock
