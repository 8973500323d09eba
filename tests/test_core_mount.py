"""The mount core on its own (no Jumpstarter): real sshfs against the loopback sshd."""

from __future__ import annotations

import contextlib
import os
import stat
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from helpers import (
    LoopbackDevice,
    closed_port,
    keygen,
    leftovers,
    live_processes_mentioning,
    sshfs_mounts,
    target,
    wait_until,
)
from jumpstarter_driver_ssh_mount import (
    AuthenticationError,
    ConnectError,
    HostKeyError,
    InvalidOptionError,
    MountpointError,
    MountTimeoutError,
    RemotePathError,
    SshfsNotFoundError,
    SshfsTarget,
    UnmountError,
    start_mount,
)
from jumpstarter_driver_ssh_mount.sshfs.mountinfo import mounts_at


def test_mount_reads_and_writes_device_files(device: LoopbackDevice, mountpoint: Path) -> None:
    with start_mount(target(device), mountpoint, identity=device.identity(), timeout=10) as m:
        assert m.is_mounted()
        assert [e.fstype for e in mounts_at(mountpoint)] == ["fuse.sshfs"]
        assert (m / "etc/os-release").read_text() == (device.root / "etc/os-release").read_text()
        (m / "data/written.txt").write_text("from the test host\n")
        assert m.local_path(device.remote("data")) == mountpoint / "data"
    assert (device.root / "data/written.txt").read_text() == "from the test host\n"
    (device.root / "data/written.txt").unlink()
    assert not m.is_mounted()
    assert leftovers(mountpoint, dir_should_exist=True) == []


def test_remote_subdirectory_and_path_mapping(device: LoopbackDevice, mountpoint: Path) -> None:
    with start_mount(target(device, "/var/log"), mountpoint, identity=device.identity()) as m:
        assert sorted(os.listdir(m.mountpoint)) == ["app", "messages"]
        assert m.local_path("messages") == mountpoint / "messages"
        assert m.local_path(device.remote("var/log/app/app.log")) == mountpoint / "app/app.log"
        assert m.local_path("") == mountpoint
        for escape in ("../etc/os-release", device.remote("etc/os-release"), "app/../../x"):
            with pytest.raises(ValueError):
                m.local_path(escape)


def test_private_mountpoint_is_0700_and_removed(device: LoopbackDevice, mount_base: Path) -> None:
    m = start_mount(target(device), identity=device.identity(), mount_dir=mount_base)
    try:
        assert m.mountpoint.parent == mount_base
        assert m.is_mounted()
    finally:
        m.unmount()
    m.unmount()  # idempotent
    assert leftovers(m.mountpoint, dir_should_exist=False) == []


def test_mountpoint_created_when_missing_and_removed(device: LoopbackDevice, mount_base: Path) -> None:
    path = mount_base / "new" / "deeper"
    with start_mount(target(device), path, identity=device.identity()) as m:
        assert stat.S_IMODE(os.stat(mount_base / "new").st_mode) == 0o700
        assert (m / "etc/os-release").exists()
    assert not (mount_base / "new").exists()


def test_identity_never_touches_disk(device: LoopbackDevice, mountpoint: Path) -> None:
    with start_mount(target(device), mountpoint, identity=device.identity()) as m:
        identity = next(a for a in m.argv if a.startswith("IdentityFile="))
        path = identity.split("=", 1)[1]
        assert path.startswith(f"/proc/{os.getpid()}/fd/")
        assert os.readlink(path).startswith("/memfd:jmp-mount-identity")
        assert device.identity() not in " ".join(m.argv)


def test_user_option_replaces_default(device: LoopbackDevice, mountpoint: Path, tmp_path: Path) -> None:
    empty = tmp_path / "known_hosts_empty"
    empty.write_text("")
    strict = ["StrictHostKeyChecking=yes", f"UserKnownHostsFile={empty}"]
    with pytest.raises(HostKeyError, match="known-hosts"):
        start_mount(target(device), mountpoint, identity=device.identity(), options=strict)
    assert leftovers(mountpoint, dir_should_exist=True) == []

    pinned = tmp_path / "known_hosts"
    pinned.write_text(device.known_hosts_line())
    strict = ["StrictHostKeyChecking=yes", f"UserKnownHostsFile={pinned}"]
    with start_mount(target(device), mountpoint, identity=device.identity(), options=strict) as m:
        cmdline = Path(f"/proc/{m.pid}/cmdline").read_bytes().split(b"\0")
        assert b"StrictHostKeyChecking=yes" in cmdline
        assert b"StrictHostKeyChecking=no" not in cmdline
        assert (m / "etc/os-release").exists()


