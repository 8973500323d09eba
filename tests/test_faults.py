"""The fault matrix: real faults against the real sshd device. Each ends within a stated bound,
shows a clear error (or recovers), and leaves no mount, process, key or directory of ours."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from helpers import (
    JMP,
    SLEEPING_TEST,
    LoopbackDevice,
    StandaloneExporter,
    Suite,
    child_pids,
    env_with_jmp,
    exporter_config,
    identity_fds,
    leftovers,
    live_processes_mentioning,
    sshfs_mounts,
    start_pytest,
    target,
    wait_until,
)
from jumpstarter_driver_ssh_mount import start_mount

FAST_KEEPALIVE = ["ServerAliveInterval=1", "ServerAliveCountMax=2", "ConnectTimeout=2"]
FAST_KEEPALIVE_ARGS = tuple(f"--jmp-mount-option={o}" for o in FAST_KEEPALIVE)


# 1. kill -9 of the pytest process; the next run sweeps; foreign mounts are never touched
def test_kill_9_of_pytest_then_next_run_sweeps(suite: Suite, device: LoopbackDevice, mount_base: Path) -> None:
    suite.pytester.makepyfile(test_sleep=SLEEPING_TEST)
    ready = suite.pytester.path / "ready"
    proc = start_pytest(suite, "test_sleep.py", ready=ready)
    wait_until(lambda: ready.exists() or proc.poll() is not None, 60, "the mount")
    mountpoint = ready.read_text()
    sshfs = [p for p in child_pids(proc.pid) if Path(f"/proc/{p}/comm").read_text().strip() == "sshfs"]
    proc.kill()
    proc.communicate()
    assert len(sshfs) == 1, "sshfs runs as a child of pytest"
    wait_until(
        lambda: not sshfs_mounts(mountpoint) and not live_processes_mentioning(mountpoint),
        10,
        "sshfs to unmount and exit after its parent died",
    )
    run_dir = Path(mountpoint).parent
    assert (run_dir / "owner").exists() and Path(mountpoint).is_dir()  # stale state, no live mount

    foreign = suite.mount_dir / "not-ours"  # a mount the plugin did not make: must survive the sweep
    foreign.mkdir()
    other = start_mount(target(device), foreign, identity=device.identity())
    try:
        suite.pytester.makepyfile(test_other="def test_nothing():\n    pass\n")
        result = suite.run("test_other.py")
        result.assert_outcomes(passed=1)
        result.stdout.fnmatch_lines(["jumpstarter mount: cleaned up 1 stale mountpoint(s) of a killed run in *"])
        assert not run_dir.exists()
        assert other.is_mounted() and (other / "etc/os-release").exists()
    finally:
        other.unmount()
    foreign.rmdir()
    suite.assert_clean()


def test_kill_9_of_j_mount_foreground(device: LoopbackDevice, mountpoint: Path, tmp_path: Path) -> None:
    yaml = exporter_config(device, tmp_path / "exporter.yaml")
    shell = subprocess.Popen(
        [JMP, "shell", "--exporter-config", str(yaml), "--", "j", "mount", str(mountpoint), "--foreground"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=env_with_jmp(),
        start_new_session=True,
    )
    assert shell.stdout is not None
    try:
        assert shell.stdout.readline().startswith("Mounted ")
        j = [p for p in child_pids(shell.pid) if b"mount" in Path(f"/proc/{p}/cmdline").read_bytes()]
        assert len(j) == 1
        os.kill(j[0], signal.SIGKILL)
        wait_until(lambda: not leftovers(mountpoint, dir_should_exist=True), 10, "the mount to go away")
    finally:
        os.killpg(shell.pid, signal.SIGKILL)
        shell.wait()
    assert not any("ssh_key" in name for name in os.listdir("/tmp"))  # upstream left its key file here


# 2. sshfs killed mid-test
def test_sshfs_killed_mid_test(device: LoopbackDevice, mountpoint: Path) -> None:
    with start_mount(target(device), mountpoint, identity=device.identity()) as m:
        os.kill(m.pid, signal.SIGKILL)
        started = time.monotonic()
        with pytest.raises(OSError) as info:
            (m / "etc/os-release").read_text()
        assert time.monotonic() - started < 5
        assert info.value.errno in (errno.ENOTCONN, errno.ECONNABORTED)  # then ENOTCONN until unmounted
        with pytest.raises(OSError, match="Transport endpoint is not connected"):
            os.listdir(m.mountpoint)
        wait_until(lambda: not m.is_mounted(), 5, "is_mounted() to see sshfs gone")
    assert leftovers(mountpoint, dir_should_exist=True) == []


# 3. sshd restarted mid-session: the default options reconnect
def test_sshd_restart_recovers(tmp_path: Path, mountpoint: Path) -> None:
    dev = LoopbackDevice(tmp_path / "dev").setup().start()
    try:
        with start_mount(target(dev), mountpoint, identity=dev.identity()) as m:
            assert (m / "etc/os-release").exists()
            dev.stop()
            dev.start()  # same port, same keys
            time.sleep(0.3)  # sshfs notices the dropped session; a request in flight then gets EIO
            assert (m / "var/log/messages").read_text().startswith("boot: line 1")
            assert "reconnect" in m.options
    finally:
        dev.stop()
    assert leftovers(mountpoint, dir_should_exist=True) == []


# 4. device frozen: access fails within ServerAliveInterval x ServerAliveCountMax (+ ConnectTimeout)
def test_frozen_device_fails_within_bound(tmp_path: Path, mountpoint: Path) -> None:
    dev = LoopbackDevice(tmp_path / "dev").setup().start()
    frozen: list[int] = []
    try:
        m = start_mount(target(dev), mountpoint, identity=dev.identity(), options=FAST_KEEPALIVE)
        assert (m / "etc/os-release").exists()
        frozen = [dev.pid, *child_pids(dev.pid)]
        for pid in frozen:
            os.kill(pid, signal.SIGSTOP)
        started = time.monotonic()
        with pytest.raises(OSError):
            (m / "var/log/messages").read_text()
        assert time.monotonic() - started < 1 * 2 + 2 + 5  # the bound the options give, plus slack
        started = time.monotonic()
        m.unmount()
        assert time.monotonic() - started < 10
    finally:
        for pid in frozen:
            os.kill(pid, signal.SIGCONT)
        dev.stop()
    assert leftovers(mountpoint, dir_should_exist=True) == []


# 5. busy mountpoint at teardown, through the plugin
def test_busy_mountpoint_at_teardown(suite: Suite) -> None:
    suite.pytester.makepyfile(
        test_busy="""
        import subprocess

        HELD = []

        def test_leaves_it_busy(remote_fs):
            HELD.append(open(remote_fs / "etc/os-release"))
            HELD.append(subprocess.Popen(["sleep", "30"], cwd=remote_fs / "etc"))

        def test_after():
            for held in HELD:
                if hasattr(held, "kill"):
                    held.kill()
                    held.wait()
        """
    )
    result = suite.run("--jmp-mount-scope=function", "-p", "no:randomly")
    result.assert_outcomes(passed=2)
    suite.assert_clean()


def test_busy_warning_names_the_holder(device: LoopbackDevice, mountpoint: Path, caplog) -> None:
    m = start_mount(target(device), mountpoint, identity=device.identity())
    holder = subprocess.Popen(["sleep", "30"], cwd=m / "etc")
    try:
        m.unmount()
    finally:
        holder.kill()
        holder.wait()
    assert f"is busy (used by {holder.pid} (sleep))" in caplog.text
    assert leftovers(mountpoint, dir_should_exist=True) == []


# 6. standalone exporter killed mid-session
def test_standalone_exporter_killed(suite: Suite) -> None:
    with StandaloneExporter(suite.pytester.path / "exporter.yaml") as exporter:
        serving = exporter.wait_ready().pids  # jmp run serves from a child process
        suite.pytester.makepyfile(
            test_exp=f"""
            import os, signal, time

            def test_exporter_dies(remote_fs):
                assert (remote_fs / "etc/os-release").exists()
                for pid in {serving[::-1]!r}:
                    os.kill(pid, signal.SIGKILL)
                time.sleep(0.5)
                try:
                    (remote_fs / "var/log/messages").read_text()
                except OSError as exc:
                    print("ERROR SEEN:", exc)
                else:
                    raise AssertionError("read through a dead exporter succeeded")
            """
        )
        args = suite.args_without("--jmp-mount-exporter-config", *FAST_KEEPALIVE_ARGS)
        started = time.monotonic()
        result = suite.pytester.runpytest_subprocess(
            *args,
            "-s",
            f"--jmp-mount-tls-grpc={exporter.address}",
            "--jmp-mount-tls-grpc-insecure",
            "--jmp-mount-transport=forward",  # the mount rides on the exporter that is killed
            timeout=120,
        )
        assert time.monotonic() - started < 60
        result.assert_outcomes(passed=1)
        result.stdout.fnmatch_lines(["*ERROR SEEN: *Input/output error*"])
    suite.assert_clean()


# 7. Ctrl+C while a mount is being established (the device accepts TCP but never answers)
def test_ctrl_c_during_mount_establishment(suite: Suite, tmp_path: Path) -> None:
    dev = LoopbackDevice(tmp_path / "frozen").setup().start()
    os.kill(dev.pid, signal.SIGSTOP)
    try:
        yaml = dev.exporter_config(tmp_path / "frozen.yaml")
        host_key = json.dumps((dev.base / "host_key.pub").read_text().strip())
        yaml.write_text(yaml.read_text() + f"    config:\n      host_key: {host_key}\n")  # no scan: sshfs waits
        suite.pytester.makepyfile(test_hang="def test_hang(remote_fs):\n    pass\n")
        args = suite.args_without("--jmp-mount-exporter-config")
        proc = subprocess.Popen(
            [sys.executable, "-m", "pytest", *args, f"--jmp-mount-exporter-config={yaml}", "--jmp-mount-timeout=60"],
            cwd=suite.pytester.path,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        wait_until(lambda: bool(live_processes_mentioning(str(suite.mount_dir))), 60, "sshfs to start")
        time.sleep(0.3)
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=30)
        assert proc.returncode == pytest.ExitCode.INTERRUPTED, out
    finally:
        os.kill(dev.pid, signal.SIGCONT)
        dev.stop()
    suite.assert_clean()


# 8. an xdist worker killed: the other worker's mount is unaffected, nothing of the dead one survives
def test_xdist_worker_killed(suite: Suite) -> None:
    suite.pytester.makepyfile(
        test_workers="""
        import os, signal, time, pytest

        @pytest.mark.parametrize("n", range(4))
        def test_n(remote_fs, n, worker_id):
            assert (remote_fs / "etc/os-release").exists()
            if n == 0:
                os.kill(os.getpid(), signal.SIGKILL)  # this worker dies with a live mount
            time.sleep(0.5)
            assert (remote_fs / "etc/os-release").exists()  # the other worker's mount works on
        """
    )
    result = suite.run("-n", "2", "-p", "no:randomly")
    outcomes = result.parseoutcomes()
    assert outcomes.get("failed", 0) == 1 and outcomes.get("passed", 0) == 3, result.stdout.str()
    wait_until(lambda: not sshfs_mounts(suite.mount_dir), 10, "the dead worker's mount to go")
    suite.assert_clean()


# no data loss
def test_no_data_loss(device: LoopbackDevice, mountpoint: Path, tmp_path: Path) -> None:
    target_dir = device.root / "data" / "bulk"
    target_dir.mkdir()
    expected: dict[str, str] = {}
    try:
        with start_mount(target(device, "/data"), mountpoint, identity=device.identity()) as m:
            (m / "bulk" / "small").mkdir()
            for i in range(500):
                data = os.urandom(64 + i)
                (m / "bulk" / "small" / f"f{i:03}").write_bytes(data)
                expected[f"small/f{i:03}"] = hashlib.sha256(data).hexdigest()
            big = hashlib.sha256()
            with open(m / "bulk" / "big.bin", "wb") as f:
                for _ in range(50):
                    chunk = os.urandom(1 << 20)
                    f.write(chunk)
                    big.update(chunk)
            expected["big.bin"] = big.hexdigest()
        # after teardown, on the device side
        got = {
            str(p.relative_to(target_dir)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in target_dir.rglob("*")
            if p.is_file()
        }
        assert got == expected
    finally:
        for p in sorted(target_dir.rglob("*"), reverse=True):  # the device's own files, not a mount
            p.rmdir() if p.is_dir() else p.unlink()
        target_dir.rmdir()
    assert leftovers(mountpoint, dir_should_exist=True) == []
    assert identity_fds() == []
