"""The pytest11 entry point: options, marker, hooks, fixtures, reporting and guaranteed cleanup.

Thin glue over ``SSHMountClient.mounted()``. Jumpstarter is imported only when a
fixture needs the device (see ``sources``).
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from jumpstarter_driver_ssh_mount.signals import SignalsAsInterrupt

from . import hooks
from .mountdir import MountDirError, close_run_dir, default_base, remove_if_empty, run_dir, sweep
from .settings import Settings, add_options, load_settings

if TYPE_CHECKING:
    from jumpstarter_driver_ssh_mount.client import SSHMountClient
    from jumpstarter_driver_ssh_mount.sshfs import Mount

logger = logging.getLogger("pytest_jumpstarter_mount")
LOGGERS = ("pytest_jumpstarter_mount", "jumpstarter_driver_ssh_mount")
REPORT_SECTION = "jumpstarter mount"

manager_key = pytest.StashKey["MountManager"]()
item_mounts_key = pytest.StashKey[list["Mount"]]()


# -- registration ---------------------------------------------------------------------
def pytest_addoption(parser: pytest.Parser) -> None:
    add_options(parser)


def pytest_addhooks(pluginmanager: pytest.PytestPluginManager) -> None:
    pluginmanager.add_hookspecs(hooks)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "jmp_mount(remote='/path', options=[...], direct=False, collect=[globs], restore=[paths]): give this "
        "test its own mount of a device path (remote_path), collect device files if it fails, restore files after",
    )
    manager = config.stash[manager_key] = MountManager(config, load_settings(config))
    manager.sweep()
    level = {1: logging.INFO}.get(config.get_verbosity(), logging.DEBUG if config.get_verbosity() > 1 else None)
    if level is not None:
        for name in LOGGERS:
            logging.getLogger(name).setLevel(level)


def pytest_unconfigure(config: pytest.Config) -> None:
    manager = config.stash.get(manager_key, None)
    if manager is not None:
        manager.close()


def pytest_report_header(config: pytest.Config) -> list[str]:
    manager = config.stash[manager_key]
    settings = manager.settings
    lines = [manager.notice] if manager.notice else []
    if settings.source is not None:
        lines.append(
            f"jumpstarter mount: device: {settings.describe_source()}; remote: {settings.remote}; "
            f"scope: {settings.scope}{'; direct' if settings.direct else ''}"
        )
    return lines


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        spec = marker_spec(item)
        if spec.restore and "remote_path" not in item.fixturenames:
            item.fixturenames.append("remote_path")  # restoring needs the test's mount


def marker_spec(item: pytest.Item) -> MarkerSpec:
    """The item's checked ``jmp_mount`` marker arguments (empty when unmarked)."""
    marker = item.get_closest_marker("jmp_mount")
    return MarkerSpec() if marker is None else MarkerSpec.from_marker(marker, item.nodeid)


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session) -> None:
    """After pytest's own teardown: unmount whatever is left (an interrupted run), remove dirs.

    The xdist controller also sweeps, so a worker that was killed leaves nothing behind.
    """
    manager = session.config.stash[manager_key]
    manager.unmount_all()
    if manager.worker_id == "main":
        manager.sweep()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[Any]:
    report = yield
    if report.failed:
        manager = item.config.stash[manager_key]
        mounts = mounts_used_by(item)
        if mounts:
            report.sections.append((REPORT_SECTION, "\n\n".join(describe(m) for m in mounts)))
        globs = manager.settings.collect + marker_spec(item).collect
        if globs and (mounts or manager.mount_client is not None):
            from .chores import collect_failed  # only for failures: keeps plugin start-up light

            collect_failed(item, report, globs, mounts, manager.mount_client, manager.settings, manager.mount_dir)
    return report


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Iterator[None]:
    restore = marker_spec(item).restore
    if restore:
        from .chores import preserve

        preserve(mounts_used_by(item), restore, item.nodeid)
    return (yield)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None) -> Iterator[None]:
    """Put preserved device files back before the test's mounts are torn down; fail if that fails."""
    mounts = mounts_used_by(item)
    if mounts:
        from .chores import restore

        problems = restore(mounts)
    else:
        problems = []
    result = yield
    if problems:
        raise RestoreFailed("; ".join(problems))
    return result


