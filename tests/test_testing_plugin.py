"""The opt-in ``pytest_jumpstarter_mount.testing`` plugin: its ``jmp_loopback_device`` fixture."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest


@pytest.mark.parametrize("plugin", ["pytest_jumpstarter_mount.testing.plugin", "pytest_jumpstarter_mount.testing"])
def test_jmp_loopback_device_fixture(pytester: pytest.Pytester, plugin: str) -> None:
    pytester.makepyfile(
        test_dev="""
        import socket

        def test_serves(jmp_loopback_device, tmp_path_factory):
            device = jmp_loopback_device
            assert device.process is not None and device.process.poll() is None
            socket.create_connection((device.host, device.port), timeout=5).close()
            assert device.exporter_config_path.read_text().count(f"port: {device.port}") == 1
            assert (device.root / "etc/os-release").read_text().startswith('NAME="Loopback Device"')
            (tmp_path_factory.getbasetemp() / "sshd").write_text(f"{device.process.pid} {device.port}")

        def test_same_device_for_the_session(jmp_loopback_device, tmp_path_factory):
            pid, port = (tmp_path_factory.getbasetemp() / "sshd").read_text().split()
            assert (jmp_loopback_device.process.pid, jmp_loopback_device.port) == (int(pid), int(port))
        """
    )
    basetemp = pytester.path / "basetemp"
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-p", plugin, f"--basetemp={basetemp}")
    result.assert_outcomes(passed=2)
    pid, port = (basetemp / "sshd").read_text().split()
    assert not Path(f"/proc/{pid}").exists()  # stopped and reaped
    with pytest.raises(ConnectionRefusedError), socket.create_connection(("127.0.0.1", int(port)), timeout=5):
        pass
