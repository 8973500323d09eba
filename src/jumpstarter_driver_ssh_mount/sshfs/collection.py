"""Copying device files out through a mount, bounded in size and time: ``collect``.

Never follows a symlink, never leaves the mountpoint, never loops through a directory link
the device follows (``globbing``), and notes what it skips.
"""

from __future__ import annotations

import os
import stat
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from .defaults import COLLECT_MAX_BYTES
from .globbing import glob_device


@dataclass
class Collection:
    """What ``collect`` copied (local paths) and what it left out, and why."""

    files: list[Path] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    bytes: int = 0


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

    Never follows symlinks; stops at ``max_bytes`` in all and at ``deadline``; notes what it skips.
    """
    static, pattern = split_glob(device_glob)
    try:
        base = resolve(static)
    except ValueError as exc:
        result.notes.append(f"{device_glob}: {exc}")
        return
    root = os.path.realpath(mountpoint)
    matches = sorted(glob_device(base, pattern, mountpoint)) if pattern else ([base] if os.path.lexists(base) else [])
    if not matches:
        result.notes.append(f"{device_glob}: no match")
    for local in matches:
        device_path = posix_join(static, os.path.relpath(local, base)) if pattern else static
        if time.monotonic() > deadline:
            result.notes.append(f"{device_path}: skipped, collection timed out")
            return
        _copy_one(local, device_path, root, dest, result, max_bytes)


def _copy_one(local: Path, device_path: str, root: str, dest: Path, result: Collection, max_bytes: int) -> None:
    """Copy one matched file into ``dest`` if it is a regular file inside ``root`` that fits the cap."""
    try:
        info = local.lstat()
    except OSError as exc:
        result.notes.append(f"{device_path}: skipped, {exc.strerror}")
        return
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
        return
    try:
        data = local.read_bytes()
    except OSError as exc:
        result.notes.append(f"{device_path}: skipped, unreadable ({exc.strerror})")
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


def run_bounded(work: Callable[[], None], timeout: float) -> bool:
    """Run ``work`` in a thread; False if it did not finish within ``timeout`` (it is abandoned)."""
    thread = threading.Thread(target=work, name="jmp-mount-collect", daemon=True)
    thread.start()
    thread.join(timeout)
    return not thread.is_alive()
