"""A test sees the device as it is now: changes show within the freshness bound, and device
symlinks resolve on the device, never on the test host (real sshd, real sshfs)."""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from helpers import LoopbackDevice, Suite, target
from jumpstarter_driver_ssh_mount import InvalidOptionError, Mount, start_mount
from pytest_jumpstarter_mount.testing import can_chroot

FRESHNESS_LIMIT = 1.0  # seconds a default mount may show a device change late
HOST_OS_RELEASE = Path("/etc/os-release").read_text() if Path("/etc/os-release").exists() else ""


def seconds_until(condition: Callable[[], bool], timeout: float = 5.0) -> float:
    """Seconds until ``condition()`` holds, polling every 20 ms; ``timeout`` + 1 if it never does."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if condition():
            return time.monotonic() - started
        time.sleep(0.02)
    return timeout + 1


@pytest.fixture
def fresh_dir(device: LoopbackDevice) -> Iterator[tuple[str, Path]]:
    """A new, empty device directory: (its path in the mount, where the device keeps it)."""
    name = f"truth-{uuid.uuid4().hex[:8]}"
    on_device = device.root / "data" / name
    on_device.mkdir()
    yield f"data/{name}", on_device
    for child in on_device.iterdir():
        child.unlink()
    on_device.rmdir()


def _mount(device: LoopbackDevice, mountpoint: Path, **kwargs: object) -> Mount:
    return start_mount(target(device), mountpoint, identity=device.identity(), timeout=10, **kwargs)  # type: ignore[arg-type]


# -- freshness ------------------------------------------------------------------------
@pytest.mark.parametrize("change", ["new file", "deleted file", "size change", "content change"])
def test_default_mount_shows_device_changes_within_a_second(
    device: LoopbackDevice, mountpoint: Path, fresh_dir: tuple[str, Path], change: str
) -> None:
    path, on_device = fresh_dir
    existing = on_device / "existing.txt"
    existing.write_text("before\n")
    with _mount(device, mountpoint) as m:
        local = m.local_path(path)
        assert os.listdir(local) == ["existing.txt"]  # listing, attributes and content now cached
        assert (local / "existing.txt").stat().st_size == 7
        assert (local / "existing.txt").read_text() == "before\n"
        if change == "new file":
            (on_device / "new.txt").write_text("x")
            seen = seconds_until(lambda: "new.txt" in os.listdir(local))
        elif change == "deleted file":
            existing.unlink()
            seen = seconds_until(lambda: not (local / "existing.txt").exists())
        elif change == "size change":
            existing.write_text("after, longer\n")
            seen = seconds_until(lambda: (local / "existing.txt").stat().st_size == 14)
        else:
            existing.write_text("AFTER!\n")
            seen = seconds_until(lambda: (local / "existing.txt").read_text() == "AFTER!\n")
    assert seen <= FRESHNESS_LIMIT, f"{change} showed after {seen:.2f}s"


def test_fast_mode_caches_listings(device: LoopbackDevice, mountpoint: Path, fresh_dir: tuple[str, Path]) -> None:
    path, on_device = fresh_dir
    with _mount(device, mountpoint, cache="fast") as m:
        local = m.local_path(path)
        assert os.listdir(local) == []
        (on_device / "new.txt").write_text("x")
        seen = seconds_until(lambda: "new.txt" in os.listdir(local), timeout=2.0)
        assert "dir_cache=no" not in m.options
    assert seen > 2.0, "a fast mount showed a new file at once: the cache mode made no difference"


def test_unknown_cache_mode_names_the_choices(device: LoopbackDevice, mountpoint: Path) -> None:
    with pytest.raises(InvalidOptionError, match="fresh, fast"):
        _mount(device, mountpoint, cache="slow")


@pytest.mark.parametrize("cache", ["fast", "fresh"])
def test_wait_for_sees_device_changes_in_every_cache_mode(
    device: LoopbackDevice, mountpoint: Path, fresh_dir: tuple[str, Path], cache: str
) -> None:
    path, on_device = fresh_dir
    (on_device / "old.lock").write_text("pid 1\n")
    with _mount(device, mountpoint, cache=cache) as m:
        assert os.listdir(m.local_path(path)) == ["old.lock"]
        assert m.local_path(f"{path}/old.lock").exists()
        (on_device / "old.lock").unlink()
        started = time.monotonic()
        m.wait_for(f"{path}/old.lock", exists=False, timeout=10, interval=0.1)
        gone = time.monotonic() - started
        (on_device / "new.dump").write_text("crash\n")
        started = time.monotonic()
        m.wait_for(f"{path}/new.dump", timeout=10, interval=0.1)
        appeared = time.monotonic() - started
    assert gone <= 0.1 + FRESHNESS_LIMIT, f"disappearing took {gone:.2f}s"
    assert appeared <= 0.1 + FRESHNESS_LIMIT, f"appearing took {appeared:.2f}s"


FRESHNESS_TEST = """
import os, time
from pathlib import Path

