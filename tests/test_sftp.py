"""The SFTP backend's own promises, against a real sshd: routes and host keys as for mounts, a path object
that is never a local path, device truth (links resolve on the device, no stale listings, odd names), and
nothing left behind. The device-file chores on both backends are in test_chores.py."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from helpers import (
    LoopbackDevice,
    Suite,
    device_files,
    folder_owner_pid,
    identity_fds,
    known_hosts_folders_now,
    make_driver,
    target,
)
from jumpstarter_driver_ssh_mount import DevicePath, HostKeyError, OutsideMountError, SftpFiles, start_sftp
from jumpstarter_driver_ssh_mount.ssh.hostkeys import HostKey, KnownHosts
from jumpstarter_driver_ssh_mount.sshfs.fuse import fuse_problem


def my_known_hosts_folders() -> set[str]:
    """This process's known-hosts folders (another xdist worker makes its own meanwhile)."""
    return {f for f in known_hosts_folders_now() if folder_owner_pid(f) == os.getpid()}


def sftp_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "jmp-mount-sftp"]


@pytest.fixture
def files(device: LoopbackDevice, mountpoint: Path):
    with device_files("sftp", device, mountpoint) as f:
        assert isinstance(f, SftpFiles)
        yield f


def test_a_device_path_is_never_a_local_path(files: SftpFiles, device: LoopbackDevice) -> None:
    messages = files.root / device.remote("/var/log/messages")
    assert isinstance(messages, DevicePath) and messages.name == "messages" and messages.suffix == ""
    assert str(messages) == "device:" + device.remote("/var/log/messages")
    for use in (os.fspath, open, os.stat, os.listdir):
        with pytest.raises(TypeError, match=r"is a file on the device .*\.read_text\(\)"):
            use(messages)
    with pytest.raises(TypeError, match="on the device"):
        Path(messages)
    assert messages.read_text().startswith("boot: line 1")
    assert messages.parent.name == "log" and messages.with_suffix(".1").name == "messages.1"


def test_the_pathlib_file_api_writes_on_the_device(files: SftpFiles, device: LoopbackDevice) -> None:
    data = files.root / device.remote("/data") / f"sftp-{time.monotonic_ns()}"
    data.mkdir()
    try:
        assert data.is_dir() and not data.is_file()
        (data / "a.txt").write_text("one\n")
        with (data / "a.txt").open("a") as f:
            f.write("two\n")
        local = Path(data.path)  # the loopback device's files live on this host: the truth to compare with
        assert (local / "a.txt").read_text() == "one\ntwo\n"
        (data / "b.bin").write_bytes(b"\x00\x01")
        assert sorted(p.name for p in data.iterdir()) == ["a.txt", "b.bin"]
        assert [p.name for p in data.glob("*.txt")] == ["a.txt"]
        (data / "b.bin").rename(data / "c.bin")
        assert (local / "c.bin").read_bytes() == b"\x00\x01" and (data / "c.bin").stat().st_size == 2
        (data / "c.bin").chmod(0o600)
        assert (local / "c.bin").stat().st_mode & 0o777 == 0o600
        (data / "deep/er").mkdir(parents=True)
        (data / "deep/er").mkdir(parents=True, exist_ok=True)
        with pytest.raises(FileExistsError):
            (data / "deep").mkdir()
        with pytest.raises(FileNotFoundError):
            (data / "missing").read_text()
        with pytest.raises(IsADirectoryError):
            (data / "deep").write_text("x")
    finally:
        for path in sorted(Path(data.path).rglob("*"), reverse=True):
            path.rmdir() if path.is_dir() else path.unlink()
        Path(data.path).rmdir()


def test_symlinks_resolve_on_the_device_and_listings_are_fresh(files: SftpFiles, device: LoopbackDevice) -> None:
    scratch = device.root / "data" / f"links-{time.monotonic_ns()}"
    scratch.mkdir()
    try:
        odd = "new\nline \udcff.log"  # a newline and a byte that is not UTF-8: the device's choice of name
        (scratch / "target.txt").write_text("on the device\n")
        (scratch / "abs").symlink_to(scratch / "target.txt")
        (scratch / "rel").symlink_to("target.txt")
        here = files.root / str(scratch)
        assert (here / "abs").read_text() == (here / "rel").read_text() == "on the device\n"
        assert (here / "abs").is_symlink() and (here / "abs").readlink().path == str(scratch / "target.txt")
        assert odd not in [p.name for p in here.iterdir()]
        (scratch / odd).write_text("odd\n")  # changed on the device
        assert odd in [p.name for p in here.iterdir()]  # seen at once: nothing is cached
        assert (here / odd).read_text() == "odd\n"
        assert files.wait_for(str(scratch / odd), contains="odd", timeout=2) == "odd\n"
        (scratch / odd).unlink()
        assert not (here / odd).exists()
    finally:
        for child in scratch.iterdir():
            child.unlink()
        scratch.rmdir()