def test_ready_means_usable_and_is_fast(device: LoopbackDevice, mountpoint: Path) -> None:
    started = time.monotonic()
    with start_mount(target(device), mountpoint, identity=device.identity()) as m:
        elapsed = time.monotonic() - started
        assert os.listdir(m.mountpoint)  # no waiting: usable the moment it returns
    assert elapsed < 10  # a sanity bound only; speed is measured in bench/


@pytest.mark.parametrize(
    ("remote", "error", "message"),
    [
        ("/no/such/dir", RemotePathError, "does not exist"),
        ("/etc/os-release", RemotePathError, "not a directory"),
    ],
)
def test_bad_remote_path(device: LoopbackDevice, mountpoint: Path, remote: str, error: type, message: str) -> None:
    with pytest.raises(error, match=message):
        start_mount(target(device, remote), mountpoint, identity=device.identity())
    assert leftovers(mountpoint, dir_should_exist=True) == []


def test_relative_remote_path_refused(device: LoopbackDevice, mountpoint: Path) -> None:
    bad = SshfsTarget(device.host, device.port, device.user, "var/log")
    with pytest.raises(RemotePathError, match="not absolute"):
        start_mount(bad, mountpoint, identity=device.identity())


def test_wrong_identity(device: LoopbackDevice, mountpoint: Path, tmp_path: Path) -> None:
    other = keygen(tmp_path / "other_key").read_text()
    with pytest.raises(AuthenticationError, match="refused the identity") as info:
        start_mount(target(device), mountpoint, identity=other)
    assert "PRIVATE KEY" not in str(info.value)
    assert leftovers(mountpoint, dir_should_exist=True) == []


def test_nothing_listening(device: LoopbackDevice, mountpoint: Path) -> None:
    with closed_port() as port, pytest.raises(ConnectError, match="connection refused"):
        start_mount(
            SshfsTarget(device.host, port, device.user, device.remote()), mountpoint, identity=device.identity()
        )
    assert leftovers(mountpoint, dir_should_exist=True) == []


@pytest.mark.parametrize("option", ["-oProxyCommand=touch /tmp/x", "", "a\nb"])
def test_flag_injection_refused_before_anything_runs(device: LoopbackDevice, mountpoint: Path, option: str) -> None:
    with pytest.raises(InvalidOptionError):
        start_mount(target(device), mountpoint, identity=device.identity(), options=[option])
    assert leftovers(mountpoint, dir_should_exist=True) == []


def test_unknown_option_reported(device: LoopbackDevice, mountpoint: Path) -> None:
    with pytest.raises(InvalidOptionError, match="no_such_option"):
        start_mount(target(device), mountpoint, identity=device.identity(), options=["no_such_option"])
    assert leftovers(mountpoint, dir_should_exist=True) == []


def test_mountpoint_is_a_file(device: LoopbackDevice, mount_base: Path) -> None:
    file = mount_base / "a-file"
    file.write_text("x")
    try:
        with pytest.raises(MountpointError, match="is a file"):
            start_mount(target(device), file, identity=device.identity())
        assert file.read_text() == "x"
    finally:
        file.unlink()


def test_mountpoint_not_empty(device: LoopbackDevice, mountpoint: Path) -> None:
    (mountpoint / "precious").write_text("keep me")
    try:
        with pytest.raises(MountpointError, match="not empty"):
            start_mount(target(device), mountpoint, identity=device.identity())
        assert (mountpoint / "precious").read_text() == "keep me"
    finally:
        (mountpoint / "precious").unlink()


def test_second_mount_on_same_mountpoint_refused(device: LoopbackDevice, mountpoint: Path) -> None:
    with start_mount(target(device), mountpoint, identity=device.identity()) as first:
        with pytest.raises(MountpointError, match="already mounted"):
            start_mount(target(device, "/var"), mountpoint, identity=device.identity())
        assert first.is_mounted()
        assert len(mounts_at(mountpoint)) == 1
        assert (first / "etc/os-release").exists()


def test_sshfs_missing(device: LoopbackDevice, mountpoint: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(mountpoint))  # an empty directory: nothing to find
    with pytest.raises(SshfsNotFoundError, match="apt-get install sshfs"):
        start_mount(target(device), mountpoint, identity=device.identity())


