"""``DeviceWatch``: readings of the device's logs and watched directories through one long-lived shell.

The shell (``remote_shell``) is opened on first use by the ``opener`` the caller gives (it
knows how to reach the device), kept for the readings that follow, and opened again when it
broke (a reboot, a lost connection) -- at most once per reading, and not again for
``DEVICE_READING_RETRY`` seconds after the device could not be reached, so a device that is
gone costs each test a note, never a wait per test. Nothing here knows pytest.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable

from jumpstarter_driver_ssh_mount.common.defaults import (
    DEVICE_LISTING_CAP,
    DEVICE_LOG_CAP,
    DEVICE_READING_RETRY,
    DEVICE_READING_TIMEOUT,
)
from jumpstarter_driver_ssh_mount.devicefiles.devicechanges import Section, Sources, WatchedTest
from jumpstarter_driver_ssh_mount.devicefiles.devicestate import (
    LogRequest,
    Reading,
    end_marker,
    parse_reading,
    reading_script,
)
from jumpstarter_driver_ssh_mount.ssh.remote_shell import RemoteShell, ShellGone

logger = logging.getLogger("jumpstarter_driver_ssh_mount")

#: Opens a shell on the device, sends the script, waits (at most the timeout) for the marker.
Opener = Callable[[bytes, bytes, float], RemoteShell]
#: Bytes a reply may hold beyond its sources' caps (markers, the clock).
SLACK = 64 * 1024


class DeviceUnreadable(Exception):
    """The device could not be read now: the reason, for the report."""


class DeviceWatch:
    """Readings through one shell; ``begin`` a test's watch, ``read`` what happened since, ``close`` at the end."""

    def __init__(
        self,
        opener: Opener,
        *,
        cap: int = DEVICE_LOG_CAP,
        timeout: float = DEVICE_READING_TIMEOUT,
        listing_cap: int = DEVICE_LISTING_CAP,
    ) -> None:
        self.opener, self.cap, self.timeout, self.listing_cap = opener, cap, timeout, listing_cap
        self.shell: RemoteShell | None = None
        self._unreachable: tuple[float, str] | None = None  # when the last open failed, and why

    def begin(self, sources: Sources) -> WatchedTest:
        """Read the device's state now (clock, logs' sizes, listings) as a test's start.

        :raises DeviceUnreadable: the device did not answer (the reason).
        """
        logs = [LogRequest(path) for path in sources.logs]
        reading = self._reading(logs, [], list(sources.watch), clock=bool(sources.commands))
        return WatchedTest(sources, reading, self.cap)

    def read(self, watch: WatchedTest) -> list[Section]:
        """Each source's section for what happened since ``watch``'s last reading (notes if it cannot be read)."""
        try:
            logs, commands, watched = watch.requests()
            return watch.advance(self._reading(logs, commands, watched, clock=bool(commands)))
        except DeviceUnreadable as exc:
            return watch.not_read(str(exc))

    def _reading(
        self, logs: list[LogRequest], commands: list[tuple[str, int]], watch: list[str], *, clock: bool
    ) -> Reading:
        nonce = os.urandom(8).hex()
        script = reading_script(nonce, logs, commands, watch, self.listing_cap, clock=clock)
        most = sum(max(r.budget or 0, 0) for r in logs) + sum(c for _, c in commands)
        most += 2 * self.listing_cap * len(watch) + SLACK
        shell = self._shell()
        try:
            reply = shell.exchange(script, end_marker(nonce), timeout=self.timeout, max_bytes=most)
        except ShellGone as exc:
            self.shell = None
            raise DeviceUnreadable(f"{exc}{_stderr(exc)}") from None
        return parse_reading(reply, nonce, self.listing_cap, logs)

    def _shell(self) -> RemoteShell:
        if self.shell is not None:
            if self.shell.alive:
                return self.shell
            self.close()  # ssh ended (the device went away): its port forward must be closed, not left to the GC
        if self._unreachable and time.monotonic() - self._unreachable[0] < DEVICE_READING_RETRY:
            raise DeviceUnreadable(f"the device could not be reached: {self._unreachable[1]}")
        from jumpstarter_driver_ssh_mount.devicefiles.devicestate import ready_marker, ready_script

        nonce = os.urandom(8).hex()
        try:
            self.shell = self.opener(ready_script(nonce), ready_marker(nonce), self.timeout)
        except Exception as exc:  # ShellGone, a connect or host-key error, the exporter gone: a note
            why = f"{exc}{_stderr(exc)}"
            self._unreachable = (time.monotonic(), why)
            logger.info("device logs: cannot open a shell on the device: %s", why)
            raise DeviceUnreadable(f"the device could not be reached: {why}") from None
        self._unreachable = None
        return self.shell

    def close(self) -> None:
        """End the shell, if open."""
        shell, self.shell = self.shell, None
        if shell is not None:
            shell.close()


def _stderr(exc: BaseException) -> str:
    stderr = getattr(exc, "stderr", "")
    return f" ({stderr.splitlines()[-1]})" if isinstance(stderr, str) and stderr.strip() else ""
