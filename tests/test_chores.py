"""Device-file chores on both backends (a real sshfs mount, a real SFTP session): preserve/restore, wait_for,
collecting failure artifacts; through the core and through the plugin (``--jmp-mount-backend``)."""

from __future__ import annotations

import re
import stat
import threading
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from helpers import LoopbackDevice, Suite, artifacts_run, device_files
from jumpstarter_driver_ssh_mount import RestoreError, WaitTimeoutError
from jumpstarter_driver_ssh_mount.devicefiles.collection import split_glob


@pytest.fixture
def mount(device: LoopbackDevice, mountpoint: Path, backend: str):
    with device_files(backend, device, mountpoint) as m:
        yield m


@pytest.fixture
def scratch(device: LoopbackDevice):
    """A directory on the device for one test, emptied afterwards (on the device side)."""
    path = device.root / "data" / f"scratch-{time.monotonic_ns()}"
    path.mkdir()
    yield path
    for child in path.iterdir():
        if child.is_dir() and not child.is_symlink():
            child.rmdir()
        else:
            child.unlink()
    path.rmdir()


def rel(device: LoopbackDevice, path: Path) -> str:
    """The device path of ``path`` (a file under the device's root on this host)."""
    return device.remote("/" + str(path.relative_to(device.root)))


def test_snapshot_restores_content_mode_and_absence(mount, device: LoopbackDevice, scratch: Path) -> None:
    conf, new = scratch / "app.conf", scratch / "new.conf"
    conf.write_text("original\n")
    conf.chmod(0o640)
    snap = mount.snapshot(rel(device, conf), rel(device, new))
    (mount / rel(device, conf)).write_text("changed by test\n")
    (mount / rel(device, conf)).chmod(0o600)
    (mount / rel(device, new)).write_text("should vanish\n")
    snap.restore()
    assert conf.read_text() == "original\n"
    assert stat.S_IMODE(conf.stat().st_mode) == 0o640
    assert not new.exists()


def test_preserved_files_come_back_before_unmount(
    device: LoopbackDevice, mountpoint: Path, scratch: Path, backend: str
) -> None:
    conf = scratch / "kept.conf"
    conf.write_text("v1\n")
    with device_files(backend, device, mountpoint) as m:
        m.preserve(rel(device, conf))
        (m / rel(device, conf)).write_text("v2\n")
    assert conf.read_text() == "v1\n"


def test_restore_failure_names_the_file(mount, device: LoopbackDevice, scratch: Path) -> None:
    conf = scratch / "c.conf"
    conf.write_text("x")
    snap = mount.snapshot(rel(device, conf))
    conf.unlink()
    conf.mkdir()  # a directory where the file was: it cannot be written back
    with pytest.raises(RestoreError, match=re.escape(rel(device, conf))):
        snap.restore()
    conf.rmdir()


def test_snapshot_refuses_directories_and_oversize(mount, device: LoopbackDevice, scratch: Path) -> None:
    with pytest.raises(RestoreError, match="not a regular file"):
        mount.snapshot(rel(device, scratch))
    (scratch / "big").write_bytes(b"x" * 2048)
    with pytest.raises(RestoreError, match="exceed 1024 bytes"):
        mount.snapshot(rel(device, scratch / "big"), max_bytes=1024)


def test_wait_for_sees_a_background_writer(mount, device: LoopbackDevice, scratch: Path) -> None:
    log = scratch / "status.log"
    log.write_text("booting\n")

    def writer() -> None:
        for line in ("starting services\n", "READY pid=42\n"):
            time.sleep(0.3)
            with open(log, "a") as f:
                f.write(line)

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        text = mount.wait_for(rel(device, log), contains=re.compile(r"READY pid=\d+"), timeout=10)
    finally:
        thread.join()
    assert text.endswith("READY pid=42\n")
    assert mount.wait_for(rel(device, scratch / "later"), exists=False, timeout=1) is None