def test_fresh(remote_path):
    device = Path(os.environ["DEVICE_ROOT"], "data")
    assert "plugin-fresh.txt" not in os.listdir(remote_path / "data")
    (device / "plugin-fresh.txt").write_text("new")
    started = time.monotonic()
    try:
        while "plugin-fresh.txt" not in os.listdir(remote_path / "data"):
            assert time.monotonic() - started < 5, "never showed"
            time.sleep(0.02)
    finally:
        (device / "plugin-fresh.txt").unlink()
    assert time.monotonic() - started <= 1.0
"""


def test_plugin_mounts_fresh_by_default(suite: Suite) -> None:
    suite.pytester.makepyfile(test_fresh=FRESHNESS_TEST)
    suite.run().assert_outcomes(passed=1)


def test_bad_cache_option_is_a_usage_error(suite: Suite) -> None:
    suite.pytester.makepyfile(test_fresh=FRESHNESS_TEST)
    result = suite.run("--jmp-mount-cache=slow")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--jmp-mount-cache must be one of fresh, fast, got 'slow'*"])


# -- symlinks -------------------------------------------------------------------------
LINKS = {
    "data/abs-link": "/etc/os-release",
    "data/rel-link": "../etc/os-release",
    "data/deep/excess-up": "../../../../../etc/os-release",
    "data/in-abs": "/data/file.txt",
    "data/loop-root": "/",
    "data/loop-data": "/data",
}


@pytest.fixture(scope="module")
def chrooted(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LoopbackDevice]:
    """A loopback device whose sessions are chrooted: its ``/etc/os-release`` is not the host's."""
    if not can_chroot():
        pytest.skip("chrooting sshd needs root and unshare")
    with LoopbackDevice(tmp_path_factory.mktemp("chrooted"), chroot=True) as dev:
        assert dev.chroot
        (dev.root / "data/file.txt").write_text("in-mount file\n")
        for link, to in LINKS.items():
            (dev.root / link).parent.mkdir(parents=True, exist_ok=True)
            (dev.root / link).symlink_to(to)
        yield dev


def test_mount_of_device_root_reads_the_devices_file_through_every_link(
    chrooted: LoopbackDevice, mountpoint: Path
) -> None:
    device_os = (chrooted.root / "etc/os-release").read_text()
    assert device_os != HOST_OS_RELEASE
    with start_mount(target(chrooted), mountpoint, identity=chrooted.identity(), timeout=10) as m:
        for link in ("data/abs-link", "data/rel-link", "data/deep/excess-up"):
            assert (m / link).read_text() == device_os, link
        assert (m / "data/in-abs").read_text() == "in-mount file\n"
        assert (m / "data/loop-root/etc/os-release").read_text() == device_os


def test_links_leaving_a_subdirectory_mount_fail(chrooted: LoopbackDevice, mountpoint: Path) -> None:
    with start_mount(target(chrooted, "/data"), mountpoint, identity=chrooted.identity(), timeout=10) as m:
        for link in ("abs-link", "rel-link", "deep/excess-up"):
            with pytest.raises(OSError):
                text = (m / link).read_text()
                assert text != HOST_OS_RELEASE, f"{link} read the TEST HOST's file"
        assert (m / "in-abs").read_text() == "in-mount file\n"  # absolute, inside the mount: transformed
        if "transform_symlinks" in m.options:
            assert "transform_symlinks" in m._process.stderr_text()  # sshfs warned...
        assert not any("transform_symlinks" in line for line in m.stderr_tail())  # ...and it is not shown


def test_collection_does_not_loop_through_followed_directory_links(
    chrooted: LoopbackDevice, mountpoint: Path, tmp_path: Path
) -> None:
    with start_mount(target(chrooted), mountpoint, identity=chrooted.identity(), timeout=10) as m:
        started = time.monotonic()
        result = m.collect(["/data/**/*.txt"], tmp_path, timeout=20)
        took = time.monotonic() - started
    collected = sorted(str(p.relative_to(tmp_path)) for p in result.files)
    assert collected == ["data/file.txt"], (collected, result.notes)
    assert took < 10, f"collection took {took:.1f}s"
