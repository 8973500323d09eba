"""Liveness you can see: records of runs in another PID namespace, on another host or from an earlier
boot, with real processes (``unshare --pid --fork --mount-proc``, run as root), real pytest runs
and the real loopback device; and known-hosts folders swept after ``kill -9``, never a live run's."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

import pytest

from helpers import (
    LoopbackDevice,
    Suite,
    child_pids,
    folder_owner_pid,
    known_hosts_folders_now,
    private_tmpdir,
    sshfs_mounts,
    wait_until,
)
from jumpstarter_driver_ssh_mount.common.liveness import Liveness, ProcessIdentity, boot_time, judge
from jumpstarter_driver_ssh_mount.common.ownedfolders import KNOWN_HOSTS_FOLDERS
from jumpstarter_driver_ssh_mount.common.procfs import start_time
from pytest_jumpstarter_mount.runstate.journal import Entry, JournalFile, journal_path, other_runs
from pytest_jumpstarter_mount.runstate.runstore import OWNER_FILE as RUN_OWNER_FILE
from pytest_jumpstarter_mount.runstate.runstore import OWNER_TAG
from pytest_jumpstarter_mount.sources.leases import LeaseInfo, record, record_path

UNSHARE = ["unshare", "--pid", "--fork", "--mount-proc", "--kill-child"]
needs_unshare = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("unshare") is None, reason="needs root and unshare(1) for a PID namespace"
)

PRINT_IDENTITY = (
    "import json, sys, time\n"
    "from jumpstarter_driver_ssh_mount.common.liveness import ProcessIdentity\n"
    "print(json.dumps(ProcessIdentity.current().to_record()), flush=True)\n"
    "sys.stdin.read()\n"  # until the test closes our stdin
)

HOLDING_TEST = """
import os, time
from pathlib import Path
import pytest

@pytest.mark.jmp_mount(restore=[{remote!r}])
def test_holds(remote_path):
    conf = remote_path / {relative!r}
    conf.write_text("mode=held\\n")
    ready = os.environ["READY_FILE"]
    Path(ready + ".tmp").write_text(str(remote_path))
    os.rename(ready + ".tmp", ready)
    go, deadline = Path(os.environ["GO_FILE"]), time.monotonic() + 120
    while not go.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert conf.read_text() == "mode=held\\n", "its mount still shows the device"
"""
"""Changes a preserved device file, writes its mountpoint to ``$READY_FILE``, holds until ``$GO_FILE``."""

READING_TEST = """
import pytest

@pytest.mark.jmp_mount(restore=[{remote!r}])
def test_reads(remote_path):
    assert (remote_path / {relative!r}).read_text() == {expected!r}
