"""An example device suite, as a test engineer would write it.

Run against any device whose exporter config has an SSHMount driver::

    pytest examples --jmp-mount-exporter-config=exporter.yaml --jmp-mount-remote=/var/log

`make demo` runs it against a loopback device.
"""

from __future__ import annotations

import pytest


def test_boot_log_is_there(remote_fs):
    """remote_fs is the Mount of --jmp-mount-remote (here /var/log), shared by the session."""
    messages = (remote_fs / "messages").read_text()
    assert messages.startswith("boot: line 1")


def test_log_directory_listing(remote_path):
    """remote_path is a plain pathlib.Path to the same directory."""
    assert {p.name for p in remote_path.iterdir()} >= {"messages", "app"}


@pytest.mark.jmp_mount(remote="/etc", restore=["/etc/os-release"])
def test_config_change_is_undone(remote_path):
    """restore=[...]: the file is put back after the test, pass or fail (the next test checks)."""
    (remote_path / "os-release").write_text('NAME="Changed by a test"\nID=changed\n')


@pytest.mark.jmp_mount(remote="/etc")
def test_os_release(remote_path):
    """A test can ask for its own mount of another device path."""
    release = dict(line.split("=", 1) for line in (remote_path / "os-release").read_text().splitlines() if line)
    assert release["ID"] == "loopback"


@pytest.mark.jmp_mount(remote="/data", options=["cache=no"])
def test_write_reaches_the_device(remote_path, jmp_client):
    """Write through the mount, then read it back over SSH with the Jumpstarter SSH driver."""
    from jumpstarter_driver_ssh.client import SSHCommandRunOptions

    target = remote_path / "written-by-pytest.txt"
    target.write_text("hello from the test host\n")
    try:
        result = jmp_client.ssh.run(SSHCommandRunOptions(capture_output=True), ["cat", "/data/written-by-pytest.txt"])
        assert result.return_code == 0, result.stderr
        assert result.stdout == "hello from the test host\n"
    finally:
        target.unlink()


def test_wait_for_the_device_to_write(remote_fs, jmp_client):
    """wait_for: the device appends to a log a moment later; the test waits for the line."""
    from jumpstarter_driver_ssh.client import SSHCommandRunOptions

    later = "(sleep 0.5; echo 'service READY' >> /var/log/app/app.log) >/dev/null 2>&1 &"
    assert jmp_client.ssh.run(SSHCommandRunOptions(capture_output=True), [later]).return_code == 0
    assert "service READY" in remote_fs.wait_for("/var/log/app/app.log", contains="service READY", timeout=10)
