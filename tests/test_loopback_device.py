"""The loopback device as a service and as a device: ``python -m pytest_jumpstarter_mount.testing DIR``
stops with its sshd on every signal, in the foreground and in the background, ends when its sshd dies,
and its chrooted sessions see ``/proc`` and ``/sys`` while the host sees no mount under its files."""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from helpers import LoopbackDevice, Suite, chrooted_device, wait_until
from jumpstarter_driver_ssh_mount.sshfs.mountinfo import read_mounts

RUNNER = [sys.executable, "-m", "pytest_jumpstarter_mount.testing"]
LAST_LINE = "stops it and its sshd."


@dataclass
class Runner:
    """A started ``python -m pytest_jumpstarter_mount.testing DIR``: its pid, its sshd's, the port, its output."""

    pid: int
    sshd: int
    port: int
    output: Path
    dir: Path

    def text(self) -> str:
        return self.output.read_text()


def gone(pid: int) -> bool:
    """The process has exited (a zombie waiting for init to reap it counts as exited)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return True
    return state in ("Z", "X")


def port_closed(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=5).close()
    except ConnectionRefusedError:
        return True
    return False


def caught_signals(pid: int) -> set[int]:
    """The signals ``pid`` has a handler for (``SigCgt`` in /proc/PID/status)."""
    found = re.search(r"^SigCgt:\s*([0-9a-f]+)$", Path(f"/proc/{pid}/status").read_text(), re.M)
    assert found is not None
    mask = int(found[1], 16)
    return {n for n in range(1, 65) if mask & (1 << (n - 1))}


def wait_for_printout(pid: int, output: Path, dir: Path) -> Runner:
    wait_until(lambda: output.exists() and LAST_LINE in output.read_text(), what="the device's printout")
    sshd, port = re.search(r"sshd \(pid (\d+)\) on 127\.0\.0\.1:(\d+)", output.read_text()).groups()  # type: ignore[union-attr]
    return Runner(pid, int(sshd), int(port), output, dir)


def stop_leftovers(runner: Runner | None) -> None:
    """After a failed test: end what is left, by PID (the runner first: it stops its sshd)."""
    if runner is None:
        return
    for pid in (runner.pid, runner.sshd):
        if not gone(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


@contextlib.contextmanager
def in_foreground(tmp_path: Path, **popen: object) -> Iterator[tuple[Runner, subprocess.Popen[bytes]]]:
    """``python -m ... DIR`` started directly (``popen``: more Popen arguments); what is left is ended by PID."""
    out = tmp_path / "runner.out"
    with out.open("w") as sink:
        process = subprocess.Popen(  # type: ignore[call-overload]
            [*RUNNER, str(tmp_path / "device")], stdout=sink, stderr=subprocess.STDOUT, **popen
        )
    runner = None
    try:
        runner = wait_for_printout(process.pid, out, tmp_path / "device")
        yield runner, process
    finally:
        stop_leftovers(runner)
        process.wait(30)


@contextlib.contextmanager
def in_background(tmp_path: Path, *args: str) -> Iterator[tuple[Runner, subprocess.Popen[str]]]:
    """``sh -c 'python -m ... DIR & wait'``: as a non-interactive shell starts it, with SIGINT ignored.

    The shell waits for it and appends ``exit status N`` to its output.
    """
    out, dir = tmp_path / "runner.out", tmp_path / "device"
    command = shlex.join([*RUNNER, str(dir), *args])
    script = f'{command} >{out} 2>&1 & echo $!; wait $!; echo "exit status $?" >>{out}'
    shell = subprocess.Popen(["sh", "-c", script], stdout=subprocess.PIPE, text=True)
    runner = None
    try:
        assert shell.stdout is not None
        runner = wait_for_printout(int(shell.stdout.readline()), out, dir)
        yield runner, shell
    finally:
        stop_leftovers(runner)
        shell.wait(30)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP], ids=lambda s: s.name)
def test_a_signal_stops_it_and_its_sshd_in_the_background(tmp_path: Path, sig: signal.Signals) -> None:
    with in_background(tmp_path) as (runner, shell):
        assert {signal.SIGINT, signal.SIGTERM, signal.SIGHUP} <= caught_signals(runner.pid)
        assert not port_closed(runner.port)
        os.kill(runner.pid, sig)
        assert shell.wait(30) == 0
        wait_until(lambda: gone(runner.sshd), what=f"sshd {runner.sshd} to exit")
    assert port_closed(runner.port)
    assert runner.text().splitlines()[-2:] == [
        f"loopback device: {sig.name} received; stopping it and its sshd",
        "exit status 0",
    ]


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP], ids=lambda s: s.name)
def test_a_signal_to_its_foreground_job_stops_it_and_its_sshd(tmp_path: Path, sig: signal.Signals) -> None:
    """As Ctrl+C (or a hangup) reaches a terminal's foreground job: the signal goes to its whole process group.

    sshd has a session of its own, so it is the runner that stops it, in order, and says so.
    """
    with in_foreground(tmp_path, start_new_session=True) as (runner, process):
        os.killpg(process.pid, sig)
        assert process.wait(30) == 0
        wait_until(lambda: gone(runner.sshd), what=f"sshd {runner.sshd} to exit")
    assert runner.text().splitlines()[-1] == f"loopback device: {sig.name} received; stopping it and its sshd"
    assert port_closed(runner.port)


def test_its_sshd_dying_ends_it_with_a_message(tmp_path: Path) -> None:
    with in_foreground(tmp_path) as (runner, process):
        os.kill(runner.sshd, signal.SIGKILL)
        assert process.wait(30) == 1
    assert f"loopback device: its sshd (pid {runner.sshd}) was killed by SIGKILL; stopping" in runner.text()
    assert port_closed(runner.port)


def test_kill_9_of_it_takes_its_sshd_along(tmp_path: Path) -> None:
    """``PR_SET_PDEATHSIG``: the kernel ends sshd when the process that runs it is killed outright."""
    with in_foreground(tmp_path) as (runner, process):
        process.kill()
        process.wait(30)
        wait_until(lambda: gone(runner.sshd), what=f"sshd {runner.sshd} to die with its parent")
    assert port_closed(runner.port)


def test_the_printout_says_whether_it_is_chrooted_and_where_things_are(tmp_path: Path) -> None:
    with in_background(tmp_path, "--no-chroot") as (runner, _):
        config, root = runner.dir / "exporter.yaml", runner.dir / "fs"
        os.kill(runner.pid, signal.SIGTERM)
    assert runner.text().splitlines()[:7] == [
        f"loopback device: sshd (pid {runner.sshd}) on 127.0.0.1:{runner.port}, run by pid {runner.pid}",
        f"  chrooted: no (--no-chroot); device paths are this host's: /var/log is {root}/var/log",
        f"  device files on this host: {root}",
        f"  exporter config: {config}",
        f"  pytest --jmp-mount-exporter-config={config} --jmp-mount-remote={root}/var/log",
        f"  jmp shell --exporter-config {config}",
        f"Ctrl+C, or kill -TERM/-HUP {runner.pid}, stops it and its sshd.",
    ]


# -- the chrooted device: /proc and /sys, and nothing mounted where the host would see it ----------
@pytest.fixture(scope="module")
def device(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LoopbackDevice]:
    """This module's ``suite`` runs against a chrooted loopback device (it overrides conftest's ``device``)."""
    with chrooted_device(tmp_path_factory, "this module") as dev:
        yield dev


def mounts_under(path: Path) -> list[str]:
    """Every mount of this (the host's) namespace at or below ``path``."""
    base = str(path).rstrip("/") + "/"
    return [e.mountpoint for e in read_mounts() if (e.mountpoint + "/").startswith(base)]


def test_the_chrooted_device_has_proc_and_sys(suite: Suite) -> None:
    assert suite.device.chroot
    suite.pytester.makepyfile(
        test_board="""
        import os
        import pytest

        def test_proc_by_command(device_run):
            assert device_run("cat /proc/meminfo", check=True).stdout.startswith("MemTotal:")

        @pytest.mark.jmp_mount(remote="/proc", options=["direct_io"])
        def test_proc_through_a_mount(remote_path):
            assert (remote_path / "meminfo").read_text().startswith("MemTotal:")

        @pytest.mark.jmp_mount(remote="/sys")
        def test_sys_through_a_mount(remote_path):
            assert "lo" in os.listdir(remote_path / "class/net")

        def test_proc_sys_is_read_only(device_run):
            result = device_run("echo 1 > /proc/sys/vm/drop_caches")
            assert result.returncode != 0 and "Read-only file system" in result.stderr

        def test_what_the_device_writes_is_on_the_host(device_run):
            device_run("echo from the device > /data/written.txt", check=True)
            on_host = os.path.join(os.environ["DEVICE_ROOT"], "data/written.txt")
            assert open(on_host).read() == "from the device\\n"
            os.unlink(on_host)
        """
    )
    result = suite.run()
    result.assert_outcomes(passed=5)
    suite.assert_clean()


def test_nothing_of_the_chroot_is_mounted_where_the_host_sees_it(device: LoopbackDevice) -> None:
    """/proc and /sys live in sshd's own mount namespace: a ``rm -rf`` of the device's files never meets them."""
    host_mounts = {e.mountpoint for e in read_mounts()}
    assert not any(m.startswith("/mnt/jmp-loopback-device") for m in host_mounts), host_mounts
    assert mounts_under(device.base) == []
    walked = {name for _, dirs, files in os.walk(device.base) for name in dirs + files}
    assert not walked & {"proc", "sys", "meminfo"}, walked
