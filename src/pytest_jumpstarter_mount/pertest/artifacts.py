"""Failure reports: what each mount looked like, and device files copied for a failed test."""

from __future__ import annotations

from collections.abc import Generator, Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from pytest_jumpstarter_mount.config.marker import MarkerSpec, marker_spec
from pytest_jumpstarter_mount.pertest.restoring import covering
from pytest_jumpstarter_mount.reporting.notices import warn_cut_short
from pytest_jumpstarter_mount.runstate.artifactruns import ArtifactRuns
from pytest_jumpstarter_mount.sources.failfast import UNAVAILABLE

if TYPE_CHECKING:
    from jumpstarter_driver_ssh_mount import DeviceFiles
    from pytest_jumpstarter_mount.pertest.contexts import CollectingContext
    from pytest_jumpstarter_mount.sources.leases import LeaseInfo

REPORT_SECTION = "jumpstarter mount"
ARTIFACTS_SECTION = "jumpstarter mount artifacts"
ARTIFACT_PROPERTY = "jmp_mount_artifact"
collected_key = pytest.StashKey[bool]()


class FailureArtifacts:
    """Plugin object: a failed test's report gets its mounts' state and the device files it asked for.

    Files come from ``--jmp-mount-collect`` and the marker's ``collect=[...]``, copied once per
    test into ``<artifacts>/<run>/<nodeid>/`` (see ``artifactruns``), through the test's own
    mounts, or a short-lived mount of ``/`` (made by the manager) for globs none of them covers.
    """

    def __init__(self, manager: CollectingContext) -> None:
        self.manager = manager
        settings = manager.settings
        self.runs = ArtifactRuns(manager.config, settings.artifacts, settings.artifacts_retention)

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_makereport(self, item: pytest.Item) -> Generator[None, pytest.TestReport, pytest.TestReport]:
        report = yield
        if report.failed:
            mounts = self.manager.used_mounts(item)
            lease = self.manager.farm.lease if "jmp_client" in getattr(item, "fixturenames", ()) else None
            if mounts or lease:
                parts = ([describe_lease(lease)] if lease else []) + [describe(m) for m in mounts]
                report.sections.append((REPORT_SECTION, "\n\n".join(parts)))
            globs = self.manager.settings.collect + marker_spec(item).collect
            if globs and not mounts and self.manager.availability.reason:
                self._note_unavailable(report)
            elif globs and (mounts or self.manager.mount_client is not None):
                self.collect(item, report, globs, mounts)
        return report

    def collect(
        self, item: pytest.Item, report: pytest.TestReport, globs: Sequence[str], mounts: Sequence[DeviceFiles]
    ) -> None:
        """Copy ``globs`` from the device for a failed test, once; list them in the report and JUnit XML.

        File names come from the device: they are shown escaped (``shown``), one per line.
        """
        from jumpstarter_driver_ssh_mount.devicefiles.devicepaths import shown

        if item.stash.get(collected_key, False):
            return
        item.stash[collected_key] = True
        jobs, uncovered = plan([m for m in mounts if m.is_mounted()], globs)
        notes: list[str] = []
        files: list[Path] = []
        cut_short: list[str] = []
        settings = self.manager.settings
        dest = self.runs.test_dir(item.nodeid)  # made when a file is copied: 0700 from the run folder down
        self.runs.base.mkdir(parents=True, exist_ok=True)
        try:
            with ExitStack() as temporary:
                if uncovered:
                    jobs += self._through_root_mount(uncovered, notes, temporary)
                for mount, patterns in jobs:
                    result = mount.collect(
                        patterns, dest, max_bytes=settings.collect_max_bytes, timeout=settings.collect_timeout
                    )
                    files += result.files
                    notes += result.notes
                    cut_short += [reason for reason in result.cut_short if reason not in cut_short]
        except Exception as exc:  # e.g. a teardown hook of the short-lived mount: a note, not an internal error
            notes.append(f"collecting stopped: {exc}")
        lines = [f"collected: {shown(f)}" for f in files] + [f"note: {n}" for n in notes]  # notes: shown already
        report.sections.append((ARTIFACTS_SECTION, "\n".join(lines) or "nothing matched"))
        warn_cut_short(item.nodeid, cut_short)
        for f in files:
            prop = (ARTIFACT_PROPERTY, shown(f))
            item.user_properties.append(prop)  # the teardown report carries it into JUnit XML
            if report.when == "teardown":
                report.user_properties.append(prop)

    def _note_unavailable(self, report: pytest.TestReport) -> None:
        """Say once per process that nothing is collected from a device known to be unavailable."""
        if not self.manager.availability.collection_noted:
            self.manager.availability.collection_noted = True
            report.sections.append((ARTIFACTS_SECTION, "nothing collected: the device is unavailable"))

    def _through_root_mount(
        self, patterns: list[str], notes: list[str], stack: ExitStack
    ) -> list[tuple[DeviceFiles, list[str]]]:
        """``patterns`` paired with a short-lived mount of ``/`` (unmounted when ``stack`` closes)."""
        client = self.manager.mount_client
        if self.manager.availability.reason:
            notes.append(f"{', '.join(patterns)} not collected: {UNAVAILABLE}")
            return []
        if client is None:
            notes.append(f"no mount of this test covers {', '.join(patterns)}; nothing collected for them")
            return []
        try:
            mount = stack.enter_context(self.manager.mounted(client, MarkerSpec(remote="/")))
        except (Exception, pytest.fail.Exception) as exc:
            notes.append(f"could not mount the device to collect {', '.join(patterns)}: {exc}")
            return []
        return [(mount, patterns)]


