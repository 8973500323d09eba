"""SSHMountClient through Jumpstarter (served in-process), against the real sshd device."""

from __future__ import annotations

import logging
import os
import signal
import threading
from pathlib import Path

import pytest

from helpers import LoopbackDevice, closed_port, leftovers, live_processes_mentioning, make_driver, wait_until
from jumpstarter_driver_ssh_mount import ConnectError, MountError, MountLostError, MountpointError


def test_mount_via_port_forward(client, device: LoopbackDevice, mountpoint: Path) -> None:
    with client.mounted(mountpoint, remote_path=device.remote("/var/log"), transport="forward") as m:
        assert m.transport == "forward" and not m.direct
        assert m.host == "127.0.0.1" and m.port != device.port  # the local end of the forward
        assert (m / "messages").read_text() == (device.root / "var/log/messages").read_text()
        (m / "app/from-client.log").write_text("hello device\n")
        assert m.is_mounted()
    assert (device.root / "var/log/app/from-client.log").read_text() == "hello device\n"
    (device.root / "var/log/app/from-client.log").unlink()
    assert leftovers(mountpoint, dir_should_exist=True) == []


def test_mount_direct(client, device: LoopbackDevice, mountpoint: Path) -> None:
    with client.mounted(mountpoint, remote_path=device.remote(), direct=True) as m:
        assert m.direct
        assert (m.host, m.port) == (device.host, device.port)
        assert (m / "etc/os-release").read_text().startswith('NAME="Loopback Device"')
    assert leftovers(mountpoint, dir_should_exist=True) == []


def test_direct_falls_back_to_port_forward(device: LoopbackDevice, mountpoint: Path, caplog) -> None:
    from jumpstarter.common.utils import serve

    with serve(make_driver(device, enable_address=False)) as c:
        with caplog.at_level(logging.WARNING):
            m = c.mounted(mountpoint, remote_path=device.remote(), direct=True)
        with m:
            assert m.transport == "forward"
            assert (m / "etc/os-release").exists()
    assert "using the port forward" in caplog.text
    assert leftovers(mountpoint, dir_should_exist=True) == []


def test_mount_without_with_for_finalizers(client, device: LoopbackDevice, mount_base: Path) -> None:
    m = client.mounted(remote_path=device.remote(), mount_dir=mount_base)
    assert m.is_mounted() and m.mountpoint.parent == mount_base
    m.unmount()
    m.unmount()
    assert leftovers(m.mountpoint, dir_should_exist=False) == []


def test_identity_file_from_exporter(device: LoopbackDevice, mountpoint: Path) -> None:
    """ssh_identity_file on the SSH driver: read by the exporter, held in memory on the client."""
    from jumpstarter.common.utils import serve
    from jumpstarter_driver_network.driver import TcpNetwork
    from jumpstarter_driver_ssh.driver import SSHWrapper

    from jumpstarter_driver_ssh_mount.driver import SSHMount

    ssh = SSHWrapper(
        default_username=device.user,
        ssh_identity_file=str(device.client_key),
        children={"tcp": TcpNetwork(host=device.host, port=device.port)},
    )
    with serve(SSHMount(children={"ssh": ssh})) as c, c.mounted(mountpoint, remote_path=device.remote()) as m:
        assert (m / "etc/os-release").exists()
        assert any(a.startswith("IdentityFile=/proc/") for a in m.argv)


def test_sshd_down_via_port_forward_is_one_clear_error(
    device: LoopbackDevice, mountpoint: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    from jumpstarter.common.utils import serve

    with (
        closed_port() as port,
        serve(make_driver(LoopbackDevice(device.base, port=port))) as c,  # same keys, nothing listening
        pytest.raises(ConnectError, match=r"cannot reach the device's sshd .*Connection refused"),
    ):
        c.mounted(mountpoint, remote_path=device.remote())
    err = capfd.readouterr().err
    assert "Traceback" not in err, err[:2000]
    assert leftovers(mountpoint, dir_should_exist=True) == []


def test_errors_from_client_are_typed(client, device: LoopbackDevice, mountpoint: Path) -> None:
    with client.mounted(mountpoint, remote_path=device.remote()), pytest.raises(MountpointError, match="already"):
        client.mounted(mountpoint, remote_path=device.remote())
    with pytest.raises(MountError, match="does not exist"):
        client.mounted(mountpoint, remote_path=device.remote("/missing"))
    assert leftovers(mountpoint, dir_should_exist=True) == []


def test_sshfs_dying_while_held_is_mount_lost(
    client, device: LoopbackDevice, mountpoint: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``mount(foreground=True)`` holds the mount until Ctrl+C; sshfs killed meanwhile ends it with MountLostError."""
    printed: list[str] = []

    def holding() -> bool:
        printed.append(capsys.readouterr().out)
        return "Press Ctrl+C to unmount" in "".join(printed)

    def kill_sshfs_once_mounted() -> None:
        wait_until(holding, 30, "the mount to be held")
        (sshfs,) = live_processes_mentioning(str(mountpoint), names=("sshfs",))  # "PID: command line"
        os.kill(int(sshfs.split(":")[0]), signal.SIGKILL)

    killer = threading.Thread(target=kill_sshfs_once_mounted)
    killer.start()
    try:
        with pytest.raises(MountLostError, match=r"sshfs exited unexpectedly \(code -9\)"):
            client.mount(mountpoint, remote_path=device.remote(), foreground=True)
    finally:
        killer.join()
    wait_until(lambda: not leftovers(mountpoint, dir_should_exist=True), 10, "the dead mount to be cleaned up")


def test_missing_ssh_child_is_configuration_error() -> None:
    from jumpstarter.common.exceptions import ConfigurationError

    from jumpstarter_driver_ssh_mount.driver import SSHMount

    with pytest.raises(ConfigurationError, match="needs an 'ssh' child"):
        SSHMount(children={})


def test_upstream_exporter_yaml_loads(tmp_path: Path) -> None:
    from jumpstarter.config.exporter import (
        ExporterConfigV1Alpha1,
        ExporterConfigV1Alpha1DriverInstanceBase,
        ExporterConfigV1Alpha1DriverInstanceProxy,
    )

    example = Path(__file__).parent.parent / "examples" / "exporter.yaml"
    config = ExporterConfigV1Alpha1.load_path(example)  # a Path, as load_path needs
    mount = config.export["mount"].root
    assert isinstance(mount, ExporterConfigV1Alpha1DriverInstanceBase)
    assert mount.type == "jumpstarter_driver_ssh_mount.driver.SSHMount"
    ssh = mount.children["ssh"].root
    assert isinstance(ssh, ExporterConfigV1Alpha1DriverInstanceProxy)
    assert ssh.ref == "ssh"
