"""Per-test device-file chores: restore preserved files after a test, collect files of a failed one."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from jumpstarter_driver_ssh_mount.client import SSHMountClient
    from jumpstarter_driver_ssh_mount.sshfs import Mount

    from .settings import Settings

ARTIFACTS_SECTION = "jumpstarter mount artifacts"
ARTIFACT_PROPERTY = "jmp_mount_artifact"
collected_key = pytest.StashKey[bool]()


def covering(mounts: Sequence[Mount], device_path: str) -> Mount | None:
    """The first mount whose remote path contains ``device_path``."""
    for mount in mounts:
        try:
            mount.local_path(device_path)
        except ValueError:
            continue
        return mount
    return None


def preserve(mounts: Sequence[Mount], device_paths: Sequence[str], nodeid: str) -> None:
    """Snapshot each path on the mount that covers it (the marker's ``restore=[...]``)."""
    for device_path in device_paths:
        mount = covering(mounts, device_path)
        if mount is None:
            pytest.fail(
                f"{nodeid}: jmp_mount(restore=[{device_path!r}]) is outside every mount of this test; "
                "mount a directory that contains it (jmp_mount(remote=...) or --jmp-mount-remote)",
                pytrace=False,
            )
        mount.preserve(device_path)


def restore(mounts: Sequence[Mount]) -> list[str]:
    """Put back what was preserved on ``mounts``; the problems, one per mount."""
    from jumpstarter_driver_ssh_mount.sshfs import RestoreError

    problems = []
    for mount in mounts:
        if not mount.is_mounted():
            continue
        try:
            mount.restore_preserved()
        except RestoreError as exc:
            problems.append(str(exc))
    return problems


def artifacts_dir(settings: Settings, config: pytest.Config, nodeid: str) -> Path:
    """``<artifacts>/<nodeid, made a safe file name>/``."""
    base = settings.artifacts or (config.rootpath / "jmp-artifacts")
    return base / re.sub(r"[^\w.-]+", "_", nodeid).strip("_")


def collect_failed(
    item: pytest.Item,
    report: pytest.TestReport,
    globs: Sequence[str],
    mounts: Sequence[Mount],
    client: SSHMountClient | None,
    settings: Settings,
    mount_dir: Callable[[], Path],
) -> None:
    """Copy ``globs`` from the device for a failed test, once; list them in the report and JUnit XML."""
    if not globs or item.stash.get(collected_key, False):
        return
    item.stash[collected_key] = True
    dest = artifacts_dir(settings, item.config, item.nodeid)
    lines: list[str] = []
    files: list[Path] = []
    from jumpstarter_driver_ssh_mount.sshfs.devicefiles import split_glob

    live = [m for m in mounts if m.is_mounted()]
    jobs: list[tuple[Mount, list[str]]] = []
    uncovered = []
    for pattern in globs:
        mount = covering(live, split_glob(pattern)[0])
        if mount is None:
            uncovered.append(pattern)
        elif jobs and jobs[-1][0] is mount:
            jobs[-1][1].append(pattern)
        else:
            jobs.append((mount, [pattern]))
    temporary = None
    if uncovered and client is not None:
        try:  # a short-lived mount of / for the globs no mount of the test covers
            temporary = client.mounted(None, remote_path="/", timeout=settings.timeout, mount_dir=mount_dir())
            jobs.append((temporary, uncovered))
        except Exception as exc:
            lines.append(f"could not mount the device to collect {', '.join(uncovered)}: {exc}")
    elif uncovered:
        lines.append(f"no mount of this test covers {', '.join(uncovered)}; nothing collected for them")
    try:
        for mount, patterns in jobs:
            result = mount.collect(
                patterns, dest, max_bytes=settings.collect_max_bytes, timeout=settings.collect_timeout
            )
            files += result.files
            lines += result.notes
    finally:
        if temporary is not None:
            temporary.unmount()
    lines = [f"collected: {f}" for f in files] + [f"note: {n}" for n in lines]
    report.sections.append((ARTIFACTS_SECTION, "\n".join(lines) or "nothing matched"))
    for f in files:
        prop = (ARTIFACT_PROPERTY, str(f))
        item.user_properties.append(prop)  # the teardown report carries it into JUnit XML
        if report.when == "teardown":
            report.user_properties.append(prop)
