"""``RestoreGuard``: nothing a test changed on the device is lost when its restore cannot run.

Every ``preserve`` (the marker's ``restore=[...]`` too) writes the files' originals to this
process's journal (see ``journal``) before the test changes them; a restore that worked
removes them. What is left at the end of the run is said in the terminal summary, one
``NOT restored on <device>: <path> (<reason>)`` line per file. The next run against the
same device takes over what dead runs left (a rename into its own directory, so a file is
restored once) and puts it back before its first test uses the device. Runs still alive,
and runs this process cannot see (another PID namespace, another host: see
``sshfs.liveness``), are never touched; a second such run preserving files on the same
device is warned.
"""

from __future__ import annotations

import os
import posixpath
import threading
from collections.abc import Generator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from jumpstarter_driver_ssh_mount.devicefiles.devicepaths import relative_to_mount, shown
from pytest_jumpstarter_mount.config.marker import MarkerSpec
from pytest_jumpstarter_mount.reporting.notices import warn
from pytest_jumpstarter_mount.reporting.output import announce, shell_exit_note
from pytest_jumpstarter_mount.runstate.journal import (
    JOURNAL_PREFIX,
    Entry,
    JournalFile,
    JournalTooLarge,
    journal_path,
    other_runs,
    runs_with_journals,
)
from pytest_jumpstarter_mount.runstate.mountdir import close_run_dir, default_base, directory_lock
from pytest_jumpstarter_mount.sources.deviceid import DeviceIdentity, identify

if TYPE_CHECKING:
    from jumpstarter_driver_ssh_mount import Mount
    from jumpstarter_driver_ssh_mount.client import SSHMountClient
    from jumpstarter_driver_ssh_mount.common.errors import RestoreError
    from jumpstarter_driver_ssh_mount.devicefiles.snapshot import Snapshot
    from pytest_jumpstarter_mount.pertest.contexts import MountingContext

WORKER_OUTPUT_KEY = "jmp_mount_not_restored"


class MountJournal:
    """A mount's ``PreserveJournal``: hands its snapshots to the guard with the device they are on."""

    def __init__(self, guard: RestoreGuard, client: SSHMountClient, remote_path: str) -> None:
        self.guard, self.client, self.remote_path = guard, client, remote_path

    def preserved(self, snapshot: Snapshot) -> None:
        self.guard.record(self.client, self.remote_path, snapshot)

    def restored(self, snapshot: Snapshot, error: RestoreError | None) -> None:
        self.guard.settle(snapshot, error)


