"""Tests during which the device rebooted: its boot id, read when a mount is made and at each test's end.

The device's kernel makes a new boot id (``/proc/sys/kernel/random/boot_id``) on every boot. It is
read through the mount (``Mount.boot_id``: one small read, bounded) when the mount is ready and at
the end of each test that used it; a test whose reading differs from the one before gets a line in
its report (``device rebooted during this test``), a JUnit property ``jmp_mount_device_rebooted``,
and the run's summary lists it. A mount that does not show the boot id's path, or a device that
does not answer at the test's end, gives no reading: the next reading is compared with the last one.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from jumpstarter_driver_ssh_mount.devicefiles.files import DeviceFiles

SECTION = "jumpstarter mount"
PROPERTY = "jmp_mount_device_rebooted"


class BootWatch:
    """Remembers each live mount's last boot id reading and compares at every test's end."""

    def __init__(self, used_mounts: Callable[[pytest.Item], list[DeviceFiles]]) -> None:
        self._used_mounts = used_mounts
        self._boots: dict[DeviceFiles, str] = {}
        self.rebooted: list[str] = []  # node ids

    @pytest.hookimpl(trylast=True)  # after a conftest's hook that sets ``mount.boot_id_path``
    def pytest_jmp_mount_ready(self, mount: DeviceFiles, request: Any) -> None:
        """The reading at mount time."""
        boot = mount.boot_id()
        if boot is not None:
            self._boots[mount] = boot

    def pytest_jmp_mount_teardown(self, mount: DeviceFiles) -> None:
        """The mount goes: forget it."""
        self._boots.pop(mount, None)

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_makereport(self, item: pytest.Item) -> Generator[None, pytest.TestReport, pytest.TestReport]:
        """At the end of the test's body: read again, and say so when the boot id changed."""
        report = yield
        if report.when == "call":
            for mount in self._used_mounts(item):
                line = self._changed(mount)
                if line:
                    report.sections.append((SECTION, line))
                    item.user_properties.append((PROPERTY, line))
                    if item.nodeid not in self.rebooted:
                        self.rebooted.append(item.nodeid)
        return report

    def _changed(self, mount: DeviceFiles) -> str | None:
        before, now = self._boots.get(mount), mount.boot_id()
        if now is None:
            return None
        self._boots[mount] = now
        if before is None or before == now:
            return None
        return f"device rebooted during this test ({mount.device_name}: boot id {before}, now {now})"

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        """One line naming the tests during which the device rebooted."""
        if self.rebooted:
            count = len(self.rebooted)
            terminalreporter.write_line(
                f"jumpstarter mount: the device rebooted during {count} test{'s' if count > 1 else ''}: "
                + ", ".join(self.rebooted)
            )
