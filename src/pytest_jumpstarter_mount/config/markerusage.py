"""Say it early: a ``jmp_mount`` marker that is wrong for its test stops the run before any test runs.

Wrong means bad arguments (``marker``) or a marker the test's fixtures cannot honour: its
own mount is handed to ``remote_path`` only, so ``remote="/etc"`` on a test that uses only
``remote_fs`` (the session's mount of ``--jmp-mount-remote``) would silently get another path.

In one process it is a ``pytest.UsageError`` naming the test (exit 4). An xdist worker
cannot stop the run that way (xdist reports an internal error and hides the message), so
there the same line is a collection error of the test's module; the controller, seeing it,
stops the run before it schedules a test, and exits 4 as well.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

import pytest

from pytest_jumpstarter_mount.config.fixturenames import DEVICE_FIXTURES, MOUNT_FIXTURES
from pytest_jumpstarter_mount.config.marker import MarkerSpec, marker_spec

MARKER = "@pytest.mark.jmp_mount"  # in every line this module raises: how the xdist controller knows them


def check_honoured(item: pytest.Item, spec: MarkerSpec) -> None:
    """A usage error naming the test when its fixtures cannot honour its marker.

    A marker inherited from a class or module is no error on a test that uses no device
    fixture at all. ``restore=[...]`` brings ``remote_path`` in by itself.
    """
    names = set(getattr(item, "fixturenames", ()))
    if not spec.own_mount or spec.restore or "remote_path" in names:
        return
    on_the_test = any(mark.name == "jmp_mount" for mark in getattr(item, "own_markers", ()))
    if on_the_test or names & {*DEVICE_FIXTURES, *MOUNT_FIXTURES}:
        raise pytest.UsageError(
            f"{item.nodeid}: {MARKER}({spec.own_mount_arguments()}) needs the remote_path fixture: "
            "the marker's own mount is handed to remote_path only (remote_fs is the session's mount of "
            "--jmp-mount-remote); add remote_path to the test's arguments"
        )


class MarkerUsage:
    """Plugin object: the check after collection; under xdist the worker's collection error, the controller's stop."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.problem: str | None = None  # the controller saw a worker's marker problem

    @pytest.hookimpl(tryfirst=True)
    def pytest_collection_modifyitems(self, items: list[pytest.Item]) -> None:
        """Every test's marker, once (parsed into its stash); the first problem is a ``pytest.UsageError``."""
        for item in items:
            check_honoured(item, marker_spec(item))

    @pytest.hookimpl(wrapper=True)
    def pytest_pycollect_makeitem(self, collector: pytest.Collector) -> Generator[None, Any, Any]:
        """In an xdist worker: a marker problem becomes a collection error of the test's module."""
        collected = yield
        if hasattr(self.config, "workerinput"):
            for item in collected if isinstance(collected, list) else [collected]:
                if isinstance(item, pytest.Function):
                    try:
                        check_honoured(item, marker_spec(item))
                    except pytest.UsageError as exc:
                        raise pytest.Collector.CollectError(str(exc)) from None
        return collected

    def pytest_collectreport(self, report: pytest.CollectReport) -> None:
        """On the xdist controller: a worker's marker problem stops the run before any test is scheduled."""
        dsession = self.config.pluginmanager.get_plugin("dsession")
        if dsession is None or self.problem is not None or not report.failed or MARKER not in str(report.longrepr):
            return
        self.problem = str(report.longrepr).strip().splitlines()[-1]
        dsession.shouldstop = f"jumpstarter mount: no test run: a {MARKER} problem (see ERRORS)"

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        """The controller's exit status for a marker problem is a usage error's, as in one process."""
        if self.problem is not None:
            session.exitstatus = pytest.ExitCode.USAGE_ERROR
