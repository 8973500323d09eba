"""Chores on device files, whatever backend carries them: snapshot and restore, wait for, collect.

``DeviceFiles`` gives ``Mount`` (sshfs) and ``SftpFiles`` (SFTP) these methods; the work itself
lives in ``snapshot``, ``waiting`` and ``collection``, on the backend's ``DeviceFS`` (``fs``):
device paths in, never a local path. Nothing follows a symlink out of the mounted directory.
Sizes and times are bounded, so a huge log or a frozen device cannot stall a test run.
"""

from __future__ import annotations

import logging
import os
import re
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

import jumpstarter_driver_ssh_mount.devicefiles.reboots as reboots
from jumpstarter_driver_ssh_mount.common.defaults import (
    BOOT_ID_PATH,
    COLLECT_MAX_BYTES,
    COLLECT_TIMEOUT,
    DEFAULT_COME_BACK_TIMEOUT,
    DEFAULT_WAIT_TIMEOUT,
    READ_MANY_MAX_BYTES,
    SNAPSHOT_MAX_BYTES,
    WAIT_MAX_BYTES,
)
from jumpstarter_driver_ssh_mount.common.errors import RestoreError
from jumpstarter_driver_ssh_mount.devicefiles.bulkfs import BulkFS, ScriptRunner
from jumpstarter_driver_ssh_mount.devicefiles.collecting import collect_globs
from jumpstarter_driver_ssh_mount.devicefiles.collection import Collection
from jumpstarter_driver_ssh_mount.devicefiles.devicepaths import (
    OutsideMountError,
    covers,
    device_path,
    relative_to_mount,
)
from jumpstarter_driver_ssh_mount.devicefiles.fs import DeviceFS
from jumpstarter_driver_ssh_mount.devicefiles.readmany import read_many
from jumpstarter_driver_ssh_mount.devicefiles.snapshot import Snapshot
from jumpstarter_driver_ssh_mount.devicefiles.waiting import wait_for
from jumpstarter_driver_ssh_mount.ssh.target import SshfsTarget

logger = logging.getLogger("jumpstarter_driver_ssh_mount")


class PreserveJournal(Protocol):
    """Told of every snapshot ``preserve`` takes and whether it was put back (to outlive the process)."""

    def preserved(self, snapshot: Snapshot) -> None:
        """``snapshot`` was taken, before the files change; raise to refuse it."""

    def restored(self, snapshot: Snapshot, error: RestoreError | None) -> None:
        """``snapshot`` was put back (``error`` None) or could not be (``error`` says which files, why)."""


