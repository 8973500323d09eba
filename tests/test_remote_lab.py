"""A device far away (``testing.latency.LatencyProxy``): device commands share one checked connection.

No figure is asserted (speed is the bench's); what is asserted is behaviour at a distance: the
lab delays and relays faithfully, ``device_run`` logs in once for many commands through the delay,
and its shared connection leaves nothing behind, not even after ``kill -9``.
"""

from __future__ import annotations

import os
import signal
import socket
import stat
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from helpers import LoopbackDevice, Suite, artifacts_run, descendants, identity_fds, make_driver, wait_until
from jumpstarter_driver_ssh_mount.common.procfs import processes
from jumpstarter_driver_ssh_mount.reach.device_connection import DeviceConnection
from jumpstarter_driver_ssh_mount.ssh.master import MASTER_FOLDERS
from pytest_jumpstarter_mount.testing.latency import LatencyProxy

RTT = 0.040


def logins(device: LoopbackDevice) -> int:
    """How many logins the device's sshd accepted so far (its log: one line each)."""
    return device.log_tail(1 << 20).count("Accepted publickey")


def masters_of(pid: int) -> list[int]:
    """ssh processes among ``pid``'s descendants that are connection masters (``ControlMaster=yes``)."""
    argvs = {p.pid: p.argv() or [] for p in processes()}
    return [d for d in descendants(pid) if "ControlMaster=yes" in argvs.get(d, [])]


def master_folders() -> list[Path]:
    parent = MASTER_FOLDERS.parent
    return sorted(parent.iterdir()) if parent.is_dir() else []


@pytest.fixture
def far_device(tmp_path: Path) -> Iterator[tuple[LoopbackDevice, LatencyProxy]]:
    """A device of this test alone (its sshd log counts logins), 40 ms away."""
    device = LoopbackDevice(tmp_path / "far").setup().start()
    try:
        with LatencyProxy((device.host, device.port), RTT) as far:
            yield device, far
    finally:
        device.stop()


# -- the lab itself ----------------------------------------------------------------------------
def echo_server() -> tuple[socket.socket, threading.Thread]:
    """A one-connection server that echoes what it reads, upper-cased, until EOF, then closes."""
    server = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        conn, _ = server.accept()
        with conn:
            while data := conn.recv(65536):
                conn.sendall(data.upper())

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    return server, thread


def test_the_lab_relays_both_ways_in_order_and_passes_eof_on() -> None:
    server, thread = echo_server()
    payload = os.urandom(1 << 20).hex().encode()  # 2 MiB of [0-9a-f]: many chunks in flight
    with server, LatencyProxy(server.getsockname(), RTT) as far:
        with socket.create_connection((far.host, far.port)) as conn:

            def send() -> None:
                conn.sendall(payload)
                conn.shutdown(socket.SHUT_WR)

            sender = threading.Thread(target=send)
            sender.start()
            received = bytearray()
            while chunk := conn.recv(1 << 16):
                received += chunk
            sender.join()
        thread.join(10)
        assert bytes(received) == payload.upper()
        assert far.connections == 1


def test_the_lab_listens_and_relays_on_loopback_only() -> None:
    with pytest.raises(ValueError, match="loopback"):
        LatencyProxy(("192.0.2.1", 22), RTT)
    with pytest.raises(ValueError, match="loopback"):
        LatencyProxy(("127.0.0.1", 22), RTT, host="0.0.0.0")


def test_ssh_through_the_lab(far_device: tuple[LoopbackDevice, LatencyProxy], client_for) -> None:
    device, far = far_device
    with DeviceConnection(client_for(device, far)) as connection:
        assert connection.run("echo far", check=True).stdout == "far\n"


# -- device commands share one connection ------------------------------------------------------
@pytest.fixture
def client_for(tmp_path: Path) -> Iterator:
    """``client_for(device, far)``: an in-process ``SSHMountClient`` whose exporter reaches ``device`` via ``far``."""
    from jumpstarter.common.utils import serve

    stack: list = []

    def make(device: LoopbackDevice, far: LatencyProxy):
        context = serve(make_driver(device, address=(far.host, far.port)))
        stack.append(context)
        return context.__enter__()

    yield make
    for context in reversed(stack):
        context.__exit__(None, None, None)


