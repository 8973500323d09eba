"""Choosing, checking and removing local mountpoints.

Directories made here are private (0700) and removed with ``rmdir`` only: nothing in
this project deletes recursively, so nothing can ever walk through a live mount.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from jumpstarter_driver_ssh_mount.common.defaults import PRIVATE_DIR_PREFIX
from jumpstarter_driver_ssh_mount.common.errors import MountpointError
from jumpstarter_driver_ssh_mount.sshfs.mountinfo import is_mountpoint


class Mountpoint:
    """A checked local directory to mount on, remembering which directories it created."""

    def __init__(self, path: Path, created: list[Path]) -> None:
        self.path = path
        self._created = created

    @property
    def created(self) -> bool:
        """True when the mountpoint directory itself was made by us."""
        return bool(self._created) and self._created[-1] == self.path

    @classmethod
    def prepare(
        cls, path: str | os.PathLike[str] | None, *, parent: str | os.PathLike[str] | None = None
    ) -> Mountpoint:
        """Check ``path`` (or make a private directory in ``parent``/the temp dir when None).

        Raises ``MountpointError`` naming the problem and the fix when ``path`` is a file,
        is already mounted, or is a directory that is not empty.
        """
        if path is None:
            private = Path(tempfile.mkdtemp(prefix=PRIVATE_DIR_PREFIX, dir=parent))  # mode 0700
            return cls(private, [private])
        target = Path(os.path.realpath(os.fspath(path)))
        if is_mountpoint(target):
            raise MountpointError(
                f"mountpoint {target} is already mounted; unmount it first (j mount --umount {target})"
            )
        if target.exists() and not target.is_dir():
            raise MountpointError(f"mountpoint {target} is a file, not a directory; choose a directory")
        if target.is_dir():
            try:
                with os.scandir(target) as entries:  # closed at once, not when collected
                    empty = not any(entries)
                if not empty:
                    raise MountpointError(
                        f"mountpoint {target} is not empty; choose an empty directory so nothing is hidden"
                    )
            except PermissionError as exc:
                raise MountpointError(f"mountpoint {target} is not readable: {exc.strerror}") from None
            return cls(target, [])
        return cls(target, _make_dirs(target))

    def release(self) -> None:
        """Remove the directories we created, deepest first, with ``rmdir`` only."""
        while self._created:
            directory = self._created.pop()
            try:
                os.rmdir(directory)
            except FileNotFoundError:
                pass
            except OSError:
                self._created.clear()  # not empty or still mounted: leave it and its parents alone


def _make_dirs(target: Path) -> list[Path]:
    missing = []
    for directory in [target, *target.parents]:
        if directory.exists():
            break
        missing.append(directory)
    created: list[Path] = []
    try:
        for directory in reversed(missing):
            os.mkdir(directory, 0o700)
            created.append(directory)
    except OSError as exc:
        for directory in reversed(created):
            os.rmdir(directory)
        raise MountpointError(f"cannot create mountpoint {target}: {exc.strerror}; choose a writable place") from None
    return created