def test_wait_for_timeout_shows_last_content(mount, device: LoopbackDevice, scratch: Path) -> None:
    log = scratch / "slow.log"
    log.write_text("still booting, step 7 of 9\n")
    with pytest.raises(WaitTimeoutError, match=r"did not contain 'READY' within 0\.5s; last content ends: .*step 7"):
        mount.wait_for(rel(device, log), contains="READY", timeout=0.5)
    with pytest.raises(WaitTimeoutError, match=r"did not appear within 0\.3s"):
        mount.wait_for(rel(device, scratch / "never"), timeout=0.3)


def test_collect_caps_and_symlinks(mount, device: LoopbackDevice, scratch: Path, tmp_path: Path) -> None:
    (scratch / "a.log").write_text("a" * 100)
    (scratch / "b.log").write_text("b" * 100)
    (scratch / "huge.log").write_text("h" * 5000)
    (scratch / "escape.log").symlink_to("/etc/hostname")
    result = mount.collect([rel(device, scratch) + "/*.log"], tmp_path / "out", max_bytes=1000)
    names = sorted(p.name for p in result.files)
    assert names == ["a.log", "b.log"]
    assert (tmp_path / "out" / rel(device, scratch).lstrip("/") / "a.log").read_text() == "a" * 100  # device path kept
    notes = "\n".join(result.notes)
    assert "escape.log: skipped, a symlink (not followed)" in notes
    assert "huge.log: skipped, 5000 bytes would pass the 1000-byte cap" in notes


def test_split_glob() -> None:
    assert split_glob("/var/log/*.log") == ("/var/log", "*.log")
    assert split_glob("/var/log/messages") == ("/var/log/messages", "")
    assert split_glob("/var/*/x.log") == ("/var", "*/x.log")


# -- through the plugin --------------------------------------------------------------
def test_failed_test_collects_artifacts(suite: Suite, backend: str) -> None:
    dev = suite.device
    suite.pytester.makepyfile(
        test_art=f"""
        import pytest

        def test_fails(remote_fs):
            assert False, "device misbehaved"

        def test_passes(remote_fs):
            pass

        @pytest.mark.jmp_mount(collect=[{dev.remote("/etc/os-release")!r}])
        def test_marker_collect(remote_fs):
            assert False
        """
    )
    xml = suite.pytester.path / "junit.xml"
    result = suite.run(
        f"--jmp-mount-collect={dev.remote('/var/log')}/*", f"--junitxml={xml}", f"--jmp-mount-backend={backend}"
    )
    result.assert_outcomes(failed=2, passed=1)
    art = artifacts_run(suite.pytester.path)
    fails = art / "test_art.py_test_fails" / dev.remote("/var/log").lstrip("/")
    assert (fails / "messages").read_text() == (dev.root / "var/log/messages").read_text()
    assert not (art / "test_art.py_test_passes").exists()
    marker = art / "test_art.py_test_marker_collect" / dev.remote("/etc/os-release").lstrip("/")
    assert marker.read_text().startswith('NAME="Loopback Device"')
    result.stdout.fnmatch_lines(["*- jumpstarter mount artifacts -*", f"collected: {fails / 'messages'}"])
    properties = [p.get("value") for p in ET.parse(xml).iter("property") if p.get("name") == "jmp_mount_artifact"]
    assert str(fails / "messages") in properties
    suite.assert_clean()


def test_collect_cap_and_collect_without_a_mount(suite: Suite, backend: str) -> None:
    dev = suite.device
    suite.pytester.makepyfile(
        test_cap="""
        def test_uses_mount(remote_fs):
            assert False

        def test_no_mount():
            assert False
        """
    )
    logs = dev.remote("/var/log")
    result = suite.run(
        f"--jmp-mount-collect={logs}/*",
        f"--jmp-mount-collect={logs}/app/*",
        "--jmp-mount-collect-max-bytes=100",
        f"--jmp-mount-backend={backend}",
    )
    result.assert_outcomes(failed=2)
    result.stdout.fnmatch_lines(["*messages: skipped, 691 bytes would pass the 100-byte cap*"])
    art = artifacts_run(suite.pytester.path)
    for test in ("test_uses_mount", "test_no_mount"):  # the second through a temporary mount of /
        assert (art / f"test_cap.py_{test}" / logs.lstrip("/") / "app/app.log").read_text() == "app started\n"
        assert not (art / f"test_cap.py_{test}" / logs.lstrip("/") / "messages").exists()
    suite.assert_clean()