def test_device_paths_follow_the_one_rule(device: LoopbackDevice, mountpoint: Path) -> None:
    with device_files("sftp", device, mountpoint, remote="/var/log") as logs:
        assert (logs / "messages").path == device.remote("/var/log/messages")
        assert logs.covers(device.remote("/var/log/app/app.log")) and not logs.covers("/etc/passwd")
        with pytest.raises(OutsideMountError, match="outside this mount"):
            logs / "/etc/passwd"


def test_host_keys_are_checked_strictly_and_nothing_is_left(device: LoopbackDevice, tmp_path: Path) -> None:
    folders, fds, threads = my_known_hosts_folders(), identity_fds(), len(sftp_threads())
    other = tmp_path / "other_key"
    os.system(f"ssh-keygen -q -t ed25519 -N '' -f {other}")
    wrong_key = HostKey.parse((tmp_path / "other_key.pub").read_text())
    with KnownHosts([wrong_key]) as wrong, pytest.raises(HostKeyError, match="does not match the one pinned"):
        start_sftp(target(device), identity=device.identity(), options=wrong.options)
    with pytest.raises(HostKeyError, match="is not in the known-hosts file"):  # yours, with no key for it: no TOFU
        start_sftp(target(device), identity=device.identity(), options=[f"UserKnownHostsFile={tmp_path}/none"])
    assert my_known_hosts_folders() == folders and identity_fds() == fds
    assert len(sftp_threads()) == threads, "a failed session leaves no loop thread"


def test_the_client_reaches_files_over_every_route(device: LoopbackDevice) -> None:
    from jumpstarter.common.utils import serve

    driver, threads = make_driver(device, relay_listen="127.0.0.1"), len(sftp_threads())
    with serve(driver) as client:
        for transport in ("auto", "forward", "relay"):
            with client.files(device.remote("/etc"), backend="sftp", transport=transport) as files:
                assert files.transport == ("direct" if transport == "auto" else transport)
                assert "verified against what the exporter vouches for" in (files.transport_note or "")
                assert (files / "os-release").read_text().startswith("NAME=")
            assert not files.is_mounted()
    assert len(driver._relays) == 0 and len(sftp_threads()) == threads


def test_fuse_problem_names_what_is_missing() -> None:
    assert fuse_problem() is None  # this host mounts with FUSE (the sshfs tests need it)


def test_the_plugin_picks_the_backend_per_run_and_per_test(suite: Suite, monkeypatch: pytest.MonkeyPatch) -> None:
    suite.pytester.makepyfile(
        test_backends="""
        import pytest
        from jumpstarter_driver_ssh_mount import DevicePath

        @pytest.mark.jmp_mount(backend="sftp", options=["reconnect"])
        def test_marker(remote_path, remote_fs):
            assert isinstance(remote_path, DevicePath) and remote_path.is_dir()
            assert remote_fs.backend in ("sshfs", "sftp")
        """
    )
    monkeypatch.setenv("JMP_MOUNT_BACKEND", "sshfs")  # the environment's choice; the marker still wins
    result = suite.run("-k", "marker")
    result.assert_outcomes(passed=1)
    assert "jumpstarter mount: files via sftp (" not in result.stdout.str()  # no header line: sshfs is the setting
    assert "these sshfs options do not apply and were ignored: ['reconnect']" in result.stdout.str()  # a warning
    result = suite.run("--jmp-mount-backend=sftp", "-k", "marker")
    result.assert_outcomes(passed=1)
    assert result.stdout.str().count("jumpstarter mount: files via sftp (--jmp-mount-backend sftp)") == 1
    suite.assert_clean()


def test_ssh_options_become_asyncssh_settings_and_side_doors_stay_shut(tmp_path: Path) -> None:
    from jumpstarter_driver_ssh_mount import InvalidOptionError
    from jumpstarter_driver_ssh_mount.sftp.sshsettings import ssh_settings

    known = tmp_path / "known_hosts"
    known.write_text("pinned ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl\n")
    options = [
        f"UserKnownHostsFile={known}",
        "HostKeyAlias=pinned",
        "Ciphers=aes256-gcm@openssh.com",
        "ServerAliveInterval=2",
        "cache=no",
    ]
    settings = ssh_settings("127.0.0.1", 2222, "root", None, options)
    kwargs = settings.kwargs
    assert kwargs["agent_path"] is None and kwargs["agent_forwarding"] is False and kwargs["config"] is None
    assert kwargs["x11_forwarding"] is False and kwargs["password_auth"] is False and kwargs["gss_auth"] is False
    assert kwargs["encryption_algs"] == ["aes256-gcm@openssh.com"]
    unknown = ssh_settings("127.0.0.1", 2222, "root", None, ["Ciphers=no-such-cipher"])
    assert "encryption_algs" not in unknown.kwargs  # what asyncssh lacks is dropped: its defaults
    assert kwargs["keepalive_interval"] == 2.0 and kwargs["host_key_alias"] == "pinned"
    assert settings.verified and settings.known is not None and settings.known.match("pinned", "", None)[0]
    assert settings.ignored == ["cache=no"]
    unchecked = ssh_settings("127.0.0.1", 2222, "root", None, ["StrictHostKeyChecking=no"])
    assert not unchecked.verified and unchecked.kwargs["known_hosts"] is None
    for refused in ("ProxyCommand=nc %h %p", "ProxyJump=jump", "KnownHostsCommand=/bin/echo"):
        with pytest.raises(InvalidOptionError, match="the sftp backend cannot honour it"):
            ssh_settings("127.0.0.1", 2222, "root", None, [refused])


