"""Copying device files out through a mount, bounded in size and time: ``collect``.

Never follows a symlink, never leaves the mountpoint, never loops through a directory link
the device follows (``matching``), and notes what it skips. Each glob and each file is
handled on its own: an error becomes a note, and the next one is tried.
"""

from __future__ import annotations

import errno
import os
import stat
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from .defaults import COLLECT_MAX_BYTES
from .matching import Matcher

MAX_NOTES_PER_GLOB = 20  # more are counted, not listed
MOUNT_GONE = (errno.ENOTCONN, errno.ECONNABORTED)  # the filesystem itself went away: stop this glob


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
    mountpoint: Path,
    resolve: Callable[[str], Path],
    device_glob: str,
    dest: Path,
    result: Collection,
    *,
    max_bytes: int = COLLECT_MAX_BYTES,
    deadline: float,
) -> None:
    """Copy regular files matching ``device_glob`` (absolute) into ``dest``, keeping device paths.

    Never follows symlinks; stops at ``max_bytes`` in all and at ``deadline``; notes what it
    skips. Never raises: an error (an unreadable directory, EIO, a vanished file, a mount
    that died) is a note about this glob.
    """
    first_note = len(result.notes)
    try:
        _collect_glob(mountpoint, resolve, device_glob, dest, result, max_bytes, deadline)
    except Exception as exc:
        result.notes.append(f"{device_glob}: stopped, {describe_error(exc)}")
    _shorten_notes(result, first_note, device_glob)


def _collect_glob(
    mountpoint: Path,
    resolve: Callable[[str], Path],
    device_glob: str,
    dest: Path,
    result: Collection,
    max_bytes: int,
    deadline: float,
) -> None:
    static, pattern = split_glob(device_glob)
    try:
        base = resolve(static)
    except ValueError as exc:
        result.notes.append(f"{device_glob}: {exc}")
        return
    root = os.path.realpath(mountpoint)
    matcher = Matcher(top=mountpoint)
    matches = matcher.match(base, pattern) if pattern else ([base] if matcher.exists(base) else [])
    for local, error in matcher.errors:
        where = posix_join(static, os.path.relpath(local, base))
        result.notes.append(f"{device_glob}: cannot read {where}: {describe_error(error)}")
    if not matches and not matcher.errors:
        result.notes.append(f"{device_glob}: no match")
    for local in matches:
        device_path = posix_join(static, os.path.relpath(local, base)) if pattern else static
        if time.monotonic() > deadline:
            result.notes.append(f"{device_path}: skipped, collection timed out")
            result.cut("it timed out")
            return
        _copy_one(local, device_path, root, dest, result, max_bytes)


def _shorten_notes(result: Collection, first: int, device_glob: str) -> None:
    """Keep at most ``MAX_NOTES_PER_GLOB`` of one glob's notes, and say how many more there were."""
    extra = len(result.notes) - first - MAX_NOTES_PER_GLOB
    if extra > 0:
        del result.notes[first + MAX_NOTES_PER_GLOB :]
        result.notes.append(f"{device_glob}: {extra} more notes like these")


def describe_error(exc: BaseException) -> str:
    """An error in a few words: ``Permission denied``, ``Input/output error``, or its class and text."""
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def _copy_one(local: Path, device_path: str, root: str, dest: Path, result: Collection, max_bytes: int) -> None:
    """Copy one matched file into ``dest`` if it is a regular file inside ``root`` that fits the cap.

    An error is a note; only a mount that went away raises (the rest of the glob would fail alike).
    """
    try:
        _copy_checked(local, device_path, root, dest, result, max_bytes)
    except OSError as exc:
        if exc.errno in MOUNT_GONE:
            raise
        result.notes.append(f"{device_path}: skipped, {describe_error(exc)}")


def _copy_checked(local: Path, device_path: str, root: str, dest: Path, result: Collection, max_bytes: int) -> None:
    info = local.lstat()
    if stat.S_ISLNK(info.st_mode):
        result.notes.append(f"{device_path}: skipped, a symlink (not followed)")
        return
    if not stat.S_ISREG(info.st_mode):
        return
    if not os.path.realpath(local).startswith(root + os.sep):
        result.notes.append(f"{device_path}: skipped, outside the mount")
        return
    if result.bytes + info.st_size > max_bytes:
        result.notes.append(f"{device_path}: skipped, {info.st_size} bytes would pass the {max_bytes}-byte cap")
        result.cut(f"the {max_bytes}-byte cap")
        return
    try:
        data = local.read_bytes()
    except OSError as exc:
        if exc.errno in MOUNT_GONE:
            raise
        result.notes.append(f"{device_path}: skipped, unreadable ({describe_error(exc)})")
        return
    target = dest / device_path.lstrip("/")
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(data)
    result.files.append(target)
    result.bytes += len(data)


def split_glob(device_glob: str) -> tuple[str, str]:
    """``/var/log/*.log`` -> (``/var/log``, ``*.log``): the directory part without wildcards, the rest."""
    parts = device_glob.strip("/").split("/")
    for i, part in enumerate(parts):
        if any(c in part for c in "*?["):
            return "/" + "/".join(parts[:i]), "/".join(parts[i:])
    return "/" + "/".join(parts), ""


def posix_join(a: str, b: str) -> str:
    return a.rstrip("/") + "/" + b.replace(os.sep, "/") if b != "." else a


def run_bounded(work: Callable[[], None], timeout: float) -> str | None:
    """Run ``work`` in a thread; None once it finished, else what went wrong.

    After ``timeout`` the thread is abandoned (it is a daemon). Nothing it raises leaves it:
    an exception is returned as text.
    """
    failures: list[str] = []

    def guarded() -> None:
        try:
            work()
        except BaseException as exc:  # the thread's end: report it, never let it escape
            failures.append(describe_error(exc))

    thread = threading.Thread(target=guarded, name="jmp-mount-collect", daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        return f"did not finish within {timeout:g}s (device not answering?)"
    return f"failed: {failures[0]}" if failures else None