@pytest.mark.parametrize("outcome", ["pass", "fail", "error"])
def test_marker_restore(suite: Suite, outcome: str, backend: str) -> None:
    dev = suite.device
    conf = dev.root / "etc" / f"app-{outcome}.conf"
    conf.write_text("factory settings\n")
    absent = dev.root / "etc" / f"created-{outcome}.conf"
    body = {"pass": "pass", "fail": "assert False", "error": "raise RuntimeError('boom')"}[outcome]
    suite.pytester.makepyfile(
        test_restore=f"""
        import pytest

        @pytest.fixture
        def later_breaks(request):
            yield
            if {outcome!r} == "error":
                raise RuntimeError("teardown error")

        @pytest.mark.jmp_mount(restore=[{dev.remote(f"/etc/app-{outcome}.conf")!r},
                                        {dev.remote(f"/etc/created-{outcome}.conf")!r}])
        def test_changes_config(remote_path, later_breaks):  # pathlib methods: a Path or a DevicePath
            etc = remote_path / "etc"
            (etc / "app-{outcome}.conf").write_text("test settings\\n")
            (etc / "created-{outcome}.conf").write_text("new\\n")
            {body}
        """
    )
    result = suite.run(f"--jmp-mount-backend={backend}")
    expected = {"pass": {"passed": 1}, "fail": {"failed": 1}, "error": {"failed": 1, "errors": 1}}[outcome]
    result.assert_outcomes(**expected)
    assert conf.read_text() == "factory settings\n"
    assert not absent.exists()
    conf.unlink()
    suite.assert_clean()


def test_preserve_from_the_test_and_restore_failure_is_a_teardown_error(suite: Suite, backend: str) -> None:
    dev = suite.device
    (dev.root / "etc" / "p.conf").write_text("one\n")
    (dev.root / "etc" / "q.conf").write_text("q\n")
    suite.pytester.makepyfile(
        test_pres=f"""
        import os

        def test_preserve(remote_fs):
            remote_fs.preserve({dev.remote("/etc/p.conf")!r})
            remote_fs.local_path({dev.remote("/etc/p.conf")!r}).write_text("two\\n")

        def test_cannot_restore(remote_fs):
            remote_fs.preserve({dev.remote("/etc/q.conf")!r})
            q = remote_fs.local_path({dev.remote("/etc/q.conf")!r})
            q.unlink()
            q.mkdir()
        """
    )
    result = suite.run(f"--jmp-mount-backend={backend}")
    result.assert_outcomes(passed=2, errors=1)
    result.stdout.fnmatch_lines([f"*could not restore device file(s): {dev.remote('/etc/q.conf')}*"])
    result.stdout.fnmatch_lines([f"NOT restored on *: {dev.remote('/etc/q.conf')} (Is a directory); the next run*"])
    assert (dev.root / "etc" / "p.conf").read_text() == "one\n"
    (dev.root / "etc" / "p.conf").unlink()
    (dev.root / "etc" / "q.conf").rmdir()
    again = suite.run("-k", "test_preserve", f"--jmp-mount-backend={backend}")  # the journal puts q.conf back first
    again.assert_outcomes(passed=1)
    again.stdout.fnmatch_lines([f"jumpstarter mount: restored on *: {dev.remote('/etc/q.conf')} (left changed by *"])
    assert (dev.root / "etc" / "q.conf").read_text() == "q\n"
    assert not (dev.root / "etc" / "p.conf").exists()
    (dev.root / "etc" / "q.conf").unlink()
    suite.assert_clean()


def test_restore_outside_every_mount_fails_the_test(suite: Suite, backend: str) -> None:
    dev = suite.device
    suite.pytester.makepyfile(
        test_out=f"""
        import pytest

        @pytest.mark.jmp_mount(remote={dev.remote("/var/log")!r}, restore=["/elsewhere/app.conf"])
        def test_x(remote_path):
            pass
        """
    )
    result = suite.run(f"--jmp-mount-backend={backend}")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*/elsewhere/app.conf* is outside every mount of this test*"])
    suite.assert_clean()