def plan(mounts: Sequence[DeviceFiles], globs: Sequence[str]) -> tuple[list[tuple[DeviceFiles, list[str]]], list[str]]:
    """Which mount collects which globs (in order, neighbours on one mount grouped); the uncovered globs."""
    from jumpstarter_driver_ssh_mount.devicefiles.collection import split_glob

    jobs: list[tuple[DeviceFiles, list[str]]] = []
    uncovered = []
    for pattern in globs:
        mount = covering(mounts, split_glob(pattern)[0])
        if mount is None:
            uncovered.append(pattern)
        elif jobs and jobs[-1][0] is mount:
            jobs[-1][1].append(pattern)
        else:
            jobs.append((mount, [pattern]))
    return jobs, uncovered


def describe_lease(lease: LeaseInfo) -> str:
    """The report section's lines naming the controller lease and the exporter (board) it got."""
    return f"lease:         {lease.name} (client {lease.alias})\nexporter:      {lease.exporter}"


def device_lines(mount: DeviceFiles) -> list[str]:
    """Whether the device answers now (the exporter's check) and why its host key was refused, if it was:
    what an ``EIO`` from the mount does not say."""
    lines = []
    try:
        problem = mount.reachable() if mount.reachable is not None else None
    except Exception as exc:  # the report is best effort
        problem = f"(could not ask the exporter: {exc})"
    if problem:
        lines.append(f"device:        unreachable: {problem}")
    refused = mount.key_refused() if mount.key_refused is not None else None
    if refused:
        lines.append(f"host key:      {refused}")
    return lines


def describe(mount: DeviceFiles) -> str:
    """The report section text for one mount (no key material: the identity is only a /proc path)."""
    from jumpstarter_driver_ssh_mount.common.choices import transport_label

    label = transport_label(mount.transport)
    via = "direct" if mount.transport == "direct" else f"{label} {mount.target.host}:{mount.target.port}"
    lines = [
        f"mountpoint:    {mount.where}" if mount.backend == "sshfs" else f"files via:     {mount.where}",
        f"remote:        {mount.remote_path} ({via})",
        f"transport:     {mount.transport}" + (f" ({mount.transport_note})" if mount.transport_note else ""),
        f"still mounted: {'yes' if mount.is_mounted() else 'no'}",
    ]
    lines += device_lines(mount)
    if mount.backend == "sshfs":
        tail = mount.stderr_tail(10)  # type: ignore[attr-defined]
        lines.append("sshfs stderr:  " + ("\n               ".join(tail) if tail else "(empty)"))
    return "\n".join(lines)