"""


# -- the rule, with real processes ---------------------------------------------------------------
@contextmanager
def identity_of(argv_prefix: list[str]) -> Iterator[ProcessIdentity]:
    """A live Python process (started under ``argv_prefix``) and the identity it reports for itself."""
    proc = subprocess.Popen(
        [*argv_prefix, sys.executable, "-c", PRINT_IDENTITY], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None and proc.stdin is not None
    try:
        identity = ProcessIdentity.from_record(json.loads(proc.stdout.readline()))
        assert identity is not None
        yield identity
    finally:
        proc.stdin.close()
        proc.wait(timeout=10)


def test_a_process_in_this_namespace_is_alive_then_dead() -> None:
    with identity_of([]) as other:
        assert judge(other).liveness is Liveness.ALIVE
    assert judge(other).liveness is Liveness.DEAD


@needs_unshare
def test_a_live_process_in_another_pid_namespace_is_unseen() -> None:
    with identity_of(UNSHARE) as other:
        me = ProcessIdentity.current()
        assert other.pid == 1 and other.pidns != me.pidns and other.boot == me.boot
        verdict = judge(other)
        assert verdict.liveness is Liveness.UNSEEN and verdict.why == f"pid 1 in PID namespace {other.pidns}"
        legacy = ProcessIdentity(other.pid, other.start)  # the same record without the new fields
        assert judge(legacy).liveness is not Liveness.UNSEEN  # judged by pid and start, as before


def test_host_and_boot_decide_before_pid_and_start() -> None:
    with identity_of([]) as live:
        before_boot = (boot_time() or 0) - 3600
        assert judge(replace(live, host="build-2")).why == f"pid {live.pid} on host build-2"
        assert judge(replace(live, boot="0" * 32), written=before_boot).liveness is Liveness.DEAD
        since_boot = judge(replace(live, boot="0" * 32), written=before_boot + 7200)
        assert since_boot.liveness is Liveness.UNSEEN and "another machine named" in since_boot.why


# -- a live run in another PID namespace -----------------------------------------------------------
def owned_files(run_dir: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(run_dir.iterdir()) if p.is_file()}


def known_hosts_folders_of(pid: int, tmpdir: Path | None = None) -> list[Path]:
    """The known-hosts folders (in ``tmpdir``, default the temp dir) whose owner record names ``pid``."""
    return [Path(f) for f in known_hosts_folders_now(tmpdir) if folder_owner_pid(f) == pid]


def remove_by_hand(run_dir: Path) -> None:
    """After a failure: what a killed run in another PID namespace left (files unlinked, directories rmdir'd)."""
    if not run_dir.is_dir():
        return
    for child in run_dir.iterdir():
        if child.is_dir():
            assert not sshfs_mounts(child), f"{child} still mounted"
            child.rmdir()
        else:
            child.unlink()
    run_dir.rmdir()


@needs_unshare
def test_a_live_run_in_another_pid_namespace_is_left_alone(suite: Suite, device: LoopbackDevice) -> None:
    """Its run directory, mountpoint, journal and known-hosts folder stay; the header says so once."""
    conf = device.root / "etc" / "liveness.conf"
    conf.write_text("mode=factory\n")
    remote = device.remote("/etc/liveness.conf")
    suite.pytester.makepyfile(
        test_hold=HOLDING_TEST.format(remote=remote, relative="etc/liveness.conf"),
        test_read=READING_TEST.format(remote=remote, relative="etc/liveness.conf", expected="mode=held\n"),
    )
    ready, go = suite.pytester.path / "ready", suite.pytester.path / "go"
    held = subprocess.Popen(
        [*UNSHARE, sys.executable, "-m", "pytest", *suite.args(), "test_hold.py"],
        cwd=suite.pytester.path,
        env={**os.environ, "READY_FILE": str(ready), "GO_FILE": str(go)},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    run_dir = None
    try:
        wait_until(lambda: ready.exists() or held.poll() is not None, 60, "the run in its namespace to mount")
        assert held.poll() is None, held.communicate()[0]
        mountpoint = Path(ready.read_text())
        run_dir = mountpoint.parent
        before = owned_files(run_dir)
        assert any(name.startswith("journal-") for name in before)
        [folder] = known_hosts_folders_of(1)  # pid 1: the pytest process is its namespace's first
        assert conf.read_text() == "mode=held\n"

        result = suite.run("test_read.py")  # the same device and --jmp-mount-dir, from the root namespace
        result.assert_outcomes(passed=1, warnings=1)  # the file was not restored under the holding run
        out = result.stdout.str()
        assert out.count("left alone") == 1, out
        result.stdout.fnmatch_lines(
            [
                # "*": other runs in namespaces of their own (a parallel worker's) may share the known-hosts parent
                f"jumpstarter mount: * records in {suite.mount_dir}, {KNOWN_HOSTS_FOLDERS.parent} belong to "
                "processes this run cannot see (pid 1 in PID namespace *); left alone",
                "*JumpstarterMountWarning: jumpstarter mount: another pytest run (pid 1 in PID namespace *, "
                "which this run cannot see) has preserved files on * too*",
            ]
        )
        assert "restored on" not in out and "cleaned up" not in out
        assert owned_files(run_dir) == before and mountpoint.is_dir() and folder.is_dir()
    finally:
        go.write_text("")
        out, _ = held.communicate(timeout=90)
        if run_dir is not None and held.returncode != 0:
            remove_by_hand(run_dir)
    assert held.returncode == 0, out  # its mount kept working to the end, and it put the file back itself
    assert conf.read_text() == "mode=factory\n"
    assert not folder.exists()
    conf.unlink()
    suite.assert_clean()


# -- records from another host, an earlier boot, and before these fields existed ---------------------
def fake_run(base: Path, name: str, owner: dict[str, object], written: float | None = None) -> Path:
    """A run directory as a run writes it: owner record, an (empty) mountpoint, an unreleased lease.

    The owner record is in the Python-literal format of earlier versions: a sweep still reads it.
    """
    run = base / name
    (run / "jmp-mount-left").mkdir(parents=True, mode=0o700)
    record(run, LeaseInfo(name=f"lease-{name}", exporter="board", alias="no-such-client"), "main")
    (run / RUN_OWNER_FILE).write_text(repr({"tag": OWNER_TAG, "uid": os.getuid(), **owner}))
    if written is not None:
        os.utime(run / RUN_OWNER_FILE, (written, written))
    return run


def test_records_of_another_host_stay_and_of_an_earlier_boot_go(suite: Suite) -> None:
    suite.pytester.makepyfile(test_nothing="def test_nothing():\n    pass\n")
    sleeper = subprocess.Popen(["sleep", "300"])
    try:
        live = ProcessIdentity.current()
        live = replace(live, pid=sleeper.pid, start=start_time(sleeper.pid))
        dead = replace(live, start=(live.start or 0) - 1)  # that pid, another start: the process is gone
        base = suite.mount_dir
        other_host = fake_run(base, "host", replace(dead, host="build-2").to_record())
        earlier_boot = fake_run(base, "boot", replace(live, boot="0" * 32).to_record(), (boot_time() or 0) - 3600)
        legacy_live = fake_run(base, "old-live", {"pid": live.pid, "start": live.start})
        legacy_dead = fake_run(base, "old-dead", {"pid": dead.pid, "start": dead.start})
        lease = record_path(other_host, "lease-host").read_bytes()

        result = suite.run("test_nothing.py")
        result.assert_outcomes(passed=1)
        out = result.stdout.str()
        assert out.count("this run cannot see") == 1, out
        result.stdout.fnmatch_lines(
            [
                f"jumpstarter mount: cleaned up 2 stale mountpoint(s) of a killed run in {base}",
                f"jumpstarter mount: 1 record in {base} belongs to a process this run cannot see "
                f"(pid {dead.pid} on host build-2); left alone",
            ]
        )
        assert "lease-host" not in out and "lease-boot" in out and "lease-old-dead" in out
        assert not earlier_boot.exists() and not legacy_dead.exists()  # an earlier boot is dead, whatever its pid
        assert (other_host / "jmp-mount-left").is_dir() and record_path(other_host, "lease-host").read_bytes() == lease
        assert (legacy_live / "jmp-mount-left").is_dir()  # no new fields: pid and start time, as before

        digest = "d" * 16
        entries = [Entry("/etc/x.conf", b"x", 0o644)]
        JournalFile(journal_path(other_host, digest), "board", digest, entries, owner=dead).save()
        [run] = [r for r in other_runs(base, digest, "mine-") if r.run_dir == other_host]
        assert run.verdict.unseen and run.pid == dead.pid  # the take-over skips it
    finally:
        sleeper.kill()
        sleeper.wait()
        for name in ("host", "old-live", "boot", "old-dead"):
            remove_by_hand(suite.mount_dir / name)
    suite.assert_clean()


# -- known-hosts folders ------------------------------------------------------------------------------
SIMPLE_HOLD = """
import os, time
from pathlib import Path

def test_holds(remote_fs):
    Path(os.environ["READY_FILE"]).write_text(str(remote_fs.mountpoint))
    go, deadline = Path(os.environ["GO_FILE"]), time.monotonic() + 120
    while not go.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
"""


def start_holding(suite: Suite, name: str, tmpdir: Path) -> tuple[subprocess.Popen[str], Path]:
    ready, go = suite.pytester.path / f"{name}.ready", suite.pytester.path / f"{name}.go"
    proc = subprocess.Popen(
        [sys.executable, "-m", "pytest", *suite.args(), "test_hold.py"],
        cwd=suite.pytester.path,
        env={**os.environ, "READY_FILE": str(ready), "GO_FILE": str(go), "TMPDIR": str(tmpdir)},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    wait_until(lambda: ready.exists() or proc.poll() is not None, 60, f"run {name} to mount")
    assert proc.poll() is None, proc.communicate()[0]
    return proc, go


def test_kill_9_leaves_a_known_hosts_folder_the_next_run_sweeps(suite: Suite, monkeypatch: pytest.MonkeyPatch) -> None:
    """In a TMPDIR of its own: no other run's sweep (at its start) takes the killed run's folder first."""
    suite.pytester.makepyfile(test_hold=SIMPLE_HOLD, test_nothing="def test_nothing():\n    pass\n")
    with private_tmpdir() as tmpdir:
        live, go = start_holding(suite, "live", tmpdir)
        try:
            killed, _ = start_holding(suite, "killed", tmpdir)
            [killed_folder] = known_hosts_folders_of(killed.pid, tmpdir)
            sshfs = [p for p in child_pids(killed.pid) if Path(f"/proc/{p}/comm").read_text().strip() == "sshfs"]
            killed.send_signal(signal.SIGKILL)
            killed.communicate()
            wait_until(lambda: not any(Path(f"/proc/{p}").exists() for p in sshfs), 15, "sshfs to exit")
            [live_folder] = known_hosts_folders_of(live.pid, tmpdir)
            assert (killed_folder / "known_hosts").exists()  # kill -9 gives no chance to remove it

            monkeypatch.setenv("TMPDIR", str(tmpdir))
            result = suite.run("test_nothing.py")
            result.assert_outcomes(passed=1)
            assert not killed_folder.exists()
            assert (live_folder / "known_hosts").exists() and "cannot see" not in result.stdout.str()
        finally:
            go.write_text("")
            out, _ = live.communicate(timeout=60)
        assert live.returncode == 0, out
        assert not live_folder.exists()  # and the (empty) parent went with it
    suite.assert_clean()


def test_known_hosts_folders_without_a_usable_parent_or_owner(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A parent someone else can enter is not used (the old place instead); a folder without an owner
    record is removed only while empty (its maker, if alive, makes another); one with files stays."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    parent = KNOWN_HOSTS_FOLDERS.parent
    parent.mkdir(mode=0o777)
    parent.chmod(0o777)
    folder = KNOWN_HOSTS_FOLDERS.make()
    assert folder.parent == tmp_path and folder.name.startswith("jmp-mount-known-hosts-")
    KNOWN_HOSTS_FOLDERS.remove(folder)
    assert sorted(os.listdir(tmp_path)) == [parent.name]

    parent.chmod(0o700)
    empty, in_use = parent / "empty", parent / "in-use"
    empty.mkdir()
    in_use.mkdir()
    (in_use / "known_hosts").write_text("")
    mine = KNOWN_HOSTS_FOLDERS.make()
    swept = KNOWN_HOSTS_FOLDERS.sweep()
    assert swept.removed == [] and swept.unseen == []
    assert not empty.exists() and in_use.is_dir() and (mine / "owner").is_file()  # this process's: alive
    KNOWN_HOSTS_FOLDERS.remove(mine)
    (in_use / "known_hosts").unlink()
    KNOWN_HOSTS_FOLDERS.remove(in_use)
    assert os.listdir(tmp_path) == []  # the last folder took the parent with it