def test_auto_takes_sftp_once_a_fuse_mount_fails_for_want_of_fuse() -> None:
    """The choice itself, with a stand-in for the client's ``files`` (a FUSE that passes the look but fails
    to mount cannot be made here); the real fallback runs in test_without_fuse.py."""
    from jumpstarter_driver_ssh_mount import FuseUnavailableError
    from pytest_jumpstarter_mount.config.backendchoice import BackendChoice

    asked: list[str] = []
    said: list[str] = []

    def files(backend: str) -> Any:
        asked.append(backend)
        if backend == "sshfs":
            raise FuseUnavailableError("FUSE is not available: fuse: mount failed: Invalid argument")
        return backend

    choice = BackendChoice("auto")
    assert choice.for_mount() == "sshfs" and choice.header() is None  # this host has FUSE
    assert choice.open(files, None, said.append) == "sftp" and asked == ["sshfs", "sftp"]
    failed = "FUSE is not available: fuse: mount failed: Invalid argument"
    assert said == [f"jumpstarter mount: files via sftp (FUSE failed: {failed})"]  # said once
    assert choice.for_mount() == "sftp" and choice.open(files, None, said.append) == "sftp" and len(said) == 1
    with pytest.raises(FuseUnavailableError):  # asked for sshfs: no fallback
        BackendChoice("sshfs").open(files, None, said.append)
    assert BackendChoice("sshfs").open(files, "sftp", said.append) == "sftp"  # a marker's backend= wins


def test_bulk_work_over_sftp_rides_the_shared_connection(client, device: LoopbackDevice, tmp_path: Path) -> None:
    """The many-file work of a remote lab (one device script over the shared ssh) serves the SFTP backend too."""
    (device.root / "data/bulk").mkdir(exist_ok=True)
    for i in range(20):
        (device.root / f"data/bulk/f{i:02}.log").write_text(f"line {i}\n")
    with client.connection() as connection, client.files(device.remote("/"), backend="sftp") as files:
        files.read_in_bulk(connection.script_runner())
        read = files.read_many("data/bulk/*.log")
        assert read == {
            f"{files.remote_path.rstrip('/')}/data/bulk/f{i:02}.log": f"line {i}\n".encode() for i in range(20)
        }
        collected = files.collect(["data/bulk/*.log"], tmp_path / "out")
        assert len(collected.files) == 20 and not collected.notes
        files.preserve("data/bulk/f00.log")
        (files / "data/bulk/f00.log").write_text("changed")
        files.restore_preserved()
    assert (device.root / "data/bulk/f00.log").read_text() == "line 0\n"


def test_read_many_in_flight_gives_what_one_by_one_gives(files: SftpFiles, device: LoopbackDevice) -> None:
    """All looks and reads in flight at once, the result file for file as ``read_each``'s, caps included."""
    from jumpstarter_driver_ssh_mount.devicefiles.boundedread import read_each

    top = device.root / "data/many"
    top.mkdir(exist_ok=True)
    for i in range(12):
        (top / f"f{i:02}.txt").write_bytes(bytes([65 + i]) * (100 * i))
    (top / "link").symlink_to("f01.txt")
    (top / "dir").mkdir(exist_ok=True)
    os.mkfifo(top / "fifo")
    names = [*(f"f{i:02}.txt" for i in range(12)), "link", "dir", "fifo", "missing", "f03.txt"]
    paths = [device.remote(f"/data/many/{name}") for name in names] + ["/proc/self/status", "/proc/uptime"]
    try:
        for cap in (10_000, 2_500, 150, 0):
            fast, slow = files.fs.read_many(paths, cap), read_each(files.fs, paths, cap)
            assert fast.keys() == slow.keys()
            for path in paths:
                a, b = fast[path], slow[path]
                if isinstance(b, OSError):
                    assert type(a) is type(b) and a.errno == b.errno, (cap, path, a, b)
                elif path.startswith("/proc/"):  # the kernel's text changes from one read to the next
                    assert isinstance(a, bytes) and a, (cap, path, a)
                else:
                    assert a == b, (cap, path)
    finally:
        (top / "fifo").unlink()