class RestoreFailed(Exception):
    """Preserved device files could not be restored after a test."""


# -- state of one pytest process ------------------------------------------------------
class MountManager:
    """Everything the plugin holds in one pytest process: settings, live mounts, its directory."""

    def __init__(self, config: pytest.Config, settings: Settings) -> None:
        self.config = config
        self.settings = settings
        self.live: list[Mount] = []
        self._lock = threading.Lock()
        self._run_dir: Path | None = None
        self._signals = SignalsAsInterrupt()
        self._atexit_registered = False
        self.mount_client: SSHMountClient | None = None  # set once a test needed the device
        self.notice: str | None = None
        workerinput = getattr(config, "workerinput", None) or {}
        self.worker_id: str = workerinput.get("workerid", "main")
        self.run_id: str = str(workerinput.get("testrunuid", os.urandom(6).hex()))[:12]

    def sweep(self) -> None:
        """Clean up what killed runs left in the mount directory (ours only), with a one-line notice."""
        base = self.settings.dir or default_base()
        if not base.is_dir():
            return
        try:
            swept = sweep(base)
        except OSError as exc:
            logger.warning("cannot sweep %s: %s", base, exc)
            return
        if swept:
            self.notice = f"jumpstarter mount: cleaned up {len(swept)} stale mountpoint(s) of a killed run in {base}"
            logger.warning(self.notice)

    def mount_dir(self) -> Path:
        """This process's private mountpoint directory (made on first use)."""
        if self._run_dir is None:
            self._run_dir = run_dir(self.settings.dir or default_base(), self.run_id, self.worker_id)
        return self._run_dir

    def mount(
        self,
        request: pytest.FixtureRequest,
        client: SSHMountClient,
        *,
        remote: str,
        options: tuple[str, ...],
        direct: bool,
    ) -> Mount:
        """Mount ``remote`` for ``request``'s scope; its finalizer is registered before the wait."""
        from jumpstarter_driver_ssh_mount.sshfs import MountError

        opts = list(options)
        self.config.hook.pytest_jmp_mount_options(config=self.config, remote_path=remote, options=opts)
        slot: list[Mount] = []
        request.addfinalizer(lambda: self.release(slot))
        self._arm()
        try:  # logs "mounted ... in N s" itself
            mount = client.mounted(
                None,
                remote_path=remote,
                direct=direct,
                extra_args=opts,
                timeout=self.settings.timeout,
                mount_dir=self.mount_dir(),
            )
        except (MountError, MountDirError) as exc:
            problem = f"jumpstarter mount of {remote} failed: {exc}"
        else:
            problem = None
        if problem is not None:
            pytest.fail(problem, pytrace=False)
        with self._lock:
            slot.append(mount)
            self.live.append(mount)
        self.config.hook.pytest_jmp_mount_ready(mount=mount, request=request)
        return mount

    def release(self, slot: list[Mount]) -> None:
        """Finalizer: teardown hook, then unmount (even if the hook fails)."""
        while slot:
            mount = slot.pop()
            try:
                if mount.is_mounted():
                    self.config.hook.pytest_jmp_mount_teardown(mount=mount)
            finally:
                try:
                    mount.unmount()  # logs "unmounted ... in N s" itself
                finally:
                    with self._lock:
                        if mount in self.live:
                            self.live.remove(mount)

    def unmount_all(self) -> None:
        """Unmount every live mount (an interrupted run, or the atexit backstop); never raises."""
        with self._lock:
            left, self.live = list(self.live), []
        for mount in reversed(left):
            try:
                mount.unmount()
            except Exception as exc:
                logger.warning("unmounting %s failed: %s", mount.mountpoint, exc)
        if self._run_dir is not None:
            close_run_dir(self._run_dir)
            remove_if_empty(self._run_dir.parent)  # the per-user base too, when no other run uses it
            self._run_dir = None  # made again if another mount comes

    def close(self) -> None:
        self.unmount_all()
        self._signals.restore()

    def _arm(self) -> None:
        """From the first mount on: SIGTERM/SIGHUP tear down in order, atexit as a backstop."""
        self._signals.install()
        if not self._atexit_registered:
            atexit.register(self.unmount_all)
            self._atexit_registered = True


