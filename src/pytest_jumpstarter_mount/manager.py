"""``MountManager``: the plugin's state in one pytest process, registered as a plugin object.

It holds the settings, the device client, the live mounts and the private mountpoint
directory; its methods are the hook implementations around tests (header, restore
markers, preserve/restore, end-of-session cleanup). Every mount the plugin makes goes
through ``MountManager.mounted()``.
"""

from __future__ import annotations

import atexit
import functools
import logging
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from jumpstarter_driver_ssh_mount.signals import SignalsAsInterrupt
from pytest_jumpstarter_mount.config.backendchoice import BackendChoice
from pytest_jumpstarter_mount.config.marker import NO_MARKER, MarkerSpec
from pytest_jumpstarter_mount.config.settings import NO_DEVICE, SOURCES_HELP, Settings
from pytest_jumpstarter_mount.config.transportchoice import describe_transport
from pytest_jumpstarter_mount.reporting.output import announce, announce_device
from pytest_jumpstarter_mount.sources.failfast import DeviceAvailability

if TYPE_CHECKING:
    from jumpstarter_driver_ssh_mount import DeviceFiles
    from jumpstarter_driver_ssh_mount.client import SSHMountClient
    from pytest_jumpstarter_mount.pertest.restoreguard import RestoreGuard
    from pytest_jumpstarter_mount.sources.farm import DeviceFarm
    from pytest_jumpstarter_mount.sources.sharedconnection import SharedConnection

logger = logging.getLogger("pytest_jumpstarter_mount")

manager_key = pytest.StashKey["MountManager"]()
item_mounts_key = pytest.StashKey[list["DeviceFiles"]]()