def test_timeout_cleans_up(device: LoopbackDevice, mountpoint: Path) -> None:
    os.kill(device.pid, 19)  # SIGSTOP: the device accepts TCP but never answers
    try:
        with pytest.raises(MountTimeoutError, match="not ready within 1s"):
            start_mount(target(device), mountpoint, identity=device.identity(), timeout=1)
    finally:
        os.kill(device.pid, 18)  # SIGCONT
    assert leftovers(mountpoint, dir_should_exist=True) == []


def mount_in_child(device: LoopbackDevice, mountpoint: Path) -> tuple[subprocess.Popen[str], int]:
    """Another Python process mounts the device on ``mountpoint``: (that process, its sshfs pid)."""
    script = textwrap.dedent(
        f"""
        import time
        from jumpstarter_driver_ssh_mount import SshfsTarget, start_mount
        t = SshfsTarget({device.host!r}, {device.port}, {device.user!r}, {device.remote()!r})
        m = start_mount(t, {str(mountpoint)!r}, identity=open({str(device.client_key)!r}).read())
        print(m.pid, flush=True)
        time.sleep(60)
        """
    )
    child = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert child.stdout is not None
    return child, int(child.stdout.readline())


def wait_all_gone(mountpoint: Path, timeout: float = 10.0) -> None:
    """Until no mount, sshfs, ssh, fusermount3 or watchdog of ``mountpoint`` is left."""
    wait_until(
        lambda: not sshfs_mounts(mountpoint) and not live_processes_mentioning(str(mountpoint)),
        timeout,
        f"the mount of {mountpoint} and its processes to go",
    )


def test_sshfs_dies_with_its_parent(device: LoopbackDevice, mountpoint: Path) -> None:
    """kill -9 of the process that mounted: sshfs gets SIGTERM and the mount goes away."""
    child, sshfs_pid = mount_in_child(device, mountpoint)
    assert sshfs_mounts(mountpoint) == [str(mountpoint)]
    child.kill()
    child.wait()
    wait_all_gone(mountpoint)
    assert leftovers(mountpoint, dir_should_exist=True) == []
    assert not Path(f"/proc/{sshfs_pid}").exists() or "Z" in Path(f"/proc/{sshfs_pid}/stat").read_text().split()[2]


def test_busy_mountpoint_detached_lazily(device: LoopbackDevice, mountpoint: Path, caplog) -> None:
    m = start_mount(target(device), mountpoint, identity=device.identity())
    holder = open(m / "etc/os-release")  # noqa: SIM115 - kept open on purpose
    try:
        m.unmount()
    finally:
        with contextlib.suppress(OSError):  # sshfs is gone: the held file is dead
            holder.close()
    assert "busy" in caplog.text and str(os.getpid()) in caplog.text
    assert leftovers(mountpoint, dir_should_exist=True) == []


def test_no_unmount_command_is_unmount_error(
    device: LoopbackDevice, mountpoint: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Neither fusermount3 nor umount on PATH: UnmountError says so; stopping sshfs still unmounts."""
    m = start_mount(target(device), mountpoint, identity=device.identity())
    (tmp_path / "empty").mkdir()
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(UnmountError, match="not found; install fuse3"):
        m.unmount()
    monkeypatch.undo()
    assert not m.is_mounted()
    wait_all_gone(mountpoint)
    assert leftovers(mountpoint, dir_should_exist=True) == []


def test_private_and_created_mountpoints_are_0700(mount_base: Path) -> None:
    from jumpstarter_driver_ssh_mount.sshfs.mountpoint import Mountpoint

    for place in (Mountpoint.prepare(None, parent=mount_base), Mountpoint.prepare(mount_base / "made")):
        assert stat.S_IMODE(os.lstat(place.path).st_mode) == 0o700
        place.release()
        assert not place.path.exists()


def test_dead_mount_removed_when_its_owner_dies(device: LoopbackDevice, mountpoint: Path) -> None:
    """sshfs SIGKILLed (it cannot unmount), then its parent too: the watchdog unmounts lazily."""
    child, sshfs_pid = mount_in_child(device, mountpoint)
    os.kill(sshfs_pid, 9)
    deadline = time.monotonic() + 5
    while Path(f"/proc/{sshfs_pid}").exists() and "Z" not in Path(f"/proc/{sshfs_pid}/stat").read_text().split()[2]:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    assert sshfs_mounts(mountpoint) == [str(mountpoint)]  # a dead mount: nobody unmounted it
    child.kill()
    child.wait()
    wait_all_gone(mountpoint)
    assert leftovers(mountpoint, dir_should_exist=True) == []
