"""Saving device files through a mount and putting them back: ``Snapshot``."""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from jumpstarter_driver_ssh_mount.common.errors import RestoreError
from jumpstarter_driver_ssh_mount.devicefiles.boundedread import NotRegularFile, read_at_most
from jumpstarter_driver_ssh_mount.devicefiles.devicepaths import shown


def _refused(device_path: str, why: str) -> RestoreError:
    return RestoreError(f"cannot preserve {shown(device_path)}: {why}")


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
        """Save each file (``resolve`` maps a device path to its local path). Directories are refused.

        At most ``max_bytes`` are read in all, counting what is read, not the sizes the device
        reports (``/proc`` files say 0; a file may grow while it is read): more is a RestoreError.
        """
        saved, total = [], 0
        for device_path in device_paths:
            local = resolve(device_path)
            try:
                info = local.lstat()
            except FileNotFoundError:
                saved.append(_Saved(device_path, local, None, None))
                continue
            if not stat.S_ISREG(info.st_mode):
                raise _refused(device_path, "not a regular file; preserve files one by one")
            too_big = _refused(device_path, f"the snapshot would exceed {max_bytes} bytes; preserve less")
            if total + info.st_size > max_bytes:
                raise too_big
            try:
                content, opened = read_at_most(local, max_bytes - total)
            except NotRegularFile:
                raise _refused(device_path, "not a regular file; preserve files one by one") from None
            total += len(content)
            if total > max_bytes:
                raise too_big
            saved.append(_Saved(device_path, local, content, stat.S_IMODE(opened.st_mode)))
        return cls(saved)

    @classmethod
    def of(cls, resolve: Callable[[str], Path], originals: Iterable[tuple[str, bytes | None, int | None]]) -> Snapshot:
        """A snapshot of files saved earlier (as ``originals`` lists them), to ``restore`` through ``resolve``."""
        return cls([_Saved(path, resolve(path), content, mode) for path, content, mode in originals])

    @property
    def device_paths(self) -> list[str]:
        return [f.device_path for f in self._files]

    @property
    def originals(self) -> list[tuple[str, bytes | None, int | None]]:
        """Each saved file as (device path as given, content or None if it was absent, mode)."""
        return [(f.device_path, f.content, f.mode) for f in self._files]

    def restore(self) -> None:
        """Put every file back (content and mode; delete what did not exist). Raises RestoreError
        naming each file that could not be restored, after trying them all."""
        failed: list[tuple[str, str]] = []
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
                failed.append((f.device_path, str(exc.strerror or exc)))
        if failed:
            listed = ", ".join(f"{shown(p)} ({why})" for p, why in failed)
            error = RestoreError(f"could not restore device file(s): {listed}")
            error.failed = tuple(failed)
            raise error
