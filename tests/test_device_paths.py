"""One rule for device paths in every device-file call: absolute is a device path, relative is under the mount."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest

from helpers import LoopbackDevice, Suite, target
from jumpstarter_driver_ssh_mount import OutsideMountError, WaitTimeoutError, start_mount
from jumpstarter_driver_ssh_mount.common.errors import covering_directory
from jumpstarter_driver_ssh_mount.devicefiles.devicepaths import device_path, local_path, relative_to_mount


def test_the_rule_without_a_device() -> None:
    assert device_path("/var/log", "messages") == "/var/log/messages"
    assert device_path("/var/log", "/etc/app.conf") == "/etc/app.conf"
    assert device_path("/var/log", "") == "/var/log"
    assert device_path("/", "etc//os-release") == "/etc/os-release"
    assert relative_to_mount("/var/log", "/var/log/app/app.log") == "app/app.log"
    assert relative_to_mount("/var/log", "app/app.log") == "app/app.log"
    assert relative_to_mount("/", "/etc/os-release") == "etc/os-release"
    assert local_path(Path("/m"), "/var/log", "") == Path("/m")
    assert covering_directory("/etc/app.conf") == "/etc"
    assert covering_directory("/x") == "/"


def test_outside_the_mount_names_the_mount_that_would_cover_it() -> None:
    with pytest.raises(OutsideMountError) as caught:
        relative_to_mount("/var/log", "/etc/app.conf", ', restore=["/etc/app.conf"]')
    assert str(caught.value).startswith(
        "/etc/app.conf is outside this mount of /var/log; mount /etc for it (in a test: "
        '@pytest.mark.jmp_mount(remote="/etc", restore=["/etc/app.conf"]);'
    )
    assert isinstance(caught.value, ValueError)
    for escaping in ("../secret", "app/../../x", "/var/logs/x"):
        with pytest.raises(OutsideMountError, match="is outside this mount of /var/log"):
            relative_to_mount("/var/log", escaping)


@pytest.fixture
def log_mount(device: LoopbackDevice, mountpoint: Path):
    with start_mount(target(device, "/var/log"), mountpoint, identity=device.identity()) as m:
        yield m


def test_every_call_takes_both_forms(log_mount, device: LoopbackDevice, tmp_path: Path) -> None:
    m, logdir = log_mount, device.remote("/var/log")
    assert m / "messages" == m / f"{logdir}/messages" == m.local_path("messages") == m.mountpoint / "messages"
    assert m.covers("app/app.log") and m.covers(f"{logdir}/app") and not m.covers(device.remote("/etc"))
    assert m.wait_for("messages", timeout=5) is None
    assert "boot" in (m.wait_for(f"{logdir}/messages", contains="boot", timeout=5) or "")
    relative = m.collect(["app/*.log"], tmp_path / "rel")
    absolute = m.collect([f"{logdir}/app/*.log"], tmp_path / "abs")
    assert relative.files and [p.relative_to(tmp_path / "rel") for p in relative.files] == [
        p.relative_to(tmp_path / "abs") for p in absolute.files
    ]
    assert relative.files[0] == tmp_path / "rel" / f"{logdir}/app/app.log".lstrip("/")


def test_preserve_relative_and_outside(log_mount, device: LoopbackDevice) -> None:
    m = log_mount
    name = f"preserved-{time.monotonic_ns()}.log"
    m.preserve(f"app/{name}")  # absent now: restored by deleting it
    (m / "app" / name).write_text("made by the test\n")
    m.restore_preserved()
    assert not (device.root / "var/log/app" / name).exists()
    conf = device.remote("/etc/app.conf")
    with pytest.raises(OutsideMountError) as caught:
        m.preserve(conf)
    etc = device.remote("/etc")
    assert f'mount {etc} for it (in a test: @pytest.mark.jmp_mount(remote="{etc}", restore=["{conf}"])' in str(
        caught.value
    )


def test_wait_for_shows_the_text_as_given(log_mount) -> None:
    with pytest.raises(WaitTimeoutError, match=re.escape("did not contain 'kernel panic (x)' within 0.2s")):
        log_mount.wait_for("messages", contains="kernel panic (x)", timeout=0.2)
    with pytest.raises(WaitTimeoutError, match=re.escape("did not match 'kernel.*panic' within 0.2s")):
        log_mount.wait_for("messages", contains=re.compile("kernel.*panic"), timeout=0.2)


def test_restore_outside_every_mount_says_how_to_mount_it(suite: Suite) -> None:
    dev = suite.device
    conf = dev.remote("/etc/app.conf")
    suite.pytester.makepyfile(
        test_out=f"""
        def test_x(remote_fs):
            remote_fs.preserve({conf!r})
        """
    )
    result = suite.run(remote="/var/log")
    result.assert_outcomes(failed=1)
    etc = dev.remote("/etc")
    marker = f'@pytest.mark.jmp_mount(remote="{etc}", restore=["{conf}"])'
    logs = dev.remote("/var/log")
    assert f"{conf} is outside this mount of {logs}; mount {etc} for it (in a test: {marker};" in result.stdout.str()
    suite.assert_clean()