# -- the marker -----------------------------------------------------------------------
@dataclass(frozen=True)
class MarkerSpec:
    """Checked arguments of ``@pytest.mark.jmp_mount(remote=..., options=[...], direct=...)``."""

    remote: str | None = None
    options: tuple[str, ...] = ()
    direct: bool | None = None
    collect: tuple[str, ...] = ()
    restore: tuple[str, ...] = ()

    @property
    def own_mount(self) -> bool:
        """True when the marker asks for a mount other than ``remote_fs``."""
        return self.remote is not None or bool(self.options) or self.direct is not None

    @classmethod
    def from_marker(cls, marker: pytest.Mark, where: str) -> MarkerSpec:
        def bad(why: str) -> pytest.UsageError:
            return pytest.UsageError(f"{where}: @pytest.mark.jmp_mount: {why}")

        kwargs = dict(marker.kwargs)
        if len(marker.args) > 1 or (marker.args and "remote" in kwargs):
            raise bad("give one device path, as remote='/path'")
        if marker.args:
            kwargs["remote"] = marker.args[0]
        unknown = set(kwargs) - {"remote", "options", "direct", "collect", "restore"}
        if unknown:
            raise bad(
                f"unknown argument(s) {', '.join(sorted(unknown))}; use remote, options, direct, collect, restore"
            )
        remote = kwargs.get("remote")
        if remote is not None and (not isinstance(remote, str) or not remote.startswith("/")):
            raise bad(f"remote must be an absolute device path, got {remote!r}")
        options = kwargs.get("options", ())
        if isinstance(options, str) or not all(isinstance(o, str) for o in options):
            raise bad(f"options must be a list of strings, got {options!r}")
        if any(not o.strip() or o.lstrip().startswith("-") for o in options):
            raise bad(f"options must be sshfs options such as 'reconnect', not flags: {options!r}")
        direct = kwargs.get("direct")
        if direct is not None and not isinstance(direct, bool):
            raise bad(f"direct must be True or False, got {direct!r}")
        paths = {}
        for name in ("collect", "restore"):
            value = kwargs.get(name, ())
            if isinstance(value, str) or not all(isinstance(p, str) and p.startswith("/") for p in value):
                raise bad(f"{name} must be a list of absolute device paths, got {value!r}")
            paths[name] = tuple(value)
        return cls(remote=remote, options=tuple(options), direct=direct, **paths)


# -- fixtures -------------------------------------------------------------------------
@pytest.fixture(scope="session")
def jmp_client(pytestconfig: pytest.Config) -> Iterator[Any]:
    """The root Jumpstarter client of the device under test, for the whole session.

    Where the device comes from, first that applies: inside ``jmp shell``;
    ``--jmp-mount-exporter-config``; ``--jmp-mount-tls-grpc``; ``--jmp-mount-client`` with
    a selector or lease (released at the end of the session).
    """
    from .sources import DeviceSourceError, open_device

    problem = None
    settings = pytestconfig.stash[manager_key].settings
    try:
        with open_device(settings) as device:
            if device.description != settings.describe_source():  # e.g. which lease, on which exporter
                reporter = pytestconfig.pluginmanager.get_plugin("terminalreporter")
                capture = pytestconfig.pluginmanager.get_plugin("capturemanager")
                if reporter is not None and capture is not None:
                    with capture.global_and_fixture_disabled():
                        reporter.write_line(f"\njumpstarter mount: device: {device.description}")
                logger.info("device: %s", device.description)
            yield device.client
    except DeviceSourceError as exc:
        problem = str(exc)
    if problem:
        pytest.fail(problem, pytrace=False)