@pytest.mark.parametrize("transport", ["auto", "forward"])
def test_commands_share_one_login(far_device, client_for, transport: str) -> None:
    device, far = far_device
    before = logins(device)
    with DeviceConnection(client_for(device, far), transport=transport) as connection:
        results = [connection.run(f"echo {i}; echo e{i} >&2; exit {i % 3}") for i in range(10)]
        assert [(r.returncode, r.stdout, r.stderr) for r in results] == [
            (i % 3, f"{i}\n", f"e{i}\n") for i in range(10)
        ]
        assert {r.transport for r in results} == {"direct" if transport == "auto" else "forward"}
        assert connection.opened == 1
        assert len(masters_of(os.getpid())) == 1
    wait_until(lambda: logins(device) - before >= 1, 10, "sshd's log line")
    assert logins(device) - before == 1
    assert masters_of(os.getpid()) == []
    assert not [f for f in master_folders() if f"{os.getpid()}" in (f / "owner").read_text(errors="replace")]
    assert identity_fds() == []


def test_a_lost_master_is_opened_again(far_device, client_for) -> None:
    device, far = far_device
    with DeviceConnection(client_for(device, far)) as connection:
        assert connection.run("true").ok
        (master,) = masters_of(os.getpid())
        os.kill(master, signal.SIGKILL)
        wait_until(lambda: not connection.shared, 10, "the master's end")
        assert connection.run("echo again").stdout == "again\n"
        assert connection.opened == 2
    assert masters_of(os.getpid()) == []


def test_a_timeout_ends_the_command_not_the_connection(far_device, client_for) -> None:
    device, far = far_device
    from jumpstarter_driver_ssh_mount import DeviceCommandTimeout

    with DeviceConnection(client_for(device, far)) as connection:
        assert connection.run("true").ok
        with pytest.raises(DeviceCommandTimeout):
            connection.run("sleep 30", timeout=1)
        assert connection.run("echo still").stdout == "still\n"
        assert connection.opened == 1


DEVICE_RUN_SUITE = """
import os, time

def test_many(device_run):
    for i in range(10):
        assert device_run(f"echo {i}", check=True).stdout == f"{i}\\n"
    ready = os.environ.get("READY_FILE")
    if ready:
        with open(ready + ".tmp", "w") as f:
            f.write("ready")
        os.rename(ready + ".tmp", ready)
        time.sleep(120)
"""


def test_device_run_logs_in_once_per_session(own_device: Suite) -> None:
    own_device.pytester.makepyfile(test_far=DEVICE_RUN_SUITE)
    device = own_device.device
    before = logins(device)
    with LatencyProxy((device.host, device.port), RTT) as far:
        device.exporter_config(own_device.pytester.path / "exporter.yaml", host=far.host, port=far.port)
        result = own_device.run()
    result.assert_outcomes(passed=1)
    assert logins(own_device.device) - before == 1
    own_device.assert_clean()


