"""Caps hold on the bytes actually read, whatever size the device reports; work stops at its deadline.

Real sshd, real sshfs. The session's loopback device is not chrooted: a mount of ``/`` shows
this host's /proc as the device's (read only).
"""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from helpers import LoopbackDevice, descendants, target, wait_until
from jumpstarter_driver_ssh_mount import RestoreError, SshfsTarget, start_mount
from jumpstarter_driver_ssh_mount.devicefiles.collection import COLLECT_THREAD, run_bounded

MIB = 1 << 20


def root_mount(device: LoopbackDevice, mountpoint: Path, cache: str = "fresh"):
    spec = SshfsTarget(device.host, device.port, device.user, "/")
    return start_mount(spec, mountpoint, identity=device.identity(), timeout=15, cache=cache)


def collect_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == COLLECT_THREAD]


@pytest.fixture
def scratch(device: LoopbackDevice) -> Iterator[Path]:
    """A directory on the device for one test, emptied afterwards (on the device side)."""
    path = device.root / "data" / f"bounded-{time.monotonic_ns()}"
    path.mkdir()
    yield path
    for child in path.iterdir():
        child.unlink()
    path.rmdir()


def files_under(path: Path) -> list[Path]:
    return [Path(d) / f for d, _, names in os.walk(path) for f in names]


def test_size_zero_proc_file_is_capped(device: LoopbackDevice, mountpoint: Path, tmp_path: Path) -> None:
    with root_mount(device, mountpoint) as m:
        assert os.stat(m / "/proc/self/status").st_size == 0
        result = m.collect(["/proc/self/status"], tmp_path / "out", max_bytes=10)
        with pytest.raises(RestoreError, match="exceed 10 bytes"):
            m.snapshot("/proc/self/status", max_bytes=10)
        text = m.wait_for("/proc/self/status", contains="Name:", timeout=10, max_bytes=4096)
    assert result.files == [] and result.bytes == 0
    assert files_under(tmp_path / "out") == []  # nothing of it stayed on the test host
    assert "/proc/self/status: skipped, it held more than the 10 bytes left of the 10-byte cap" in result.notes[0]
    assert result.cut_short == ["the 10-byte cap"]
    assert text.startswith("Name:") and len(text) <= 4096


def test_file_grown_after_lstat_is_cut_at_the_cap(
    device: LoopbackDevice, mountpoint: Path, scratch: Path, tmp_path: Path
) -> None:
    """ "fast": sshfs keeps the small size it saw for 20 s, while reads (direct_io on /) get every byte."""
    log = scratch / "grows.log"
    log.write_bytes(b"x" * 1024)
    with root_mount(device, mountpoint, cache="fast") as m:
        local = m / str(log)
        assert local.stat().st_size == 1024
        with open(log, "ab") as f:  # the device's file grows by 5 MiB
            f.write(os.urandom(5 * MIB))
        assert local.lstat().st_size == 1024, "the mount no longer shows the stale size: nothing is tested"
        result = m.collect([str(log)], tmp_path / "out", max_bytes=64 * 1024)
        with pytest.raises(RestoreError, match="exceed 65536 bytes"):
            m.snapshot(str(log), max_bytes=64 * 1024)
    assert result.files == [] and result.bytes == 0
    assert "held more than the 65536 bytes left of the 65536-byte cap (its size said 1024)" in result.notes[0]
    assert files_under(tmp_path / "out") == []


def test_file_written_during_collection_is_cut_at_the_cap(
    device: LoopbackDevice, mountpoint: Path, scratch: Path, tmp_path: Path
) -> None:
    """A device-side writer appends while the collection reads: never more than the cap is copied."""
    log = scratch / "busy.log"
    log.write_bytes(b"")
    writer = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import os, sys\nblock = os.urandom(1 << 16)\n"
            "with open(sys.argv[1], 'ab', buffering=0) as f:\n    while True:\n        f.write(block)\n",
            str(log),
        ]
    )
    try:
        wait_until(lambda: log.stat().st_size > 256 * 1024, timeout=30, what="the writer to start")
        with root_mount(device, mountpoint) as m:
            result = m.collect([str(log)], tmp_path / "out", max_bytes=MIB)
    finally:
        writer.kill()
        writer.wait()
    assert result.bytes <= MIB
    copied = files_under(tmp_path / "out")
    assert sum(p.stat().st_size for p in copied) <= MIB
    assert result.files == [] or result.bytes == copied[0].stat().st_size


