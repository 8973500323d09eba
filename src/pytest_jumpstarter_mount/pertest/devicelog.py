"""What the device did during a test, in its report: the ``DeviceLogs`` plugin object.

For every test that uses the device, ``--jmp-mount-log`` files, ``--jmp-mount-log-command``
output and ``--jmp-mount-watch`` directories (and the marker's ``log=[...]``, ``watch=[...]``)
are read at its start (before its fixtures, or as soon as the device is reached) and, when it
fails, again: the failing report (setup or call) gets a ``device log: PATH`` /
``device files changed: DIR`` section per source, the teardown report what teardown added
(``... (teardown)``), and the run's artifact folder a file per source for the whole test,
named in JUnit XML by ``jmp_mount_device_log`` / ``jmp_mount_device_files_changed``
properties. A passing test costs one reading, at its start; with
``--jmp-mount-log-keep=all`` it is read at its end too and gets the files and sections.
The readings themselves (one shell on the device, one round trip each) are in
``jumpstarter_driver_ssh_mount.devicefiles.devicewatch``.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from pytest_jumpstarter_mount.config.fixturenames import DEVICE_FIXTURES, MOUNT_FIXTURES
from pytest_jumpstarter_mount.config.marker import marker_spec

if TYPE_CHECKING:  # the readings are imported when a test first needs them, not by every pytest run
    from jumpstarter_driver_ssh_mount.client import SSHMountClient
    from jumpstarter_driver_ssh_mount.devicefiles.devicechanges import Section, Sources, WatchedTest
    from jumpstarter_driver_ssh_mount.devicefiles.devicewatch import DeviceWatch
    from pytest_jumpstarter_mount.config.settings import Settings

logger = logging.getLogger("pytest_jumpstarter_mount")

LOG_PROPERTY = "jmp_mount_device_log"
FILES_PROPERTY = "jmp_mount_device_files_changed"
CLIENT_FIXTURE = "jmp_mount_client"
#: Teardown sections saying only this are left out (after a failing phase's sections said it all).
QUIET = ("(nothing appended)", "(no output)", "(no changes)", "(the file does not exist on the device)")


@dataclass(frozen=True)
class DeviceLogContext:
    """What ``DeviceLogs`` needs from the rest of the plugin, and nothing more."""

    logs: tuple[str, ...]  # from the options; a marker adds to them
    commands: tuple[str, ...]
    watch: tuple[str, ...]
    keep_all: bool
    client: Callable[[], SSHMountClient | None]  # the device's mount client, once a test reached it
    unavailable: Callable[[], str | None]  # why the device cannot be used, if known
    test_dir: Callable[[str], Path]  # a test's folder in the run's artifact folder
    connection: dict[str, Any] = field(default_factory=dict)  # transport, insecure, options: as device_run

    @classmethod
    def from_settings(cls, settings: Settings, **parts: Any) -> DeviceLogContext:
        """The context for ``settings`` and the given callables."""
        connection = {"transport": settings.transport, "insecure": settings.insecure, "options": settings.options}
        keep_all = settings.log_keep == "all"
        return cls(settings.logs, settings.log_commands, settings.watch, keep_all, connection=connection, **parts)


@dataclass
class ReadingState:
    """One test's readings: its watch (None when its start could not be read, ``problem`` says why)."""

    sources: Sources
    watch: WatchedTest | None = None
    problem: str | None = None
    failed: bool = False
    read_mid_test: bool = False
    final: list[Section] | None = None  # read early, when the device was about to go


reading_key = pytest.StashKey[ReadingState]()