class MountManager:
    """Everything the plugin holds in one pytest process: settings, device, live mounts, its directory."""

    def __init__(self, config: pytest.Config, settings: Settings) -> None:
        self.config = config
        self.settings = settings
        self.live: list[DeviceFiles] = []
        self.mount_client: SSHMountClient | None = None  # set once a test needed the device
        self.notices: list[str] = []  # what the sweep at start has to say, for the report header
        self.backends = BackendChoice(settings.backend)  # sshfs, or SFTP where FUSE does not work (auto)
        # a plugin object: tests error at once when the device is not (or none is configured)
        self.availability = DeviceAvailability(NO_DEVICE if settings.source is None else None)
        self._lock = threading.Lock()
        self._run_dir: Path | None = None
        self._signals = SignalsAsInterrupt()
        self._atexit_registered = False
        workerinput = getattr(config, "workerinput", None) or {}
        self.worker_id: str = workerinput.get("workerid", "main")
        self.run_id: str = str(workerinput.get("testrunuid", os.urandom(6).hex()))[:12]

    @cached_property
    def farm(self) -> DeviceFarm:
        """This process's controller lease, if it takes one (a plugin object once a device source is set)."""
        from pytest_jumpstarter_mount.sources.farm import DeviceFarm

        return DeviceFarm(self)

    @cached_property
    def connection(self) -> SharedConnection:
        """The device's one ssh connection for ``device_run`` and the mounts' bulk file work."""
        from pytest_jumpstarter_mount.sources.sharedconnection import SharedConnection

        return SharedConnection(self.settings)

    def close_connection(self) -> None:
        """End the shared connection if one was made (before the device client: a forward may carry it)."""
        if "connection" in self.__dict__:
            self.connection.close()

    @cached_property
    def guard(self) -> RestoreGuard:
        """The restore journal: what a test changed outlives this process until it is put back."""
        from pytest_jumpstarter_mount.pertest.restoreguard import RestoreGuard

        return RestoreGuard(self)

    # -- hooks ----------------------------------------------------------------------
    def pytest_report_header(self) -> list[str]:
        """The sweep's notices, and where mounts come from: device source, remote path, scope."""
        lines = [*self.notices, *(self.farm.header if "farm" in self.__dict__ else ())]
        s = self.settings
        if s.source is not None:
            lines.append(f"jumpstarter mount: device: {s.describe_source()}; remote: {s.remote}; scope: {s.scope}")
            lines.append(f"jumpstarter mount: {describe_transport(s.transport, s.options, s.insecure)}")
            lines += filter(None, [self.backends.header()])
        else:
            lines.append(f"jumpstarter mount: device: none configured; the tests that use it error: {SOURCES_HELP}")
        return lines

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self) -> None:
        """After pytest's own teardown: unmount whatever is left (an interrupted run), remove dirs.

        The xdist controller also sweeps, so a worker that was killed leaves nothing behind.
        """
        self.unmount_all()
        if self.worker_id == "main" and self.settings.source is not None:  # no source: nothing was mounted
            self.sweep()

    # -- the device -----------------------------------------------------------------
    @contextmanager
    def device(self) -> Iterator[Any]:
        """The device's root client while the context lasts; a source that fails fails the test."""
        from pytest_jumpstarter_mount.reporting.output import one_copy_of_client_logs
        from pytest_jumpstarter_mount.sources.rootclient import DeviceSourceError, open_device

        problem = None
        try:
            with open_device(self.settings, self.farm) as device:
                one_copy_of_client_logs(device.client)
                if device.description != self.settings.describe_source():  # the header could not say it
                    announce_device(self.config, self.worker_id, device.description)
                try:
                    yield device.client
                finally:
                    self.close_connection()
        except DeviceSourceError as exc:
            problem = self.availability.device_failed(str(exc))
        if problem:
            pytest.fail(problem, pytrace=False)

    def mount_driver(self, root: Any) -> SSHMountClient:
        """The ``SSHMountClient`` at ``--jmp-mount-driver`` under ``root``, kept for later mounts."""
        from pytest_jumpstarter_mount.sources.rootclient import DeviceSourceError, find_mount_driver

        try:
            self.mount_client = find_mount_driver(root, self.settings.driver)
        except DeviceSourceError as exc:
            problem = self.availability.device_failed(str(exc))
        else:
            self.guard.device_ready(self.mount_client)  # what killed runs left changed goes back first
            return self.mount_client
        pytest.fail(problem, pytrace=False)

    # -- the one mount path ---------------------------------------------------------
    @contextmanager
    def mounted(
        self,
        client: SSHMountClient,
        spec: MarkerSpec = NO_MARKER,
        *,
        request: pytest.FixtureRequest | None = None,
    ) -> Iterator[DeviceFiles]:
        """DeviceFiles the device for the ``with`` block: every mount the plugin makes comes from here.

        The device path is ``spec.remote``, else ``--jmp-mount-remote``; the options are
        ``--jmp-mount-option`` then ``spec.options``, as ``pytest_jmp_mount_options`` leaves
        them; the transport and cache mode are the spec's, else the settings'; the host key is
        verified unless ``--jmp-mount-insecure``. The mount is tracked
        as live (an interrupted run unmounts it) and ``pytest_jmp_mount_ready`` runs before
        it is handed out. On exit ``pytest_jmp_mount_teardown`` runs, then it is unmounted,
        whatever happened. A mount that cannot be made fails the test, the reason first, then the
        path; when no later mount can succeed either (see ``failfast``), later tests error at once, in short.
        What went otherwise than asked (``DeviceFiles.warnings``) becomes a ``JumpstarterMountWarning``.
        """
        from pytest_jumpstarter_mount.reporting.notices import warn_mount

        remote = spec.remote or self.settings.remote
        options = [*self.settings.options, *spec.options]
        self.config.hook.pytest_jmp_mount_options(config=self.config, remote_path=remote, options=options)
        transport = spec.transport or self.settings.transport
        mount = self._start(client, remote, options, transport, spec.cache or self.settings.cache, spec.backend)
        self.guard.attach(client, mount)
        seen = 0
        try:
            seen = warn_mount(mount)
            self.config.hook.pytest_jmp_mount_ready(mount=mount, request=request)
            yield mount
        finally:
            try:
                self._release(mount)
            finally:
                warn_mount(mount, seen)

    def _start(
        self, client: SSHMountClient, remote: str, options: list[str], transport: str, cache: str, asked: str | None
    ) -> DeviceFiles:
        from jumpstarter_driver_ssh_mount import MountError
        from pytest_jumpstarter_mount.reporting.output import say_mount
        from pytest_jumpstarter_mount.runstate.mountdir import MountDirError
        from pytest_jumpstarter_mount.sources.failfast import session_wide

        self.availability.check_mount()
        self._arm()
        started = time.monotonic()
        files = functools.partial(client.files, remote, transport=transport, insecure=self.settings.insecure)
        files = functools.partial(files, extra_args=options, cache=cache, timeout=self.settings.timeout)
        try:  # logs "mounted ... in N s" itself
            say = functools.partial(announce, self.config)
            mount = self.backends.open(functools.partial(files, mount_dir=self.mount_dir()), asked, say)
        except (MountError, MountDirError) as exc:  # the reason first, so that pytest's short summary shows it
            problem = f"{exc} (jumpstarter mount of {remote})"
            if session_wide(exc):
                self.availability.mount_failed(str(exc))
        else:
            from pytest_jumpstarter_mount.reporting.distance import tell_distance

            mount.read_in_bulk(self.connection.runner(client))  # many files: one script over the shared ssh
            tell_distance(self.config, mount)
            with self._lock:
                self.live.append(mount)
            say_mount(self.config, "mounted", mount, time.monotonic() - started)
            return mount
        pytest.fail(problem, pytrace=False)

    def _release(self, mount: DeviceFiles) -> None:
        """Teardown hook, then unmount (even if the hook fails)."""
        from pytest_jumpstarter_mount.reporting.output import say_mount

        try:
            if mount.is_mounted():
                self.config.hook.pytest_jmp_mount_teardown(mount=mount)
        finally:
            try:
                started = time.monotonic()
                mount.unmount()  # logs "unmounted ... in N s" itself
                say_mount(self.config, "unmounted", mount, time.monotonic() - started)
            finally:
                with self._lock:
                    if mount in self.live:
                        self.live.remove(mount)

    def note_use(self, item: pytest.Item, mount: DeviceFiles) -> DeviceFiles:
        """Record that ``item`` uses ``mount`` (for its restores and failure report)."""
        item.stash.setdefault(item_mounts_key, []).append(mount)
        return mount

    def used_mounts(self, item: pytest.Item) -> list[DeviceFiles]:
        """The mounts a test used: ``remote_fs`` and those behind ``remote_path``."""
        found = list(item.stash.get(item_mounts_key, None) or ())
        fs = getattr(item, "funcargs", {}).get("remote_fs")
        if fs is not None and fs not in found:
            found.insert(0, fs)
        return found

    # -- directories and cleanup ----------------------------------------------------
    def mount_dir(self) -> Path:
        """This process's private mountpoint directory (made on first use)."""
        from pytest_jumpstarter_mount.runstate.mountdir import default_base, run_dir

        if self._run_dir is None:
            self._run_dir = run_dir(self.settings.dir or default_base(), self.run_id, self.worker_id)
        return self._run_dir

    def sweep(self) -> None:
        """Clean up what killed runs left in the mount directory and this user's known-hosts folders (ours only).

        The lines for the report header come from the sweep at start (``pytest_configure``).
        """
        from pytest_jumpstarter_mount.runstate.mountdir import default_base
        from pytest_jumpstarter_mount.runstate.stale import sweep_left

        self.notices = sweep_left(self.settings.dir or default_base(), self.farm.release_left)

    def unmount_all(self) -> None:
        """Unmount every live mount (an interrupted run, or the atexit backstop); never raises."""
        with self._lock:
            left, self.live = list(self.live), []
        for mount in reversed(left):
            try:
                mount.unmount()
            except Exception as exc:
                logger.warning("unmounting %s failed: %s", mount.where, exc)
        self.close_connection()  # after the mounts: unmounting puts preserved files back through it
        if self._run_dir is not None:
            from pytest_jumpstarter_mount.runstate.mountdir import close_run_dir, remove_if_empty
            from pytest_jumpstarter_mount.sources.leases import forget_released

            forget_released(self._run_dir)
            close_run_dir(self._run_dir)
            remove_if_empty(self._run_dir.parent)  # the per-user base too, when no other run uses it
            self._run_dir = None  # made again if another mount comes

    def close(self) -> None:
        """The config's cleanup: unmount what is left, put the signal handlers back."""
        self.unmount_all()
        self._signals.restore()

    def _arm(self) -> None:
        """From the first mount on: SIGTERM/SIGHUP tear down in order, atexit as a backstop."""
        self._signals.install()
        if not self._atexit_registered:
            atexit.register(self.unmount_all)
            self._atexit_registered = True
