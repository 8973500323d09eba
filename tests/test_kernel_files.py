"""/proc and /sys read through a mount show the device kernel's contents (real sshd, real sshfs).

The session's loopback device is not chrooted: its ``/`` is this host's ``/``, so a mount of
``/`` shows this host's /proc and /sys as the device's. These tests only read through it.
"""

from __future__ import annotations

import glob
import mmap
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from helpers import LoopbackDevice, target
from jumpstarter_driver_ssh_mount import Mount, SshfsTarget, start_mount


def device_mount(device: LoopbackDevice, mountpoint: Path, remote: str, cache: str = "fresh") -> Mount:
    """A mount of the device's ``remote`` as its sshd serves it (unchrooted: this host's path)."""
    assert not device.chroot, "these tests need the unchrooted device: its / is this host's /"
    spec = SshfsTarget(device.host, device.port, device.user, remote)
    return start_mount(spec, mountpoint, identity=device.identity(), timeout=15, cache=cache)


def size_zero_sysfs_file() -> str | None:
    """A stable /sys file that reports size 0 but has content (cgroup files), if this host has one."""
    candidates = ["/sys/fs/cgroup/cgroup.max.depth", *sorted(glob.glob("/sys/fs/cgroup/*/cgroup.clone_children"))]
    for path in candidates:
        try:
            if os.stat(path).st_size == 0 and Path(path).read_text():
                return path
        except OSError:
            continue
    return None


@pytest.mark.parametrize("cache", ["fresh", "fast"])
def test_proc_through_a_mount_of_root(device: LoopbackDevice, mountpoint: Path, cache: str) -> None:
    with device_mount(device, mountpoint, "/", cache) as m:
        assert "direct_io" in m.options
        assert os.stat(m / "/proc/meminfo").st_size == 0  # what sshfs reports: the page cache must not believe it
        meminfo = (m / "/proc/meminfo").read_text()
        assert meminfo.startswith("MemTotal:")
        assert meminfo.splitlines()[0] == Path("/proc/meminfo").read_text().splitlines()[0]
        status = (m / "/proc/self/status").read_text()  # the device's sftp server's own status
        assert status.startswith("Name:") and "VmRSS" in status
        assert "processor" in (m / "/proc/cpuinfo").read_text()


def test_proc_and_sys_mounts(device: LoopbackDevice, mountpoint: Path) -> None:
    with device_mount(device, mountpoint, "/proc") as m:
        assert "direct_io" in m.options
        assert "MemTotal:" in (m / "meminfo").read_text()
        assert (m / "sys/kernel/osrelease").read_text() == Path("/proc/sys/kernel/osrelease").read_text()
    with device_mount(device, mountpoint, "/sys/devices/system/cpu") as m:
        assert "direct_io" in m.options
        assert (m / "online").read_text() == Path("/sys/devices/system/cpu/online").read_text()


def test_size_zero_sys_file(device: LoopbackDevice, mountpoint: Path) -> None:
    path = size_zero_sysfs_file()
    if path is None:
        pytest.skip("this host has no /sys file that reports size 0 (no cgroup files)")
    with device_mount(device, mountpoint, "/sys") as m:
        local = m / path
        assert local.stat().st_size == 0
        assert local.read_text() == Path(path).read_text() != ""


def test_proc_through_the_client_matches_a_device_command(client, mount_base: Path) -> None:
    """Through Jumpstarter, as the plugin mounts: the same shape as `cat` on the device."""
    on_device = client.run("cat /proc/meminfo", check=True, timeout=30).stdout
    with client.mounted(None, remote_path="/", mount_dir=mount_base) as m:
        through_mount = (m / "/proc/meminfo").read_text()
        assert "direct_io" in m.options
    assert through_mount.startswith("MemTotal:") and on_device.startswith("MemTotal:")
    assert [line.split(":")[0] for line in through_mount.splitlines()] == [
        line.split(":")[0] for line in on_device.splitlines()
    ]


@pytest.fixture
def regular_file(device: LoopbackDevice) -> Iterator[Path]:
    path = device.root / "data" / f"mmap-{os.getpid()}.bin"
    path.write_bytes(b"device bytes" * 1000)
    yield path
    path.unlink()


def test_subdirectory_mount_keeps_the_page_cache_and_shared_mmap(
    device: LoopbackDevice, mountpoint: Path, regular_file: Path
) -> None:
    with start_mount(target(device, "/data"), mountpoint, identity=device.identity(), timeout=15) as m:
        assert "direct_io" not in m.options
        path = m / device.remote(f"/data/{regular_file.name}")
        with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as shared:
            assert shared[:12] == b"device bytes"


def test_private_mmap_works_on_a_mount_of_root(device: LoopbackDevice, mountpoint: Path, regular_file: Path) -> None:
    with device_mount(device, mountpoint, "/") as m, open(m / str(regular_file), "rb") as f:
        with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_COPY) as private:
            assert private[:12] == b"device bytes"
        try:  # shared: needs libfuse >= 3.16 with direct_io (FUSE_DIRECT_IO_ALLOW_MMAP)
            with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as shared:
                assert shared[:12] == b"device bytes"
        except OSError as exc:
            assert exc.errno == 19  # ENODEV, as the documentation says
