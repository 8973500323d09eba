"""Copying device files out through a ``DeviceFS``, bounded in size and time: ``collect``.

Never follows a symlink, never leaves the mounted directory, never loops through a directory
link the device follows (``matching``), and notes what it skips. Each glob and each file is
handled on its own: an error becomes a note, and the next one is tried.
"""

from __future__ import annotations

import errno
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from jumpstarter_driver_ssh_mount.common.defaults import COLLECT_MAX_BYTES
from jumpstarter_driver_ssh_mount.devicefiles.boundedread import ReadStopped, copy_at_most
from jumpstarter_driver_ssh_mount.devicefiles.bulkfs import prefetched
from jumpstarter_driver_ssh_mount.devicefiles.devicepaths import shown
from jumpstarter_driver_ssh_mount.devicefiles.fs import DeviceFS
from jumpstarter_driver_ssh_mount.devicefiles.matching import Matcher

MAX_NOTES_PER_GLOB = 20  # more are counted, not listed
MOUNT_GONE = (errno.ENOTCONN, errno.ECONNABORTED)  # the filesystem itself went away: stop this glob
COLLECT_THREAD = "jmp-mount-collect"  # the name of the thread ``run_bounded`` starts


@dataclass(frozen=True)
class Reading:
    """The bounds of one collection: its byte cap, its deadline, and whether its caller gave up."""

    max_bytes: int
    deadline: float
    stop: threading.Event = field(default_factory=threading.Event)

    def should_stop(self) -> bool:
        """True once the deadline has passed or the caller gave up: stop before the next read."""
        return self.stop.is_set() or time.monotonic() > self.deadline


@dataclass
class Collection:
    """What ``collect`` copied (local paths) and what it left out, and why.

    ``cut_short`` says why files were left out that would have been copied without the
    byte cap or the time limit.
    """

    files: list[Path] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    bytes: int = 0
    cut_short: list[str] = field(default_factory=list)

    def cut(self, reason: str) -> None:
        """Record (once) that the collection was cut short for ``reason``."""
        if reason not in self.cut_short:
            self.cut_short.append(reason)


def collect(
    fs: DeviceFS,
    top: str,
    resolve: Callable[[str], str],
    device_glob: str,
    dest: Path,
    result: Collection,
    *,
    max_bytes: int = COLLECT_MAX_BYTES,
    deadline: float,
    stop: threading.Event | None = None,
) -> None:
    """Copy regular files matching ``device_glob`` (absolute) on ``fs`` into ``dest``, keeping device paths.

    ``top`` is the device directory ``fs`` serves; ``resolve`` checks that a device path is below it.

    Never follows symlinks; reads at most ``max_bytes`` in all (counting what is read, not the
    sizes the device reports) and stops at ``deadline`` or once ``stop`` is set, between two
    chunks of a file; notes what it skips. Copies keep the device file's permission bits, in
    0700 directories. Never raises: an error (an unreadable directory, EIO, a vanished file,
    a mount that died) is a note about this glob.
    """
    reading = Reading(max_bytes, deadline, stop or threading.Event())
    first_note = len(result.notes)
    try:
        _collect_glob(fs, top, resolve, device_glob, dest, result, reading)
    except Exception as exc:
        result.notes.append(f"{shown(device_glob)}: stopped, {describe_error(exc)}")
    _shorten_notes(result, first_note, device_glob)


def _collect_glob(
    fs: DeviceFS,
    top: str,
    resolve: Callable[[str], str],
    device_glob: str,
    dest: Path,
    result: Collection,
    reading: Reading,
) -> None:
    static, pattern = split_glob(device_glob)
    try:
        base = resolve(static)
    except ValueError as exc:
        result.notes.append(f"{shown(device_glob)}: {shown(str(exc))}")
        return
    matcher = Matcher(fs, top=top)
    matches = matcher.match(base, pattern) if pattern else ([base] if matcher.exists(base) else [])
    for where, error in matcher.errors:
        result.notes.append(f"{shown(device_glob)}: cannot read {shown(where)}: {describe_error(error)}")
    if not matches and not matcher.errors:
        result.notes.append(f"{shown(device_glob)}: no match")
    if matches and time.monotonic() < reading.deadline:  # one script for them all where the backend can
        fs = prefetched(fs, matches, reading.max_bytes - result.bytes, reading.deadline - time.monotonic())
    for device_path in matches:
        if reading.stop.is_set():
            return
        if time.monotonic() > reading.deadline:
            result.notes.append(f"{shown(device_path)}: skipped, collection timed out")
            result.cut("it timed out")
            return
        _copy_one(fs, device_path, dest, result, reading)