class DeviceFiles(ABC):
    """Device-file methods for a device directory (``snapshot``, ``preserve``, ``wait_for``, ``collect``).

    A subclass says which directory (``remote_path``), how its files are reached (``fs``, a
    ``DeviceFS``), where that is for messages (``where``), whether they still can be
    (``is_mounted``) and how to let go (``unmount``). Every method takes device paths by one
    rule: absolute is a device path, relative is relative to ``remote_path``; a path outside it
    raises ``OutsideMountError`` (a ValueError) naming the mount that would cover it.
    ``journal``, when set, is told of every preserve and restore.
    """

    #: How the device is reached ("direct", "relay", "forward") and why, for messages.
    transport: str
    transport_note: str | None
    #: What went otherwise than asked (also logged): a fallback taken, a busy mount detached lazily...
    warnings: list[str]

    def __init__(self) -> None:
        self._preserved: list[Snapshot] = []
        self._preserved_lock = threading.Lock()
        self.journal: PreserveJournal | None = None
        #: The device's name in messages (its address as the exporter publishes it), set by the client.
        self.device_name: str = "the device"
        #: The device path of the kernel's boot id (``BOOT_ID_PATH``; another path for devices that keep it elsewhere).
        self.boot_id_path: str = BOOT_ID_PATH
        #: Set by the client: None when the exporter reaches the device's sshd, else why not.
        self.reachable: Callable[[], str | None] | None = None
        #: Set by the client: why the device's host key was last refused (both fingerprints), else None.
        self.key_refused: Callable[[], str | None] | None = None
        self._bulk: BulkFS | None = None

    @property
    @abstractmethod
    def fs(self) -> DeviceFS:
        """The device's files, as the chores reach them."""

    @property
    def remote_path(self) -> str:
        """The device directory these files are below (``target.remote_path``)."""
        return self.target.remote_path

    @property
    @abstractmethod
    def root(self) -> Any:
        """Where ``remote_path`` is seen: a local ``Path`` (a mountpoint) or a ``DevicePath`` (SFTP)."""

    @abstractmethod
    def local_path(self, device_path: str | os.PathLike[str] = "") -> Any:
        """Where ``device_path`` is seen: a local ``Path`` (sshfs) or a ``DevicePath`` (SFTP: no local file)."""

    @abstractmethod
    def __truediv__(self, device_path: str) -> Any:
        """``files / "x"``: the device path ``x`` (absolute, or below ``remote_path``) as a path to use."""

    @property
    @abstractmethod
    def target(self) -> SshfsTarget:
        """Where the connection goes: host, port, user and ``remote_path``."""

    @property
    @abstractmethod
    def where(self) -> str:
        """Where the files are seen, for messages: a mountpoint, or the SFTP session."""

    @property
    @abstractmethod
    def backend(self) -> str:
        """Which backend carries the files: "sshfs" or "sftp"."""

    @abstractmethod
    def is_mounted(self) -> bool:
        """True while the device's files can be reached."""

    @abstractmethod
    def unmount(self, lazy: bool = False) -> None:
        """Put back what is preserved, then let go of the device's files and everything held for them."""

    def read_in_bulk(self, runner: ScriptRunner | None) -> None:
        """Do many-file work (collect, snapshot, restore, ``read_many``) in one device script over ``runner``.

        ``runner`` runs a shell script on the device over an open connection (the pytest plugin
        hands in its shared ssh connection's), where that costs less than file by file (always at a
        distance; next to the device only for many files); None goes back to file by file through ``fs``.
        """
        self._bulk = None if runner is None else BulkFS(self.fs, runner, top=self.remote_path)

    @property
    def chore_fs(self) -> DeviceFS:
        """What the chores read and write through: ``fs``, in bulk where ``read_in_bulk`` was given a runner."""
        return self._bulk if self._bulk is not None else self.fs

    def read_many(self, *device_paths_or_globs: str, max_bytes: int = READ_MANY_MAX_BYTES) -> dict[str, bytes]:
        """The content of many device files at once: each path given, and each regular file a glob matches.

        Paths and globs by the rule of every method (absolute: on the device; relative: below
        ``remote_path``); the keys are absolute device paths. In bulk (``read_in_bulk``), all of
        it costs one device script. At most ``max_bytes`` are read in all, counting what is read;
        a glob never follows a symlink, and neither does a file read (as ``collect``).

        :raises OSError: a file given by name, or matched, could not be read (its errno; ``EFBIG``
            when it would pass ``max_bytes``).
        """
        return read_many(self.fs, self.chore_fs, self.remote_path, self.device_path, device_paths_or_globs, max_bytes)

    def device_path(self, path: str | os.PathLike[str], usage: str = "") -> str:
        """``path`` as an absolute device path, by the rule above (``OutsideMountError`` if not covered)."""
        relative_to_mount(self.remote_path, path, usage)
        return device_path(self.remote_path, path)

    def wait_until_back(self, timeout: float = DEFAULT_COME_BACK_TIMEOUT) -> float:
        """Wait until the device answers through these files again (after a reboot); the seconds waited.

        The host key is checked as on every connection: a device back with a key the exporter
        does not vouch for does not count. ``device_run`` works again once this returns.

        :raises HostKeyError: the device came back with a key nobody vouches for (both fingerprints).
        :raises DeviceUnreachableError: (a ``ConnectError``) no answer within ``timeout``, naming the
            device's address and how long it waited.
        """
        return reboots.wait_until_back(
            self.fs, self.remote_path, timeout, self.device_name, reachable=self.reachable, refused=self.key_refused
        )

    def boot_id(self) -> str | None:
        """The device kernel's boot id (``boot_id_path``), read through this mount; None when this mount
        does not show it or the device does not answer within ``BOOT_ID_READ_TIMEOUT``."""
        if not self.covers(self.boot_id_path):
            return None
        return reboots.read_boot_id(self.fs, self.device_path(self.boot_id_path))

    def covers(self, device_path: str | os.PathLike[str]) -> bool:
        """True when ``device_path`` is inside this mount (the methods would not raise ``OutsideMountError``)."""
        return covers(self.remote_path, device_path)

    def snapshot(self, *device_paths: str, max_bytes: int = SNAPSHOT_MAX_BYTES) -> Snapshot:
        """Save these device files (content, mode, or their absence); ``.restore()`` puts them back."""
        return Snapshot.take(self.chore_fs, self.device_path, device_paths, max_bytes=max_bytes)

    def snapshot_of(self, originals: Sequence[tuple[str, bytes | None, int | None]]) -> Snapshot:
        """A snapshot of files saved earlier (device path, content or None, mode), to ``restore`` here."""
        return Snapshot.of(self.chore_fs, self.device_path, originals)

    def preserve(self, *device_paths: str) -> None:
        """Snapshot these device files now; ``restore_preserved()`` puts them back.

        The pytest plugin restores after each test, pass or fail; otherwise they are
        restored just before ``unmount``.
        """
        try:
            snap = self.snapshot(*device_paths)
        except OutsideMountError as exc:  # suggest the marker's restore=[...] for it
            raise OutsideMountError(exc.device_path, exc.remote_path, f', restore=["{exc.device_path}"]') from None
        if self.journal is not None:
            self.journal.preserved(snap)
        with self._preserved_lock:
            self._preserved.append(snap)

    def restore_preserved(self) -> None:
        """Put back every preserved file (latest first). Raises RestoreError naming failures."""
        with self._preserved_lock:
            snaps, self._preserved = self._preserved, []
        problems = []
        for snap in reversed(snaps):
            error = None
            try:
                snap.restore()
            except RestoreError as exc:
                error = exc
                problems.append(str(exc))
            if self.journal is not None:
                self.journal.restored(snap, error)
        if problems:
            raise RestoreError("; ".join(problems))

    def _restore_before_unmount(self) -> None:
        """Put back what is still preserved while the files can be reached; warn on failure."""
        if self._preserved and self.is_mounted():
            try:
                self.restore_preserved()
            except RestoreError as exc:
                logger.warning("before unmounting %s: %s", self.where, exc)

    def wait_for(
        self,
        device_path: str,
        *,
        exists: bool = True,
        contains: str | re.Pattern[str] | None = None,
        timeout: float = DEFAULT_WAIT_TIMEOUT,
        interval: float = 0.1,
        max_bytes: int = WAIT_MAX_BYTES,
    ) -> str | None:
        """Wait until a device file exists (or not) and, if given, contains a string or regex.

        Returns the file's text when ``contains`` is given: its last ``max_bytes`` bytes at
        most, which is what is searched. Raises WaitTimeoutError showing the last content seen.
        """
        return wait_for(
            self.fs,
            self.device_path(device_path),
            device_path,
            exists=exists,
            contains=contains,
            timeout=timeout,
            interval=interval,
            max_bytes=max_bytes,
        )

    def collect(
        self,
        device_globs: Sequence[str],
        dest: str | os.PathLike[str],
        *,
        max_bytes: int = COLLECT_MAX_BYTES,
        timeout: float = COLLECT_TIMEOUT,
    ) -> Collection:
        """Copy device files matching globs into ``dest``, keeping their device paths.

        An absolute glob is a device glob; a relative one is relative to ``remote_path``.

        Bounded by ``max_bytes`` in all (bytes actually read, whatever sizes the device reports)
        and ``timeout`` (reading stops then, between chunks); copies keep the device files'
        permission bits, in 0700 directories; never follows symlinks; what is
        skipped is listed in the result's ``notes``, why it was cut short in ``cut_short``.
        Each glob is handled on its own: an error is a note and the next glob is still
        collected. Never raises.
        """
        globs = [device_path(self.remote_path, g) for g in device_globs]
        return collect_globs(self, globs, Path(dest), max_bytes=max_bytes, timeout=timeout)