def test_collection_stops_reading_at_its_deadline(
    device: LoopbackDevice, mountpoint: Path, scratch: Path, tmp_path: Path
) -> None:
    big = scratch / "huge.img"
    with open(big, "wb") as f:
        f.truncate(4 << 30)  # sparse: takes no space on the device, reads as 4 GiB of zeros
    with start_mount(target(device, "/data"), mountpoint, identity=device.identity(), timeout=15) as m:
        huge = device.remote(f"/data/{scratch.name}/huge.img")
        result = m.collect([huge], tmp_path / "out", max_bytes=8 << 30, timeout=0.5)
        wait_until(lambda: not collect_threads(), timeout=30, what="the collection thread to end")
    assert result.files == []
    assert "it timed out" in result.cut_short
    assert any("collection timed out while reading it" in n for n in result.notes)
    assert files_under(tmp_path / "out") == []  # the partial copy was removed


def test_abandoned_collection_thread_stops_reading(tmp_path: Path) -> None:
    """A collection still running when its caller gives up is told to stop, and ends."""
    reads: list[int] = []

    def work(stop: threading.Event) -> None:
        while not stop.is_set():
            reads.append(1)
            time.sleep(0.01)

    problem = run_bounded(work, 0.2)
    assert problem is not None and "did not finish within 0.2s" in problem
    wait_until(lambda: not collect_threads(), timeout=10, what="the abandoned thread to end")


@pytest.fixture
def own_device(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LoopbackDevice]:
    dev = LoopbackDevice(tmp_path_factory.mktemp("frozen-device")).setup().start()
    yield dev
    dev.stop()


def test_thread_abandoned_on_a_frozen_device_stops_reading(
    own_device: LoopbackDevice, mountpoint: Path, tmp_path: Path
) -> None:
    """The device stops answering mid-read: collect() returns at its bound, the thread is left
    blocked in the read; once the device answers again, it sees the stop flag, removes its
    partial copy and ends (instead of reading on to the cap)."""
    with open(own_device.root / "data" / "huge.img", "wb") as f:
        f.truncate(4 << 30)
    out = tmp_path / "out"
    frozen: list[int] = []

    def freeze_when_copying() -> None:
        wait_until(lambda: files_under(out), timeout=30, what="the copy to start")
        frozen.extend(descendants(own_device.pid))  # its sessions (the sftp server), not the listener
        for pid in frozen:
            os.kill(pid, signal.SIGSTOP)

    freezer = threading.Thread(target=freeze_when_copying)
    try:
        with start_mount(target(own_device, "/data"), mountpoint, identity=own_device.identity(), timeout=15) as m:
            freezer.start()
            result = m.collect([own_device.remote("/data/huge.img")], out, max_bytes=8 << 30, timeout=1.0)
            freezer.join()
            assert frozen, "the device was never frozen"
            assert any("did not finish within 2s" in n for n in result.notes)
            assert collect_threads(), "the thread ended while the device was frozen: nothing is tested"
            for pid in frozen:
                os.kill(pid, signal.SIGCONT)
            frozen.clear()
            wait_until(lambda: not collect_threads(), timeout=30, what="the abandoned thread to end")
            assert files_under(out) == []  # its partial copy removed, nothing read on to the cap
    finally:
        for pid in frozen:
            os.kill(pid, signal.SIGCONT)


# -- what collected files look like on the test host and in reports ---------------------------
EVIL_NAME = "evil\nnote: all files collected\x1b[32m.log"


@pytest.fixture
def odd_files(device: LoopbackDevice) -> Iterator[Path]:
    """A device directory with a 0600 file, a 0640 file and a file whose name has a newline and an escape."""
    path = device.root / "var/log" / f"odd-{time.monotonic_ns()}"
    path.mkdir()
    for name, mode in (("secret.log", 0o600), ("shared.log", 0o640), (EVIL_NAME, 0o644)):
        (path / name).write_text(f"{name!r}\n")
        (path / name).chmod(mode)
    yield path
    for child in path.iterdir():
        child.unlink()
    path.rmdir()


