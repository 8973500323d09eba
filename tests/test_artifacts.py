"""Failure artifacts through the plugin: the collection mount obeys the user's security options,
and one glob that fails never stops the others."""

from __future__ import annotations

import errno
import os
import posixpath
import secrets
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from helpers import LoopbackDevice, Suite, artifacts_run, keygen
from jumpstarter_driver_ssh_mount.devicefiles import collection
from jumpstarter_driver_ssh_mount.devicefiles.collection import Collection, collect
from jumpstarter_driver_ssh_mount.devicefiles.localfs import LocalDirFS
from jumpstarter_driver_ssh_mount.devicefiles.matching import Matcher

ACCEPTED = "Accepted publickey"


def logins(device: LoopbackDevice) -> int:
    """How many logins the device's sshd accepted so far."""
    return (device.base / "sshd.log").read_text().count(ACCEPTED)


def pinned_known_hosts(path: Path, device: LoopbackDevice, *, right: bool) -> Path:
    """A known_hosts file pinning alias ``pinned`` to the device's host key, or (``right=False``) another key."""
    key = device.base / "host_key.pub" if right else Path(f"{keygen(path.with_suffix('.other'))}.pub")
    path.write_text("pinned " + " ".join(key.read_text().split()[:2]) + "\n")
    return path


@pytest.mark.parametrize("right_key", [False, True], ids=["wrong-key", "right-key"])
def test_collection_mount_obeys_host_key_pinning(own_device: Suite, tmp_path: Path, right_key: bool) -> None:
    suite, dev = own_device, own_device.device
    known = pinned_known_hosts(tmp_path / "known_hosts", dev, right=right_key)
    suite.pytester.makepyfile(
        test_pin="""
        def test_fails_without_a_mount(jmp_mount_client):
            assert False, "device misbehaved"
        """
    )
    before = logins(dev)
    result = suite.run(
        f"--jmp-mount-collect={dev.remote('/var/log')}/messages",
        "--jmp-mount-option=StrictHostKeyChecking=yes",
        "--jmp-mount-option=HostKeyAlias=pinned",
        f"--jmp-mount-option=UserKnownHostsFile={known}",
    )
    result.assert_outcomes(failed=1)
    collected = artifacts_run(suite.pytester.path) / "test_pin.py_test_fails_without_a_mount"
    section = result.stdout.str().split("jumpstarter mount artifacts")[1].split("short test summary")[0]
    if right_key:  # the control: pinning the right key collects, and the log shows the login
        assert logins(dev) > before
        assert (collected / dev.remote("/var/log/messages").lstrip("/")).exists()
    else:
        assert logins(dev) == before, "the collection logged in to a host whose key does not match the pin"
        assert not collected.exists()
        notes = [line for line in section.splitlines() if line.startswith("note:")]
        assert len(notes) == 1, section
        assert f"could not mount the device to collect {dev.remote('/var/log')}/messages" in notes[0]
        assert "does not match the one pinned in your known-hosts file" in notes[0]
    suite.assert_clean()


# -- one glob that fails never stops the others ----------------------------------------
@pytest.fixture
def nonroot_device(suite: Suite) -> Iterator[Suite]:
    """``suite`` pointed at a device whose SSH user is a throwaway non-root system user.

    The device's files are root's, so a 0700 directory really refuses that user (EACCES).
    """
    if os.geteuid() != 0 or shutil.which("useradd") is None or shutil.which("userdel") is None:
        pytest.skip("needs root and useradd to create a non-root device user")
    name = f"jmpt{secrets.token_hex(4)}"
    shell = shutil.which("sh") or "/bin/sh"
    subprocess.run(
        ["useradd", "--system", "--no-create-home", "--home-dir", "/nonexistent", "--shell", shell, "-p", "*", name],
        check=True,
        capture_output=True,
    )
    base = Path(tempfile.mkdtemp(prefix="jmp-nonroot-device-"))  # not under pytest's 0700 basetemp
    try:
        base.chmod(0o755)
        device = LoopbackDevice(base / "dev")
        device.user = name
        device.setup().start()
        try:
            device.exporter_config(suite.pytester.path / "exporter.yaml")
            yield Suite(suite.pytester, device, suite.log, suite.mount_dir)
        finally:
            device.stop()
    finally:
        subprocess.run(["userdel", name], check=False, capture_output=True)
        shutil.rmtree(base)  # a plain directory of device files: nothing is mounted in it


