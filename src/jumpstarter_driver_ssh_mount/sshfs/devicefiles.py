"""Chores on device files through a mount: snapshot and restore, wait for, collect.

Everything here works on local paths inside a mountpoint and never follows a symlink
out of it. Sizes and times are bounded, so a huge log or a frozen device cannot stall
a test run.
"""

from __future__ import annotations

import os
import re
import stat
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from .errors import RestoreError, WaitTimeoutError

SNAPSHOT_MAX_BYTES = 8 * 1024 * 1024  # per snapshot (all its files together)
COLLECT_MAX_BYTES = 20 * 1024 * 1024  # per collection
COLLECT_TIMEOUT = 30.0  # seconds per collection
TAIL_CHARS = 400  # how much of the last content a wait_for timeout shows


@dataclass(frozen=True)
class _Saved:
    device_path: str
    local: Path
    content: bytes | None  # None: the file did not exist
    mode: int | None


class Snapshot:
    """Content, mode and absence of some device files, to put back later with ``restore``."""

    def __init__(self, files: list[_Saved]) -> None:
        self._files = files

    @classmethod
    def take(cls, resolve: Callable[[str], Path], device_paths: Iterable[str], *, max_bytes: int) -> Snapshot:
        """Save each file (``resolve`` maps a device path to its local path). Directories are refused."""
        saved, total = [], 0
        for device_path in device_paths:
            local = resolve(device_path)
            try:
                info = local.lstat()
            except FileNotFoundError:
                saved.append(_Saved(device_path, local, None, None))
                continue
            if not stat.S_ISREG(info.st_mode):
                raise RestoreError(f"cannot preserve {device_path}: not a regular file; preserve files one by one")
            total += info.st_size
            if total > max_bytes:
                raise RestoreError(
                    f"cannot preserve {device_path}: the snapshot would exceed {max_bytes} bytes; preserve less"
                )
            saved.append(_Saved(device_path, local, local.read_bytes(), stat.S_IMODE(info.st_mode)))
        return cls(saved)

    @property
    def device_paths(self) -> list[str]:
        return [f.device_path for f in self._files]

    def restore(self) -> None:
        """Put every file back (content and mode; delete what did not exist). Raises RestoreError
        naming each file that could not be restored, after trying them all."""
        failed = []
        for f in reversed(self._files):
            try:
                if f.content is None:
                    if f.local.is_symlink() or f.local.exists():
                        f.local.unlink()
                    continue
                if f.local.is_symlink():
                    f.local.unlink()
                f.local.write_bytes(f.content)
                if f.mode is not None and stat.S_IMODE(f.local.stat().st_mode) != f.mode:
                    os.chmod(f.local, f.mode)
            except OSError as exc:
                failed.append(f"{f.device_path} ({exc.strerror or exc})")
        if failed:
            raise RestoreError(f"could not restore device file(s): {', '.join(failed)}")


def wait_for(
    local: Path,
    device_path: str,
    *,
    exists: bool = True,
    contains: str | re.Pattern[str] | None = None,
    timeout: float = 30.0,
    interval: float = 0.1,
) -> str | None:
    """Poll ``local`` until it exists (or not, ``exists=False``) and, if given, contains ``contains``.

    Returns the file's text when ``contains`` is given (else None). On timeout raises
    WaitTimeoutError showing the tail of the last content seen.
    """
    if contains is not None and not exists:
        raise ValueError("contains= needs exists=True")
    pattern = re.compile(re.escape(contains)) if isinstance(contains, str) else contains
    deadline = time.monotonic() + timeout
    last: str | None = None
    while True:
        present = os.path.lexists(local)
        if present and pattern is not None:
            try:
                last = local.read_text(errors="replace")
            except OSError:
                last = None
            if last is not None and pattern.search(last):
                return last
        elif present == exists:
            return None
        if time.monotonic() >= deadline:
            break
        time.sleep(min(interval, max(0.0, deadline - time.monotonic())))
    if pattern is not None:
        seen = "the file never appeared" if last is None else f"last content ends: {last[-TAIL_CHARS:]!r}"
        raise WaitTimeoutError(f"{device_path} did not contain {pattern.pattern!r} within {timeout:g}s; {seen}")
    state = "appear" if exists else "disappear"
    raise WaitTimeoutError(f"{device_path} did not {state} within {timeout:g}s")


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
    matches = sorted(base.glob(pattern)) if pattern else ([base] if os.path.lexists(base) else [])
    if not matches:
        result.notes.append(f"{device_glob}: no match")
    for local in matches:
        device_path = posix_join(static, os.path.relpath(local, base)) if pattern else static
        if time.monotonic() > deadline:
            result.notes.append(f"{device_path}: skipped, collection timed out")
            return
        try:
            info = local.lstat()
        except OSError as exc:
            result.notes.append(f"{device_path}: skipped, {exc.strerror}")
            continue
        if stat.S_ISLNK(info.st_mode):
            result.notes.append(f"{device_path}: skipped, a symlink (not followed)")
            continue
        if not stat.S_ISREG(info.st_mode):
            continue
        if not os.path.realpath(local).startswith(root + os.sep):
            result.notes.append(f"{device_path}: skipped, outside the mount")
            continue
        if result.bytes + info.st_size > max_bytes:
            result.notes.append(f"{device_path}: skipped, {info.st_size} bytes would pass the {max_bytes}-byte cap")
            continue
        target = dest / device_path.lstrip("/")
        try:
            data = local.read_bytes()
        except OSError as exc:
            result.notes.append(f"{device_path}: skipped, unreadable ({exc.strerror})")
            continue
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
