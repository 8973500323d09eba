"""Saving device files and putting them back: ``Snapshot``, through any ``DeviceFS``."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from jumpstarter_driver_ssh_mount.common.errors import RestoreError
from jumpstarter_driver_ssh_mount.devicefiles.boundedread import NotRegularFile, read_at_most
from jumpstarter_driver_ssh_mount.devicefiles.bulkfs import BulkFS, prefetched
from jumpstarter_driver_ssh_mount.devicefiles.devicepaths import shown
from jumpstarter_driver_ssh_mount.devicefiles.fs import DeviceFS


def _refused(device_path: str, why: str) -> RestoreError:
    return RestoreError(f"cannot preserve {shown(device_path)}: {why}")


@dataclass(frozen=True)
class _Saved:
    device_path: str  # as given, for messages and the journal
    full: str  # the absolute device path
    content: bytes | None  # None: the file did not exist
    mode: int | None


class Snapshot:
    """Content, mode and absence of some device files, to put back later with ``restore``."""

    def __init__(self, fs: DeviceFS, files: list[_Saved]) -> None:
        self._fs = fs
        self._files = files

    @classmethod
    def take(
        cls, fs: DeviceFS, resolve: Callable[[str], str], device_paths: Iterable[str], *, max_bytes: int
    ) -> Snapshot:
        """Save each file (``resolve`` maps a path as given to an absolute device path). Directories are refused.

        At most ``max_bytes`` are read in all, counting what is read, not the sizes the device
        reports (``/proc`` files say 0; a file may grow while it is read): more is a RestoreError.
        """
        saved, total = [], 0
        device_paths = list(device_paths)
        view = prefetched(fs, [resolve(path) for path in device_paths], max_bytes)  # one script, where it can
        for device_path in device_paths:
            full = resolve(device_path)
            try:
                info = view.lstat(full)
            except FileNotFoundError:
                saved.append(_Saved(device_path, full, None, None))
                continue
            if not info.is_regular:
                raise _refused(device_path, "not a regular file; preserve files one by one")
            too_big = _refused(device_path, f"the snapshot would exceed {max_bytes} bytes; preserve less")
            if total + info.size > max_bytes:
                raise too_big
            try:
                content, opened = read_at_most(view, full, max_bytes - total)
            except NotRegularFile:
                raise _refused(device_path, "not a regular file; preserve files one by one") from None
            total += len(content)
            if total > max_bytes:
                raise too_big
            saved.append(_Saved(device_path, full, content, opened.permissions))
        return cls(fs, saved)

    @classmethod
    def of(
        cls,
        fs: DeviceFS,
        resolve: Callable[[str], str],
        originals: Iterable[tuple[str, bytes | None, int | None]],
    ) -> Snapshot:
        """A snapshot of files saved earlier (as ``originals`` lists them), to ``restore`` through ``fs``."""
        return cls(fs, [_Saved(path, resolve(path), content, mode) for path, content, mode in originals])

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
        files = list(reversed(self._files))
        done: dict[int, OSError | None] = {}
        if isinstance(self._fs, BulkFS):  # one script for them all; what it did not answer, one by one
            done = self._fs.put_back_many([(f.full, f.content, f.mode) for f in files])
        for index, f in enumerate(files):
            if index in done:
                refused = done[index]
                if refused is not None:
                    failed.append((f.device_path, str(refused.strerror or refused)))
                continue
            try:
                self._put_back(f)
            except OSError as exc:
                failed.append((f.device_path, str(exc.strerror or exc)))
        if failed:
            listed = ", ".join(f"{shown(p)} ({why})" for p, why in failed)
            error = RestoreError(f"could not restore device file(s): {listed}")
            error.failed = tuple(failed)
            raise error

    def _put_back(self, f: _Saved) -> None:
        fs = self._fs
        try:
            now = fs.lstat(f.full)
        except FileNotFoundError:
            now = None
        if f.content is None:
            if now is not None:
                fs.unlink(f.full)
            return
        if now is not None and now.is_symlink:
            fs.unlink(f.full)
        fs.write_bytes(f.full, f.content)
        if f.mode is not None and fs.stat(f.full).permissions != f.mode:
            fs.chmod(f.full, f.mode)
