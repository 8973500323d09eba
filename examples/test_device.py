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
def test_write_reaches_the_device(remote_path, device_run):
    """Write through the mount, then read it back on the device with device_run (over SSH)."""
    target = remote_path / "written-by-pytest.txt"
    target.write_text("hello from the test host\n")
    try:
        assert device_run("cat /data/written-by-pytest.txt", check=True).stdout == "hello from the test host\n"
    finally:
        target.unlink()


def test_wait_for_the_device_to_write(remote_fs, device_run):
    """wait_for: the device appends to a log a moment later; the test waits for the line."""
    device_run("(sleep 0.5; echo 'service READY' >> /var/log/app/app.log) >/dev/null 2>&1 &", check=True, timeout=10)
    assert "service READY" in remote_fs.wait_for("app/app.log", contains="service READY", timeout=10)


def test_a_failing_device_command_says_why(device_run):
    """A failing command is a result (exit code, stderr); with check=True it would raise, showing both."""
    result = device_run("cat /no/such/file")
    assert result.returncode != 0 and "No such file" in result.stderr