def _shorten_notes(result: Collection, first: int, device_glob: str) -> None:
    """Keep at most ``MAX_NOTES_PER_GLOB`` of one glob's notes, and say how many more there were."""
    extra = len(result.notes) - first - MAX_NOTES_PER_GLOB
    if extra > 0:
        del result.notes[first + MAX_NOTES_PER_GLOB :]
        result.notes.append(f"{shown(device_glob)}: {extra} more notes like these")


def describe_error(exc: BaseException) -> str:
    """An error in a few words: ``Permission denied``, ``Input/output error``, or its class and text."""
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def _copy_one(fs: DeviceFS, device_path: str, dest: Path, result: Collection, reading: Reading) -> None:
    """Copy one matched file into ``dest`` if it is a regular file inside the mounted directory that fits the cap.

    An error is a note; only a mount that went away raises (the rest of the glob would fail alike).
    """
    try:
        _copy_checked(fs, device_path, dest, result, reading)
    except OSError as exc:
        if exc.errno in MOUNT_GONE:
            raise
        result.notes.append(f"{shown(device_path)}: skipped, {describe_error(exc)}")


def _copy_checked(fs: DeviceFS, device_path: str, dest: Path, result: Collection, reading: Reading) -> None:
    info = fs.lstat(device_path)
    if info.is_symlink:
        result.notes.append(f"{shown(device_path)}: skipped, a symlink (not followed)")
        return
    if not info.is_regular:
        return
    if not fs.contains(device_path):
        result.notes.append(f"{shown(device_path)}: skipped, outside the mount")
        return
    left, cap = reading.max_bytes - result.bytes, reading.max_bytes
    if info.size > left:  # the device's claim is enough to skip it; never enough to read it whole
        result.notes.append(f"{shown(device_path)}: skipped, {info.size} bytes would pass the {cap}-byte cap")
        result.cut(f"the {cap}-byte cap")
        return
    target = dest / device_path.lstrip("/")
    if target in result.files:  # matched by an earlier glob of this collection
        return
    make_private_dirs(target.parent)
    if os.path.lexists(target):  # left by an earlier collection into the same place: replaced
        target.unlink()
    try:
        copied = copy_at_most(fs, device_path, target, left, reading.should_stop)
    except ReadStopped:
        if time.monotonic() > reading.deadline:
            result.notes.append(f"{shown(device_path)}: skipped, collection timed out while reading it")
            result.cut("it timed out")
        return
    except OSError as exc:
        if exc.errno in MOUNT_GONE:
            raise
        result.notes.append(f"{shown(device_path)}: skipped, unreadable ({describe_error(exc)})")
        return
    if copied is None:
        result.notes.append(
            f"{shown(device_path)}: skipped, it held more than the {left} bytes left of the {cap}-byte cap "
            f"(its size said {info.size})"
        )
        result.cut(f"the {cap}-byte cap")
        return
    result.files.append(target)
    result.bytes += copied[0]


def make_private_dirs(path: Path) -> None:
    """Create ``path`` and its missing parents, each 0700 (``mkdir(parents=True)`` gives parents the umask's mode)."""
    missing = []
    while not path.is_dir():
        missing.append(path)
        if path.parent == path:
            break
        path = path.parent
    for directory in reversed(missing):
        try:
            directory.mkdir(mode=0o700)
        except FileExistsError:
            if not directory.is_dir():
                raise


def split_glob(device_glob: str) -> tuple[str, str]:
    """``/var/log/*.log`` -> (``/var/log``, ``*.log``): the directory part without wildcards, the rest."""
    parts = device_glob.strip("/").split("/")
    for i, part in enumerate(parts):
        if any(c in part for c in "*?["):
            return "/" + "/".join(parts[:i]), "/".join(parts[i:])
    return "/" + "/".join(parts), ""


def posix_join(a: str, b: str) -> str:
    return a.rstrip("/") + "/" + b.replace(os.sep, "/") if b != "." else a


def run_bounded(work: Callable[[threading.Event], None], timeout: float) -> str | None:
    """Run ``work(stop)`` in a thread; None once it finished, else what went wrong.

    After ``timeout`` the thread is abandoned (it is a daemon) and ``stop`` is set: ``work``
    checks it between files and between chunks of a file, so it stops reading at its next
    chunk (a read the device never answers ends with the connection's keep-alive bound).
    Nothing it raises leaves it: an exception is returned as text.
    """
    failures: list[str] = []
    stop = threading.Event()

    def guarded() -> None:
        try:
            work(stop)
        except BaseException as exc:  # the thread's end: report it, never let it escape
            failures.append(describe_error(exc))

    thread = threading.Thread(target=guarded, name=COLLECT_THREAD, daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        stop.set()
        return f"did not finish within {timeout:g}s (device not answering?)"
    return f"failed: {failures[0]}" if failures else None