def test_artifacts_keep_modes_in_a_private_run_folder_and_names_are_escaped(suite, odd_files: Path) -> None:
    import xml.etree.ElementTree as ET

    from helpers import artifacts_run

    dev = suite.device
    glob_ = dev.remote(f"/var/log/{odd_files.name}") + "/*"
    suite.pytester.makepyfile(test_odd="def test_fails(remote_fs):\n    assert False\n")
    xml = suite.pytester.path / "junit.xml"
    result = suite.run(f"--jmp-mount-collect={glob_}", f"--junitxml={xml}")
    result.assert_outcomes(failed=1)
    run = artifacts_run(suite.pytester.path)
    copies = run / "test_odd.py_test_fails" / dev.remote(f"/var/log/{odd_files.name}").lstrip("/")
    assert stat.S_IMODE((copies / "secret.log").stat().st_mode) == 0o600
    assert stat.S_IMODE((copies / "shared.log").stat().st_mode) == 0o640
    assert (copies / EVIL_NAME).read_text() == (odd_files / EVIL_NAME).read_text()
    for directory in (run, *[p for p in copies.parents if p.is_relative_to(run)], copies):
        assert stat.S_IMODE(directory.stat().st_mode) == 0o700, directory
    out = result.stdout.str()
    assert "\nnote: all files collected" not in out  # the name did not start a line of its own
    assert "\x1b[32m" not in out
    assert "evil\\nnote: all files collected\\x1b[32m.log" in out
    properties = [p.get("value") or "" for p in ET.parse(xml).iter("property") if p.get("name") == "jmp_mount_artifact"]
    assert len(properties) == 3 and not any("\n" in p or "\x1b" in p for p in properties)
    suite.assert_clean()


# -- the rules themselves, on local files ------------------------------------------------------
@pytest.mark.parametrize(
    ("remote", "direct_io"),
    [
        ("/", True),
        ("/proc", True),
        ("/proc/sys/kernel", True),
        ("/sys", True),
        ("/sys/kernel/debug/", True),
        ("/var/log", False),
        ("/data", False),
        ("/system", False),
        ("/procfs", False),
    ],
)
def test_which_mounts_bypass_the_page_cache(remote: str, direct_io: bool) -> None:
    from jumpstarter_driver_ssh_mount.sshfs.command import default_options

    for cache in ("fresh", "fast"):  # device truth for /proc is no matter of speed
        assert ("direct_io" in default_options(None, cache=cache, remote_path=remote)) is direct_io
    assert "direct_io" not in default_options(None)  # no mount path given: nothing added


def test_shown_escapes_what_could_forge_a_report_line() -> None:
    from jumpstarter_driver_ssh_mount.devicefiles.devicepaths import shown

    assert shown("/var/log/app.log") == "/var/log/app.log"
    assert shown("/var/log/ünïcode ok.log") == "/var/log/ünïcode ok.log"
    assert shown(EVIL_NAME) == "evil\\nnote: all files collected\\x1b[32m.log"
    assert shown("a\\b") == "a\\\\b"  # unambiguous: an escaped name never looks like another name
    assert shown(os.fsdecode(b"bad\xff")) == "bad\\xff"
    assert "\n" not in shown("x\r\n\u2028y") and "\u2028" not in shown("x\u2028y")


def test_bounded_reads_of_local_files(tmp_path: Path) -> None:
    from jumpstarter_driver_ssh_mount.devicefiles.boundedread import (
        NotRegularFile,
        copy_at_most,
        read_at_most,
        read_each,
        read_tail,
    )
    from jumpstarter_driver_ssh_mount.devicefiles.fs import OverLimit
    from jumpstarter_driver_ssh_mount.devicefiles.localfs import LocalDirFS

    fs = LocalDirFS(tmp_path, "/")
    src = tmp_path / "src"
    src.write_bytes(b"0123456789" * 10_000)
    src.chmod(0o640)
    data, _ = read_at_most(fs, "/src", 10)
    assert data == b"01234567890"  # the cap and one byte to notice
    assert read_tail(fs, "/src", 5) == b"56789"
    assert copy_at_most(fs, "/src", tmp_path / "small", 10) is None and not (tmp_path / "small").exists()
    copied = copy_at_most(fs, "/src", tmp_path / "whole", 100_000)
    assert copied is not None and copied[0] == 100_000
    assert stat.S_IMODE((tmp_path / "whole").stat().st_mode) == 0o640
    with pytest.raises(NotRegularFile):
        read_at_most(fs, "/", 10)
    (tmp_path / "link").symlink_to(src)
    with pytest.raises(OSError):  # ELOOP: never followed
        read_at_most(fs, "/link", 10)
    assert read_tail(fs, "/link", 5) == b"56789"  # wait_for waits on the path it was given, link or not
    cap: Any = 2.0  # a cap given as a float, as a caller ignoring the type hints would
    assert read_at_most(fs, "/src", cap)[0] == b"012" and read_tail(fs, "/src", cap) == b"89"
    many = fs.read_many(["/src", "/whole", "/missing"], 150_000)  # the default: read_each, one by one
    assert many["/src"] == b"0123456789" * 10_000
    assert isinstance(many["/whole"], OverLimit)  # 50_000 bytes were left of the cap
    assert isinstance(many["/missing"], FileNotFoundError)
    assert read_each(fs, ["/whole"], 100_000) == {"/whole": b"0123456789" * 10_000}