class RestoreGuard:
    """Plugin object: this process's restore journals, the take-over of dead runs' ones, the summary lines."""

    def __init__(self, manager: MountingContext) -> None:
        self.manager = manager
        self._lock = threading.RLock()
        self._identities: dict[int, DeviceIdentity] = {}  # id(client) -> its device
        self._journals: dict[str, JournalFile] = {}  # device digest -> this process's journal
        self._taken: list[JournalFile] = []  # journals of dead runs this process took over
        self._open: dict[Snapshot, tuple[JournalFile, int, dict[str, str]]] = {}
        self._count = 0
        self._checked: set[int] = set()  # clients whose device had its left files restored
        self._warned: set[Path] = set()  # directories of other live (or unseen) runs already named
        self.lines: list[str] = []  # the summary lines (this process's, and the xdist workers')

    @property
    def base(self) -> Path:
        return self.manager.settings.dir or default_base()

    def identity(self, client: SSHMountClient) -> DeviceIdentity:
        """The device behind ``client`` (asked once per client)."""
        with self._lock:
            if id(client) not in self._identities:
                self._identities[id(client)] = identify(client, self.manager.settings.describe_source())
            return self._identities[id(client)]

    def attach(self, client: SSHMountClient, mount: Mount) -> None:
        """Journal what is preserved on ``mount`` (a mount of ``client``'s device)."""
        mount.journal = MountJournal(self, client, mount.remote_path)

    # -- this run's journal ----------------------------------------------------------
    def record(self, client: SSHMountClient, remote_path: str, snapshot: Snapshot) -> None:
        """Write ``snapshot``'s originals to the journal before the test can change the files."""
        device = self.identity(client)
        with self._lock:
            path = journal_path(self.manager.mount_dir(), device.digest)  # the directory made again if need be
            journal = self._journals.setdefault(device.digest, JournalFile(path, device.label, device.digest))
            journal.path = path
            self._count += 1
            given = {}
            for device_path, content, mode in snapshot.originals:
                full = posixpath.normpath(posixpath.join(remote_path, relative_to_mount(remote_path, device_path)))
                given[device_path] = full
                journal.entries.append(Entry(full, content, mode, self._count))
            try:
                journal.save()
            except JournalTooLarge as exc:
                from jumpstarter_driver_ssh_mount.common.errors import RestoreError

                journal.entries = [e for e in journal.entries if e.snapshot != self._count]
                raise RestoreError(f"cannot preserve {', '.join(map(shown, given))}: {exc}; preserve less") from None
            self._open[snapshot] = (journal, self._count, given)
        self._warn_about_live_runs(device)

    def settle(self, snapshot: Snapshot, error: RestoreError | None) -> None:
        """Drop what ``snapshot`` put back from the journal; keep the rest, with why."""
        with self._lock:
            found = self._open.pop(snapshot, None)
            if found is None:
                return
            journal, number, given = found
            failed = {given.get(path, path): why for path, why in (error.failed if error else ())}
            if error is not None and not failed:
                failed = dict.fromkeys(given.values(), str(error))
            kept = []
            for entry in journal.entries:
                if entry.snapshot == number:
                    if entry.path not in failed:
                        continue  # put back
                    entry.reason = failed[entry.path]
                kept.append(entry)
            journal.entries = kept
            journal.save()

    def _warn_about_live_runs(self, device: DeviceIdentity) -> None:
        for run in other_runs(self.base, device.digest, f"{self.manager.run_id}-"):
            if run.verdict.dead or run.run_dir in self._warned:
                continue
            self._warned.add(run.run_dir)
            paths = sorted({p for j in run.journals for p in _paths(j)})
            who = f"pid {run.pid}" if run.verdict.alive else f"{run.verdict.why}, which this run cannot see"
            warn(
                f"jumpstarter mount: another pytest run ({who}) has preserved files on {device.label} too "
                f"({', '.join(map(shown, paths)) or 'none left'}); each run puts back what it saw, so the two can undo "
                "each other's restores: run them one at a time"
            )

    # -- what dead runs left ---------------------------------------------------------
    def device_ready(self, client: SSHMountClient) -> None:
        """Before the device's first use: put back what dead runs left on it, and say so."""
        with self._lock:
            if id(client) in self._checked:
                return
            self._checked.add(id(client))
            if not self._anything_left():
                return
            device = self.identity(client)
            with directory_lock(self.base):  # another process restoring: its first test waits for that
                taken = self._take_over(device)
                if taken:
                    self._restore_taken(client, device, taken)

    def _anything_left(self) -> bool:
        """Whether another process has a journal under the base (a cheap look before asking the device).

        The journals of this run's other xdist workers count: one of them may be restoring.
        """
        mine = f"{self.manager.run_id}-{self.manager.worker_id}"
        return any(runs_with_journals(self.base, mine))

    def _take_over(self, device: DeviceIdentity) -> list[JournalFile]:
        """Move dead runs' journals for ``device`` into this run's directory (so only one run restores each)."""
        taken: list[JournalFile] = []
        for run in other_runs(self.base, device.digest, f"{self.manager.run_id}-"):
            if not run.verdict.dead:  # alive, or a process this run cannot see: never taken over
                continue
            for number, path in enumerate(run.journals):
                target = journal_path(self.manager.mount_dir(), device.digest, f"from-{run.pid}-{number}")
                try:
                    os.rename(path, target)
                    taken.append(JournalFile.load(target))
                except FileNotFoundError:
                    continue  # another run took it first
                except (OSError, ValueError, KeyError) as exc:
                    warn(f"jumpstarter mount: cannot read the restore journal {path}: {exc}")
            for partial in run.run_dir.glob(f".{JOURNAL_PREFIX}*.tmp"):  # a write the kill cut short
                partial.unlink(missing_ok=True)
            close_run_dir(run.run_dir)
        taken.sort(key=lambda j: j.created, reverse=True)  # the newest first: the oldest originals win
        self._taken += taken
        return taken

    def _restore_taken(self, client: SSHMountClient, device: DeviceIdentity, taken: list[JournalFile]) -> None:
        from jumpstarter_driver_ssh_mount.common.errors import RestoreError

        paths = [p for journal in taken for p in journal.paths()]
        if not paths:
            for journal in taken:
                journal.save()  # nothing in it: removed
            return
        remote = posixpath.commonpath([posixpath.dirname(p) for p in paths])
        try:
            with self.manager.mounted(client, MarkerSpec(remote=remote)) as mount:
                for journal in taken:
                    error = None
                    try:
                        mount.snapshot_of([(e.path, e.content, e.mode) for e in journal.entries]).restore()
                    except RestoreError as exc:
                        error = exc
                    _settle_taken(journal, error)
        except (Exception, pytest.fail.Exception) as exc:
            for journal in taken:
                _settle_taken(journal, RestoreError(str(exc)))
            warn(f"jumpstarter mount: cannot restore the files an earlier run left changed on {device.label}: {exc}")
            return
        done = [p for p in paths if not any(p in j.paths() for j in taken)]
        if done:
            pids = ", ".join(sorted({str(j.pid) for j in taken}))
            announce(
                self.manager.config,
                f"jumpstarter mount: restored on {device.label}: {', '.join(map(shown, dict.fromkeys(done)))} "
                f"(left changed by run pid {pids}, which ended before restoring them)",
            )

    # -- the end of the run ----------------------------------------------------------
    def unrestored(self) -> list[str]:
        """One line per device file this process could not put back."""
        with self._lock:
            journals = [*self._journals.values(), *self._taken]
        lines = []
        for journal in journals:
            reasons = {e.path: e.reason for e in reversed(journal.entries)}  # the first preserve's reason
            lines += [
                f"NOT restored on {journal.device}: {shown(path)} ({reasons[path]}); "
                "the next run against this device restores it"
                for path in journal.paths()
            ]
        return lines

    @pytest.hookimpl(wrapper=True, trylast=True)
    def pytest_sessionfinish(self) -> Generator[None, None, None]:
        """After the mounts are gone: what is still journaled (for an xdist worker, sent to the controller)."""
        result = yield
        self.lines += self.unrestored()
        workeroutput = getattr(self.manager.config, "workeroutput", None)
        if workeroutput is not None:
            workeroutput[WORKER_OUTPUT_KEY] = list(self.lines)
        return result

    @pytest.hookimpl(optionalhook=True)
    def pytest_testnodedown(self, node: Any, error: object | None) -> None:
        """xdist controller: a worker's lines."""
        self.lines += list((getattr(node, "workeroutput", None) or {}).get(WORKER_OUTPUT_KEY, ()))

    @pytest.hookimpl(wrapper=True, tryfirst=True)  # outside pytest's own: after its short summary
    def pytest_terminal_summary(self, terminalreporter: Any, exitstatus: int) -> Generator[None, None, None]:
        """After pytest's short summary: the files not restored, loud; last, the note on ``jmp shell``'s status."""
        result = yield
        if self.lines:
            terminalreporter.section("jumpstarter mount: device files NOT restored", sep="!", red=True, bold=True)
            for line in self.lines:
                terminalreporter.write_line(line, red=True, bold=True)
        note = shell_exit_note(exitstatus)
        if note:
            terminalreporter.write_line(note, yellow=True, bold=True)
        return result


def _settle_taken(journal: JournalFile, error: RestoreError | None) -> None:
    """Keep only what could not be put back (with why) in a taken-over journal."""
    failed = dict(error.failed) if error is not None else {}
    if error is not None and not failed:
        failed = {e.path: str(error) for e in journal.entries}
    journal.entries = [e for e in journal.entries if e.path in failed]
    for entry in journal.entries:
        entry.reason = failed[entry.path]
    journal.save()


def _paths(path: Path) -> list[str]:
    try:
        return JournalFile.load(path).paths()
    except (OSError, ValueError, KeyError):
        return []
