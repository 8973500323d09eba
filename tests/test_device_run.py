"""Running a command on the real loopback device: ``SSHMountClient.run`` and the ``device_run`` fixture."""

from __future__ import annotations

import os
import time

import pytest

from helpers import LoopbackDevice, Suite, descendants, identity_fds
from jumpstarter_driver_ssh_mount import DeviceCommandError, DeviceCommandTimeout
from jumpstarter_driver_ssh_mount.common.procfs import processes


def our_ssh_processes() -> list[int]:
    """ssh processes among this process's descendants."""
    names = {p.pid: os.path.basename((p.argv() or [""])[0]) for p in processes()}
    return [pid for pid in descendants(os.getpid()) if names.get(pid) == "ssh"]


@pytest.mark.parametrize("transport", ["auto", "forward"])
def test_echo(client, transport: str) -> None:
    result = client.run("echo hello; echo to-stderr >&2", transport=transport)
    assert (result.returncode, result.stdout, result.stderr) == (0, "hello\n", "to-stderr\n")
    assert result.transport == ("direct" if transport == "auto" else "forward")
    assert identity_fds() == []


def test_the_command_runs_on_the_device(client, device: LoopbackDevice) -> None:
    target = device.root / "data" / f"run-{time.monotonic_ns()}"
    try:
        assert client.run(f"printf made > {device.remote('/data/' + target.name)}", check=True).ok
        assert target.read_text() == "made"
    finally:
        target.unlink(missing_ok=True)


def test_failing_command(client) -> None:
    result = client.run("echo partial; echo 'it broke' >&2; exit 3")
    assert (result.returncode, result.stdout, result.stderr) == (3, "partial\n", "it broke\n")
    with pytest.raises(DeviceCommandError) as caught:
        client.run("echo 'it broke' >&2; exit 3", check=True)
    assert (
        str(caught.value) == "device command \"echo 'it broke' >&2; exit 3\": it exited with code 3; stderr: 'it broke'"
    )
    assert caught.value.result.returncode == 3


def test_timeout_kills_ssh(client) -> None:
    started = time.monotonic()
    with pytest.raises(
        DeviceCommandTimeout, match=r"^device command 'echo started; sleep 30': did not finish within 1s"
    ):
        client.run("echo started; sleep 30", timeout=1)
    assert time.monotonic() - started < 5
    assert our_ssh_processes() == []
    assert identity_fds() == []


def test_device_run_fixture(suite: Suite) -> None:
    suite.pytester.makepyfile(
        test_run="""
        import pytest
        from jumpstarter_driver_ssh_mount import DeviceCommandError, DeviceCommandTimeout

        def test_run(device_run):
            result = device_run("echo hi; echo err >&2")
            assert (result.returncode, result.stdout, result.stderr) == (0, "hi\\n", "err\\n")
            assert device_run("exit 4").returncode == 4
            with pytest.raises(DeviceCommandError, match="exited with code 4; stderr: 'bad'"):
                device_run("echo bad >&2; exit 4", check=True)
            with pytest.raises(DeviceCommandTimeout):
                device_run("sleep 20", timeout=0.5)
        """
    )
    result = suite.run()
    result.assert_outcomes(passed=1)
    fixtures = suite.pytester.runpytest_subprocess("--fixtures", "-p", "no:cacheprovider")
    fixtures.stdout.fnmatch_lines(["device_run*", "*Run a shell command on the device*"])
    suite.assert_clean()