def test_restore_journal_is_bounded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from pytest_jumpstarter_mount.runstate import journal
    from pytest_jumpstarter_mount.runstate.journal import Entry, JournalFile, JournalTooLarge

    monkeypatch.setattr(journal, "JOURNAL_MAX_BYTES", 1000)
    small = JournalFile(tmp_path / "journal-a.json", "device", "a", [Entry("/etc/x", b"x" * 100, 0o644)])
    small.save()
    assert JournalFile.load(small.path).entries[0].content == b"x" * 100
    big = JournalFile(tmp_path / "journal-b.json", "device", "b", [Entry("/etc/y", b"y" * 1000, 0o644)])
    with pytest.raises(JournalTooLarge):
        big.save()
    assert not big.path.exists()
    big.path.write_text('{"device": "d", "digest": "b", "entries": []}' + " " * 2000)  # left by someone else
    with pytest.raises(JournalTooLarge):
        JournalFile.load(big.path)


def test_a_file_matched_twice_is_copied_once(tmp_path: Path) -> None:
    from jumpstarter_driver_ssh_mount.devicefiles.collection import Collection, collect

    tree = tmp_path / "dev"
    (tree / "log").mkdir(parents=True)
    (tree / "log" / "messages").write_text("boot\n")
    from jumpstarter_driver_ssh_mount.devicefiles.localfs import LocalDirFS

    fs = LocalDirFS(tree, "/")
    result = Collection()
    for glob_ in ("/log/*", "/log/messages", "/log/*"):
        collect(fs, "/", lambda p: p, glob_, tmp_path / "out", result, deadline=time.monotonic() + 30)
    assert result.files == [tmp_path / "out/log/messages"] and result.bytes == 5 and result.notes == []
    again = Collection()  # a second collection into the same place replaces the copy
    collect(fs, "/", lambda p: p, "/log/*", tmp_path / "out", again, deadline=time.monotonic() + 30)
    assert again.files == [tmp_path / "out/log/messages"] and again.notes == []


def test_a_preserve_the_journal_cannot_hold_is_refused_before_the_change(suite, device: LoopbackDevice) -> None:
    """A journal that would pass its bound refuses the preserve: the test fails there, before it changes
    anything, and no journal is left (the bound lowered to 2000 bytes in the run's conftest)."""
    from helpers import COUNTING_CONFTEST

    name = f"big-{time.monotonic_ns()}.conf"
    conf = device.root / "etc" / name
    conf.write_text("x" * 4000)
    suite.pytester.makeconftest(
        COUNTING_CONFTEST
        + "\nimport pytest_jumpstarter_mount.runstate.journal as journal\njournal.JOURNAL_MAX_BYTES = 2000\n"
    )
    suite.pytester.makepyfile(
        test_big=f"""
        def test_preserves_too_much(remote_fs):
            remote_fs.preserve({("etc/" + name)!r})
            (remote_fs / {("etc/" + name)!r}).write_text("changed")
        """
    )
    try:
        result = suite.run()
        result.assert_outcomes(failed=1)
        refusal = f"*RestoreError: cannot preserve etc/{name}: the restore journal * would exceed 2000 bytes*"
        result.stdout.fnmatch_lines([refusal])
        assert conf.read_text() == "x" * 4000  # refused before the test changed it
        assert list(suite.mount_dir.glob("*/journal-*.json")) == []
        assert "NOT restored" not in result.stdout.str()
        suite.assert_clean()
    finally:
        conf.unlink()