@pytest.fixture(scope="session")
def jmp_mount_client(pytestconfig: pytest.Config, jmp_client: Any) -> SSHMountClient:
    """The device's ``SSHMountClient`` (at ``--jmp-mount-driver``, default ``mount``).

    Use it for mounts of your own: ``with jmp_mount_client.mounted(remote_path="/etc") as m:``.
    """
    from .sources import DeviceSourceError, find_mount_driver

    manager = pytestconfig.stash[manager_key]
    try:
        manager.mount_client = find_mount_driver(jmp_client, manager.settings.driver)
        return manager.mount_client
    except DeviceSourceError as exc:
        problem = str(exc)
    pytest.fail(problem, pytrace=False)


def _remote_fs_scope(fixture_name: str, config: pytest.Config) -> str:
    return config.stash[manager_key].settings.scope


@pytest.fixture(scope=_remote_fs_scope)
def remote_fs(request: pytest.FixtureRequest, jmp_mount_client: SSHMountClient) -> Mount:
    """The device's ``--jmp-mount-remote`` directory (default ``/``), mounted with sshfs.

    A ``jumpstarter_driver_ssh_mount.sshfs.Mount``: ``remote_fs.mountpoint`` is the local
    path, ``remote_fs / "var/log/messages"`` (or ``remote_fs.local_path("/var/log/messages")``)
    a file in it. Mounted on first use, unmounted when its scope ends
    (``--jmp-mount-scope``, default session), whatever the outcome.
    """
    manager = request.config.stash[manager_key]
    s = manager.settings
    return manager.mount(request, jmp_mount_client, remote=s.remote, options=s.options, direct=s.direct)


@pytest.fixture
def remote_path(request: pytest.FixtureRequest) -> Path:
    """The local ``pathlib.Path`` where the device's ``--jmp-mount-remote`` directory is visible.

    A test marked ``@pytest.mark.jmp_mount(remote="/etc", options=[...], direct=False)``
    gets its own mount of that path for its duration instead.
    """
    manager = request.config.stash[manager_key]
    spec = marker_spec(request.node)
    if spec.own_mount:
        s = manager.settings
        mount = manager.mount(
            request,
            request.getfixturevalue("jmp_mount_client"),
            remote=spec.remote or s.remote,
            options=s.options + spec.options,
            direct=s.direct if spec.direct is None else spec.direct,
        )
    else:
        mount = request.getfixturevalue("remote_fs")
    request.node.stash.setdefault(item_mounts_key, []).append(mount)
    return mount.mountpoint


# -- reporting ------------------------------------------------------------------------
def mounts_used_by(item: pytest.Item) -> list[Mount]:
    """The mounts a test used: ``remote_fs`` and those behind ``remote_path``."""
    found = list(item.stash.get(item_mounts_key, []))
    fs = getattr(item, "funcargs", {}).get("remote_fs")
    if fs is not None and fs not in found:
        found.insert(0, fs)
    return found


def describe(mount: Mount) -> str:
    """The report section text for one mount (no key material: the identity is only a /proc path)."""
    via = "direct" if mount.direct else f"port forward {mount.host}:{mount.port}"
    lines = [
        f"mountpoint:    {mount.mountpoint}",
        f"remote:        {mount.remote_path} ({via})",
        f"still mounted: {'yes' if mount.is_mounted() else 'no'}",
    ]
    tail = mount.stderr_tail(10)
    lines.append("sshfs stderr:  " + ("\n               ".join(tail) if tail else "(empty)"))
    return "\n".join(lines)
