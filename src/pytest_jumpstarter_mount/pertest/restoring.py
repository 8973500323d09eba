"""Device files a test changed, put back: which mount covers a path, preserve, restore."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from jumpstarter_driver_ssh_mount import Mount


class RestoreFailed(Exception):
    """Preserved device files could not be restored after a test."""


def covering(mounts: Sequence[Mount], device_path: str) -> Mount | None:
    """The first mount whose remote path contains ``device_path``."""
    return next((mount for mount in mounts if mount.covers(device_path)), None)


def preserve(mounts: Sequence[Mount], device_paths: Sequence[str], nodeid: str) -> None:
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


def restore(mounts: Sequence[Mount]) -> list[str]:
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