def test_unreadable_directory_does_not_stop_the_next_glob(nonroot_device: Suite) -> None:
    suite, dev = nonroot_device, nonroot_device.device
    secret = dev.root / "var/log/secret"
    secret.mkdir(mode=0o700)
    (secret / "token.log").write_text("root only\n")
    many = dev.root / "var/log/many"
    many.mkdir()
    for i in range(1500):
        (many / f"{i:04}.log").write_text(f"line {i}\n")
    suite.pytester.makepyfile(
        test_glob=f"""
        import os

        def test_device_user_is_not_root(remote_fs):
            assert not os.access(remote_fs / {dev.remote("/var/log/secret/token.log").lstrip("/")!r}, os.R_OK)
            assert False, "device misbehaved"
        """
    )
    logs = dev.remote("/var/log")
    result = suite.run(
        f"--jmp-mount-collect={logs}/secret/*",
        f"--jmp-mount-collect={logs}/many/*",
        "--jmp-mount-collect-timeout=120",
    )
    result.assert_outcomes(failed=1)
    output = result.stdout.str()
    assert "PytestUnhandledThreadExceptionWarning" not in output
    result.stdout.fnmatch_lines([f"note: {logs}/secret/*: cannot read {logs}/secret: Permission denied"])
    collected = artifacts_run(suite.pytester.path) / "test_glob.py_test_device_user_is_not_root"
    copies = sorted((collected / logs.lstrip("/") / "many").iterdir())
    assert len(copies) == 1500
    assert copies[-1].read_text() == "line 1499\n"
    suite.assert_clean()


# -- collect() on a local tree: errors injected where a device would raise them --------------
@pytest.fixture
def tree(tmp_path: Path) -> Path:
    for name in ("a", "b"):
        (tmp_path / "dev" / name).mkdir(parents=True)
        for i in range(3):
            (tmp_path / "dev" / name / f"{i}.log").write_text(f"{name}{i}\n")
    return tmp_path / "dev"


def collect_all(tree: Path, globs: list[str], dest: Path) -> Collection:
    result = Collection()
    fs = LocalDirFS(tree, "/")  # the device's / seen at ``tree``, as a FUSE mount shows it
    for device_glob in globs:
        collect(fs, "/", lambda p: p, device_glob, dest, result, deadline=time.monotonic() + 30)
    return result


@pytest.mark.parametrize("code", [errno.EIO, errno.ENOENT])
def test_a_file_that_fails_is_a_note(tree: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, code: int) -> None:
    real = collection.copy_at_most

    def copy_at_most(fs: Any, path: str, *args: Any) -> Any:  # where collect() reads a device file
        if posixpath.basename(path) == "1.log":
            raise OSError(code, os.strerror(code), path)
        return real(fs, path, *args)

    monkeypatch.setattr(collection, "copy_at_most", copy_at_most)
    result = collect_all(tree, ["/a/*", "/b/*"], tmp_path / "out")
    assert len(result.files) == 4
    assert result.notes == [f"/{d}/1.log: skipped, unreadable ({os.strerror(code)})" for d in "ab"]


def test_a_dead_mount_stops_its_glob_only(tree: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = collection.copy_at_most

    def copy_at_most(fs: Any, path: str, *args: Any) -> Any:
        if posixpath.dirname(path) == "/a":
            raise OSError(errno.ENOTCONN, os.strerror(errno.ENOTCONN), path)
        return real(fs, path, *args)

    monkeypatch.setattr(collection, "copy_at_most", copy_at_most)
    result = collect_all(tree, ["/a/*", "/b/*"], tmp_path / "out")
    assert [f.name for f in result.files] == ["0.log", "1.log", "2.log"]
    assert result.notes == [f"/a/*: stopped, {os.strerror(errno.ENOTCONN)}"]


def test_an_unexpected_error_is_a_note(tree: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = Matcher.match

    def broken(self: Matcher, base: str, pattern: str) -> list[str]:
        if base == "/a":
            raise RuntimeError("the device went away")
        return real(self, base, pattern)

    monkeypatch.setattr(Matcher, "match", broken)
    result = collect_all(tree, ["/a/*", "/b/*"], tmp_path / "out")
    assert len(result.files) == 3
    assert result.notes == ["/a/*: stopped, RuntimeError: the device went away"]


def test_matcher_notes_unreadable_directories_and_skips_symlinks(tree: Path) -> None:
    (tree / "a" / "link").symlink_to(tree / "b")
    (tree / "a" / ".hidden.log").write_text("")
    matcher = Matcher(LocalDirFS(tree, "/"), top="/")
    found = matcher.match("/", "**/*.log")
    assert found == [
        "/a/.hidden.log",
        "/a/0.log",
        "/a/1.log",
        "/a/2.log",
        "/b/0.log",
        "/b/1.log",
        "/b/2.log",
    ]
    assert matcher.match("/", "*/link/*.log") == []  # a symlinked directory is not entered
    assert matcher.errors == []
