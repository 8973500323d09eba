"""``DeviceFarm``: controller leases seen from pytest: recorded, announced, reported, and released if left.

One per pytest process, registered as a plugin object. In an xdist worker it records the
worker's lease and says which board it got; on the xdist controller (or in a single
process) it releases the leases dead processes left, and lists every worker's board at the
end. Lines meant for the user reach the terminal from workers too (see ``announce``).
"""

from __future__ import annotations

from collections.abc import Generator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from pytest_jumpstarter_mount.reporting.output import announce
from pytest_jumpstarter_mount.sources.leases import LeaseInfo, mark_released, record, release_left

if TYPE_CHECKING:
    from pytest_jumpstarter_mount.runstate.runcontext import RunContext

LEASE_PROPERTY = "jmp_lease"
EXPORTER_PROPERTY = "jmp_exporter"
WORKER_OUTPUT_KEY = "jmp_mount_device"


class DeviceFarm:
    """Plugin object: this process's controller lease, and the clean-up of leases dead processes left."""

    def __init__(self, manager: RunContext) -> None:
        self.manager = manager
        self.lease: LeaseInfo | None = None  # the lease this process holds
        self.devices: dict[str, str] = {}  # worker id -> which device it used, for the summary
        self.header: list[str] = []  # lines said before the terminal existed

    @property
    def config(self) -> pytest.Config:
        return self.manager.config

    def say(self, line: str) -> None:
        """``announce``, or keep the line for the report header if the terminal is not there yet."""
        if not announce(self.config, line):
            self.header.append(line)

    # -- the lease of this process (a ``sources.LeaseWatcher``) ------------------------
    def waiting(self, wanted: str, seconds: float) -> None:
        worker = self.manager.worker_id
        who = f"{worker}, " if worker != "main" else ""
        self.say(f"jumpstarter mount: waiting for {wanted} ({who}{seconds:.0f} s)")

    def acquired(self, lease: LeaseInfo) -> None:
        """Record a lease we own (a dead worker's is then released by the controller); note it for reports."""
        self.lease = lease
        if lease.owned:
            record(self.manager.mount_dir(), lease, self.manager.worker_id)
        self.devices[self.manager.worker_id] = lease.describe()
        workeroutput = getattr(self.config, "workeroutput", None)
        if workeroutput is not None:
            workeroutput[WORKER_OUTPUT_KEY] = lease.describe()

    def released(self, lease: LeaseInfo) -> None:
        if lease.owned:
            mark_released(self.manager.mount_dir(), lease)

    # -- leases left by dead processes -------------------------------------------------
    def release_left(self, run: Path) -> None:
        """The stale sweep's hook for a dead process's directory: release its leases, a line each."""
        if self.manager.worker_id != "main":
            return  # one process per run releases: the controller (or the single process)
        for line in release_left(run):
            self.say(line)

    # -- hooks --------------------------------------------------------------------------
    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_setup(self, item: pytest.Item) -> Generator[None, None, None]:
        """A test that used the leased device gets ``jmp_lease`` and ``jmp_exporter`` properties (JUnit XML)."""
        try:
            return (yield)
        finally:
            if self.lease is not None and "jmp_client" in getattr(item, "fixturenames", ()):
                item.user_properties += [(LEASE_PROPERTY, self.lease.name), (EXPORTER_PROPERTY, self.lease.exporter)]

    @pytest.hookimpl(optionalhook=True)
    def pytest_testnodedown(self, node: Any, error: object | None) -> None:
        """xdist controller: note the worker's device; a worker that died gives back its lease now."""
        output = getattr(node, "workeroutput", None) or {}
        worker = str(getattr(node, "gateway", None) and node.gateway.id)
        if WORKER_OUTPUT_KEY in output:
            self.devices[worker] = str(output[WORKER_OUTPUT_KEY])
        if error is not None:
            self.manager.sweep()

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        """Which device each worker (or this process) used."""
        for worker, device in sorted(self.devices.items()):
            who = f"{worker} " if worker != "main" else ""
            terminalreporter.write_line(f"jumpstarter mount: {who}used {device}")
