"""Device files a test changed, put back: which mount covers a path, preserve, restore."""

from __future__ import annotations

from collections.abc import Callable, Generator, Sequence
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from jumpstarter_driver_ssh_mount import DeviceFiles


class RestoreFailed(Exception):
    """Preserved device files could not be restored after a test."""


def covering(mounts: Sequence[DeviceFiles], device_path: str) -> DeviceFiles | None:
    """The first mount whose remote path contains ``device_path``."""
    return next((mount for mount in mounts if mount.covers(device_path)), None)


def preserve(mounts: Sequence[DeviceFiles], device_paths: Sequence[str], nodeid: str) -> None:
    """Snapshot each path on the mount that covers it (the marker's ``restore=[...]``)."""
    for device_path in device_paths:
        mount = covering(mounts, device_path)
        if mount is None:
            from jumpstarter_driver_ssh_mount.common.errors import covering_directory

            mounted = ", ".join(m.remote_path for m in mounts) or "none"
            directory = covering_directory(device_path)
            pytest.fail(
                f"{nodeid}: jmp_mount(restore=[{device_path!r}]) is outside every mount of this test "
                f"(mounted: {mounted}); mount {directory} for this test: "
                f'@pytest.mark.jmp_mount(remote="{directory}", restore=["{device_path}"])',
                pytrace=False,
            )
        mount.preserve(device_path)


def restore(mounts: Sequence[DeviceFiles]) -> list[str]:
    """Put back what was preserved on ``mounts``; the problems, one per mount."""
    from jumpstarter_driver_ssh_mount import RestoreError

    problems = []
    for mount in mounts:
        if not mount.is_mounted():
            continue
        try:
            mount.restore_preserved()
        except RestoreError as exc:
            problems.append(str(exc))
    return problems


class MarkerRestores:
    """Plugin object: the ``jmp_mount(restore=[...])`` files of each test, snapshotted before its body runs and
    put back before its mounts are torn down (the test fails when they cannot be)."""

    def __init__(self, used_mounts: Callable[[pytest.Item], list[DeviceFiles]]) -> None:
        self.used_mounts = used_mounts

    def pytest_collection_modifyitems(self, items: list[pytest.Item]) -> None:
        """Restoring needs the test's mount: a test with ``restore=`` gets ``remote_path``."""
        from pytest_jumpstarter_mount.config.marker import marker_spec

        for item in items:
            spec = marker_spec(item)
            if spec.restore and isinstance(item, pytest.Function) and "remote_path" not in item.fixturenames:
                item.fixturenames.append("remote_path")

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_call(self, item: pytest.Item) -> Generator[None, None, None]:
        """Snapshot the marker's ``restore=[...]`` files before the test body runs."""
        from pytest_jumpstarter_mount.config.marker import marker_spec

        paths = marker_spec(item).restore
        if paths:
            preserve(self.used_mounts(item), paths, item.nodeid)
        return (yield)

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_teardown(self, item: pytest.Item) -> Generator[None, None, None]:
        """Put preserved device files back before the test's mounts are torn down; fail if that fails."""
        problems = restore(self.used_mounts(item))
        result = yield
        if problems:
            raise RestoreFailed("; ".join(problems))
        return result