def test_nothing_left_after_kill_9(own_device: Suite, tmp_path: Path) -> None:
    own_device.pytester.makepyfile(test_far=DEVICE_RUN_SUITE)
    ready = tmp_path / "ready"
    proc = subprocess.Popen(
        [sys.executable, "-m", "pytest", *own_device.args()],
        cwd=own_device.pytester.path,
        env={**os.environ, "READY_FILE": str(ready)},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        wait_until(lambda: ready.exists() or proc.poll() is not None, 60, "the commands")
        assert proc.poll() is None, proc.communicate()[0]
        (master,) = masters_of(proc.pid)
        folder = next(f for f in master_folders() if str(proc.pid) in (f / "owner").read_text(errors="replace"))
        proc.kill()
        proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    wait_until(lambda: not Path(f"/proc/{master}").exists(), 10, "the master's end (parent-death signal)")
    assert not (folder / "control").exists()
    MASTER_FOLDERS.sweep()  # what the next run does at start (another run's may have been first)
    assert not folder.exists()


# -- bulk device-file work at a distance -------------------------------------------------------
def far_suite(suite: Suite, far: LatencyProxy) -> None:
    """Point ``suite``'s exporter config at its device through ``far``."""
    suite.device.exporter_config(suite.pytester.path / "exporter.yaml", host=far.host, port=far.port)


def test_all_300_files_are_collected_40_ms_away(own_device: Suite) -> None:
    device = own_device.device
    many = device.root / "data" / "many"
    many.mkdir()
    for i in range(300):
        (many / f"f{i:03}.log").write_bytes(os.urandom(2048))
    own_device.pytester.makepyfile(
        test_far="""
        def test_fails(remote_fs):
            assert False, "so that the device files are collected"
        """
    )
    with LatencyProxy((device.host, device.port), RTT) as far:
        far_suite(own_device, far)
        result = own_device.run(f"--jmp-mount-collect={device.remote('/data/many')}/*.log")
    result.assert_outcomes(failed=1)
    collected = artifacts_run(own_device.pytester.path) / "test_far.py_test_fails"
    copies = sorted(collected.rglob("*.log"))
    assert len(copies) == 300, result.stdout.str()[-3000:]
    assert all(copy.read_bytes() == (many / copy.name).read_bytes() for copy in copies)
    assert "timed out" not in result.stdout.str()
    assert result.stdout.str().count("jumpstarter mount: device round trip ") == 1
    own_device.assert_clean()


def test_read_many_and_restore_40_ms_away(own_device: Suite) -> None:
    device = own_device.device
    many = device.root / "data" / "many"
    many.mkdir()
    for i in range(50):
        (many / f"f{i:02}.conf").write_text(f"setting {i}\n")
    remote = device.remote("/data/many")
    own_device.pytester.makepyfile(
        test_far=f"""
        import pytest

        @pytest.mark.jmp_mount(restore=[f"{remote}/f{{i:02}}.conf" for i in range(50)])
        def test_changes(remote_fs, device_run):
            files = remote_fs.read_many("{remote}/*.conf")
            assert len(files) == 50 and files["{remote}/f07.conf"] == b"setting 7\\n"
            device_run("echo changed > {remote}/f07.conf; rm {remote}/f08.conf", check=True)
        """
    )
    before = logins(device)
    with LatencyProxy((device.host, device.port), RTT) as far:
        far_suite(own_device, far)
        result = own_device.run()
    result.assert_outcomes(passed=1)
    assert (many / "f07.conf").read_text() == "setting 7\n"
    assert (many / "f08.conf").read_text() == "setting 8\n"
    assert logins(device) - before <= 3  # the session's mount, the test's mount, the one shared connection
    own_device.assert_clean()


def test_a_near_device_gets_no_distance_line(suite: Suite) -> None:
    suite.pytester.makepyfile(
        test_near="""
        def test_one(remote_fs):
            assert remote_fs.is_mounted()

        def test_two(remote_fs):
            assert remote_fs.is_mounted()
        """
    )
    result = suite.run("-v")
    result.assert_outcomes(passed=2)
    assert "device round trip" not in result.stdout.str()
    suite.assert_clean()


def test_the_shared_connection_is_no_side_door(far_device, client_for, tmp_path: Path) -> None:
    """Its socket is ours alone (a 0700 folder of this user, a path only our command lines name); a caller's
    ``Control*`` options never choose it, and nothing of it stays after close."""
    device, far = far_device
    foreign = tmp_path / "someone-elses-master"
    options = [f"ControlPath={foreign}", "ControlMaster=auto", "ControlPersist=yes"]
    with DeviceConnection(client_for(device, far), options=options) as connection:
        assert connection.run("true").ok
        (master,) = masters_of(os.getpid())
        argv = next(p.argv() for p in processes() if p.pid == master) or []
        (path,) = [a.split("=", 1)[1] for a in argv if a.startswith("ControlPath=")]
        folder = Path(path).parent
        assert folder.parent == MASTER_FOLDERS.parent and str(foreign) not in " ".join(argv)
        assert "ControlPersist=no" in argv and "ControlPersist=yes" not in argv
        for private in (folder, folder.parent):
            info = private.lstat()
            assert info.st_uid == os.getuid() and stat.S_IMODE(info.st_mode) == 0o700
        assert not foreign.exists()
    assert not folder.exists()
    assert masters_of(os.getpid()) == []