class DeviceLogs:
    """Plugin object: reads the device at test boundaries and puts what it did in failed tests' reports."""

    def __init__(self, context: DeviceLogContext) -> None:
        self.context = context
        self.device: DeviceWatch | None = None
        self.current: pytest.Item | None = None

    def sources(self, item: pytest.Item) -> Sources:
        """The options' sources plus the marker's."""
        from jumpstarter_driver_ssh_mount.devicefiles.devicechanges import Sources

        spec, c = marker_spec(item), self.context
        return Sources(c.logs + spec.log, c.commands, c.watch + spec.watch)

    def pytest_collection_modifyitems(self, items: list[pytest.Item]) -> None:
        """A test whose marker asks for logs or changed files needs the device."""
        for item in items:
            spec = marker_spec(item)
            if not (spec.log or spec.watch) or not isinstance(item, pytest.Function):
                continue
            if CLIENT_FIXTURE not in item.fixturenames:
                item.fixturenames.append(CLIENT_FIXTURE)

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_setup(self, item: pytest.Item) -> Generator[None, None, None]:
        """The start reading, before the test's fixtures (when the device is known already)."""
        needs = set(getattr(item, "fixturenames", ())) & {*DEVICE_FIXTURES, *MOUNT_FIXTURES}
        spec, c = marker_spec(item), self.context
        if needs and (c.logs or c.commands or c.watch or spec.log or spec.watch):
            self.current = item
            client = self.context.client()
            if client is not None:
                self._begin(item, client)
        return (yield)

    @pytest.hookimpl(wrapper=True)
    def pytest_fixture_setup(self, fixturedef: pytest.FixtureDef[Any], request: pytest.FixtureRequest) -> Any:
        """The first test's start reading as soon as the device is reached; the last one's end before it goes."""
        result = yield
        if fixturedef.argname == CLIENT_FIXTURE:
            fixturedef.addfinalizer(self._device_going)
            item = self.current
            if item is not None and reading_key not in item.stash:
                self._begin(item, result)
        return result

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_makereport(self, item: pytest.Item) -> Generator[None, pytest.TestReport, pytest.TestReport]:
        report = yield
        state = item.stash.get(reading_key, None)
        if state is None:
            if report.when == "teardown":
                self.current = None
            return report
        if report.when in ("setup", "call") and report.failed and not state.failed:
            state.failed = state.read_mid_test = True
            report.sections += [(s.title, s.text) for s in self._read(state)]
        elif report.when == "teardown":
            self.current = None
            if state.failed or report.failed or self.context.keep_all:
                self._finish(item, state, report)
        return report

    def _finish(self, item: pytest.Item, state: ReadingState, report: pytest.TestReport) -> None:
        """The end reading's sections on the teardown report, and the whole test's account in files."""
        sections = state.final if state.final is not None else self._read(state)
        suffix = " (teardown)" if state.read_mid_test else " (setup to teardown)"
        for s in sections:
            if not (state.read_mid_test and s.text in QUIET):
                report.sections.append((s.title + suffix, s.text))
        whole = state.watch.whole() if state.watch is not None else sections
        for prop in self._files(item.nodeid, whole):
            item.user_properties.append(prop)
            report.user_properties.append(prop)  # the teardown report carries it into JUnit XML

    def _files(self, nodeid: str, sections: list[Section]) -> list[tuple[str, str]]:
        """Each section in a file of the test's artifact folder; the properties naming them."""
        from jumpstarter_driver_ssh_mount.devicefiles.devicechanges import FILES

        folder = self.context.test_dir(nodeid)
        props = []
        try:
            folder.mkdir(parents=True, exist_ok=True)
            for s in sections:
                path = folder / (re.sub(r"[^\w.-]+", "_", s.title).strip("_")[:120] + ".txt")
                path.write_text(s.text + "\n", errors="replace")
                props.append((FILES_PROPERTY if s.title.startswith(FILES) else LOG_PROPERTY, str(path)))
        except OSError as exc:
            props.append((LOG_PROPERTY, f"not written: {exc}"))
        return props

    def _begin(self, item: pytest.Item, client: SSHMountClient) -> None:
        if self.context.unavailable():
            return
        state = item.stash[reading_key] = ReadingState(self.sources(item))
        try:
            state.watch = self._device(client).begin(state.sources)
        except Exception as exc:  # DeviceUnreadable, or anything unforeseen: a note in the report, never a traceback
            state.problem = str(exc) or type(exc).__name__

    def _read(self, state: ReadingState) -> list[Section]:
        from jumpstarter_driver_ssh_mount.devicefiles.devicechanges import Section

        if state.watch is None:
            why = f"not read at the test's start: {state.problem}"
            return [Section(title, f"({why})") for title in state.sources.titles()]
        if self.device is None:
            return state.watch.not_read("the device was released before the test's end")
        try:
            return self.device.read(state.watch)
        except Exception as exc:  # the device's unreadable answers are notes already; this is the unforeseen
            logger.warning("device logs: reading failed: %r", exc)
            return state.watch.not_read(f"{type(exc).__name__}: {exc}")

    def _device(self, client: SSHMountClient) -> DeviceWatch:
        if self.device is None:
            from jumpstarter_driver_ssh_mount.devicefiles.devicewatch import DeviceWatch
            from jumpstarter_driver_ssh_mount.reach.device_command import open_shell

            def opener(script: bytes, ready: bytes, timeout: float) -> Any:
                return open_shell(client, script, ready, timeout, **self.context.connection)

            self.device = DeviceWatch(opener)
        return self.device

    def _device_going(self) -> None:
        """The mount client's end (the session's, or the worker's, last teardown): read the current test, close."""
        item = self.current
        state = item.stash.get(reading_key, None) if item is not None else None
        if state is not None and state.final is None:
            state.final = self._read(state)
        self.close()

    def close(self) -> None:
        """End the shell on the device, if one is open."""
        device, self.device = self.device, None
        if device is not None:
            device.close()
