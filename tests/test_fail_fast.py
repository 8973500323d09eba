"""An unavailable device fails fast and says so once: one reason, first, then short errors.

The unreachable device is a real one that drops packets: a listening socket on 127.0.0.1
whose accept queue is full, so the kernel drops every new SYN (as a powered-off board's
network does), and a TCP connect waits until its timeout.
"""

from __future__ import annotations

import contextlib
import socket
import time
from collections.abc import Iterator

import pytest

from helpers import Suite

BUDGET = 15.0  # seconds for a 4-test suite against an unreachable device, pytest start included


@contextlib.contextmanager
def dropping_port(host: str = "127.0.0.1") -> Iterator[int]:
    """A port on ``host`` where connects time out: its listen queue is full and never accepted."""
    with contextlib.ExitStack() as stack:
        server = stack.enter_context(socket.socket())
        server.bind((host, 0))
        server.listen(0)
        port = server.getsockname()[1]
        for _ in range(16):  # fill the accept queue until a connect no longer completes
            probe = stack.enter_context(socket.socket())
            probe.settimeout(0.3)
            try:
                probe.connect((host, port))
            except TimeoutError:
                break
        else:
            raise AssertionError(f"{host}:{port} kept accepting connections")
        yield port


@pytest.fixture
def unreachable(suite: Suite) -> Iterator[Suite]:
    """``suite`` with the exporter config's device address at a port that drops connections."""
    config = suite.pytester.path / "exporter.yaml"
    with dropping_port() as port:
        config.write_text(config.read_text().replace(f"port: {suite.device.port}\n", f"port: {port}\n"))
        suite.dropping_port = port  # type: ignore[attr-defined]
        yield suite


FOUR_TESTS = """
import pytest

def test_reads_log(remote_fs):
    assert (remote_fs / "messages").exists()

def test_writes(remote_path):
    (remote_path / "x").write_text("x")

@pytest.mark.jmp_mount(remote="/etc")
def test_own_mount(remote_path):
    pass

def test_own_client_mount(jmp_mount_client):
    with jmp_mount_client.mounted(remote_path="/"):
        pass
"""
BOARD_ONLY = """
def test_power_switch(jmp_client):
    assert jmp_client is not None
"""
HINT = "is the device up and sshd listening"


def errors_section(output: str) -> str:
    """The run's output before the short test summary (which repeats each error's first line)."""
    return output.split("short test summary info")[0]


def test_unreachable_device_fails_fast_and_once(unreachable: Suite) -> None:
    """4 tests against a device whose packets are dropped: one reason, first, with the address; <= 15 s."""
    suite = unreachable
    port = suite.dropping_port  # type: ignore[attr-defined]
    suite.pytester.makepyfile(test_board=FOUR_TESTS, test_power=BOARD_ONLY)
    started = time.monotonic()
    result = suite.run("-ra", "--jmp-mount-collect=/var/log/*", remote="/var/log")
    took = time.monotonic() - started
    out = result.stdout.str()
    result.assert_outcomes(errors=4, passed=1)  # a test that needs only the board still runs
    reason = f"the exporter cannot reach the device's sshd at 127.0.0.1:{port}: timed out after 3 s"
    result.stdout.fnmatch_lines(
        [
            "*short test summary info*",
            "ERROR test_board.py::test_reads_log - Failed: the exporter cannot reach*",
            "ERROR test_board.py::test_writes - Failed: device unavailable*",
            "ERROR test_board.py::test_own_mount - Failed: device unavailable*",
            "ERROR test_board.py::test_own_client_mount - Failed: device unavailable*",
        ]
    )
    details = errors_section(out)  # the short summary repeats each line (in full where CI is set)
    assert details.count(f"{reason}; {HINT}") == 1, out  # the whole reason, with its fix, once
    assert details.count(f"device unavailable (see first error): {reason}\n") == 3, out
    assert "could not mount the device to collect" not in out  # no collection mount was tried
    assert out.count("nothing collected: the device is unavailable") == 1, out
    assert took <= BUDGET, f"{took:.1f} s against an unreachable device (budget {BUDGET:g} s)"
    assert suite.events("ready") == []
    suite.assert_clean()


def test_each_xdist_worker_says_it_once(unreachable: Suite) -> None:
    """Per worker: each of two workers finds out once; every other test errors in short."""
    unreachable.pytester.makepyfile(test_board=FOUR_TESTS.replace("def test_", "def test_a_") + FOUR_TESTS)
    result = unreachable.run("-n", "2", remote="/var/log")
    result.assert_outcomes(errors=8)
    out = errors_section(result.stdout.str())
    assert 1 <= out.count(HINT) <= 2, out
    assert out.count("device unavailable (see first error)") == 8 - out.count(HINT), out
    unreachable.assert_clean()


def test_device_source_failure_is_said_once(pytester: pytest.Pytester) -> None:
    """A source that fails (a malformed exporter config): its reason once, the other device tests in short."""
    pytester.makepyfile(test_board=FOUR_TESTS, test_plain="def test_plain():\n    pass\n")
    broken = pytester.path / "broken.yaml"
    broken.write_text("export: [this is: not, {valid")
    result = pytester.runpytest_subprocess("-ra", "-p", "no:cacheprovider", f"--jmp-mount-exporter-config={broken}")
    result.assert_outcomes(errors=4, passed=1)
    out = errors_section(result.stdout.str())
    first = [line for line in out.splitlines() if line.startswith(f"--jmp-mount-exporter-config {broken} is not")]
    assert len(first) == 1, out  # the reason, first; then each other device test in short
    assert out.count(f"device unavailable (see first error): --jmp-mount-exporter-config {broken} is not a") == 3
    result.stdout.fnmatch_lines(["ERROR test_board.py::test_reads_log - Failed: --jmp-mount-exporter-config *"])
