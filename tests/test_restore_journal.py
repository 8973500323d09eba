"""Nothing a test changed on the device is lost on interrupt: the restore journal, with real signals
to real processes and the real loopback device. Every assertion on a device file reads it on the
host side (``device.root``); every test ends with the file as it was and nothing left behind."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import (
    LoopbackDevice,
    Suite,
    child_pids,
    env_with_jmp,
    live_processes_mentioning,
    sshfs_mounts,
    start_pytest,
    wait_until,
)

FACTORY = "mode=factory\n"
FAST_KEEPALIVE = ("ServerAliveInterval=1", "ServerAliveCountMax=2", "ConnectTimeout=2")

CHANGING_TEST = """
import os, time
import pytest

@pytest.mark.jmp_mount(restore=[{remote!r}]{more})
def test_changes_the_config(remote_path):
    (remote_path / {relative!r}).write_text({value!r})
    open(os.environ["READY_FILE"], "w").write("changed")
    time.sleep(120)
"""
"""A test that changes a preserved device file, says so in ``$READY_FILE``, then sleeps until killed."""

READING_TEST = """
def test_reads_the_config(remote_fs):
    assert (remote_fs / {relative!r}).read_text() == {expected!r}
"""
"""A test that passes only if the device file reads ``expected`` (so before it, the file was restored)."""


def device_file(device: LoopbackDevice, name: str, mode: int = 0o640) -> Path:
    """``/etc/<name>`` on the device, with the factory content and ``mode``."""
    path = device.root / "etc" / name
    path.write_text(FACTORY)
    path.chmod(mode)
    return path


def journals(suite: Suite) -> list[Path]:
    """The journal files under the suite's mount directory."""
    return sorted(suite.mount_dir.glob("*/journal-*.json")) if suite.mount_dir.exists() else []


def changing_test(
    suite: Suite, device: LoopbackDevice, name: str, value: str, module: str = "test_change", more: str = ""
) -> None:
    """``CHANGING_TEST`` for ``/etc/<name>``, setting it to ``value``; ``more``: more marker arguments."""
    remote = device.remote(f"/etc/{name}")
    suite.pytester.makepyfile(
        **{module: CHANGING_TEST.format(remote=remote, relative=f"etc/{name}", value=value, more=more)}
    )


def reading_test(suite: Suite, name: str, expected: str = FACTORY, module: str = "test_read") -> None:
    suite.pytester.makepyfile(**{module: READING_TEST.format(relative=f"etc/{name}", expected=expected)})


def kill_9(proc: subprocess.Popen[str]) -> str:
    """SIGKILL the pytest process, wait until its sshfs has unmounted; its output."""
    sshfs = [p for p in child_pids(proc.pid) if Path(f"/proc/{p}/comm").read_text().strip() == "sshfs"]
    proc.kill()
    out, _ = proc.communicate()
    wait_until(lambda: not any(Path(f"/proc/{p}").exists() for p in sshfs), 15, "sshfs to exit after pytest died")
    return out


def test_kill_9_mid_test_then_the_next_run_restores(suite: Suite, device: LoopbackDevice) -> None:
    conf = device_file(device, "journal-kill.conf")
    changing_test(suite, device, "journal-kill.conf", "mode=test\n")
    ready = suite.pytester.path / "ready"
    proc = start_pytest(suite, "test_change.py", ready=ready)
    wait_until(lambda: ready.exists() or proc.poll() is not None, 60, "the test to change the file")
    [journal] = journals(suite)
    assert stat.S_IMODE(journal.stat().st_mode) == 0o600
    kill_9(proc)

    assert conf.read_text() == "mode=test\n"  # the kill left the device changed...
    assert journals(suite) == [journal]  # ...and the journal holds the original
    data = json.loads(journal.read_text())
    assert [e["path"] for e in data["entries"]] == [device.remote("/etc/journal-kill.conf")]
    assert data["entries"][0]["mode"] == 0o640 and data["pid"] == proc.pid

    reading_test(suite, "journal-kill.conf")
    result = suite.run("test_read.py")
    result.assert_outcomes(passed=1)  # restored before its first test
    result.stdout.fnmatch_lines(
        [
            f"jumpstarter mount: restored on 127.0.0.1:{device.port} (host key SHA256:*): "
            f"{device.remote('/etc/journal-kill.conf')} (left changed by run pid {proc.pid}, *"
        ]
    )
    assert conf.read_text() == FACTORY and stat.S_IMODE(conf.stat().st_mode) == 0o640
    assert journals(suite) == []
    conf.unlink()
    suite.assert_clean()


def test_a_live_run_is_never_touched_and_the_second_run_warns(suite: Suite, device: LoopbackDevice) -> None:
    conf = device_file(device, "journal-live.conf")
    changing_test(suite, device, "journal-live.conf", "mode=first\n", module="test_first")
    ready = suite.pytester.path / "ready"
    first = start_pytest(suite, "test_first.py", ready=ready)
    try:
        wait_until(lambda: ready.exists() or first.poll() is not None, 60, "the first run to change the file")
        [journal] = journals(suite)
        before = journal.read_bytes()

        suite.pytester.makepyfile(
            test_second=f"""
            import pytest

            @pytest.mark.jmp_mount(restore=[{device.remote("/etc/journal-live.conf")!r}])
            def test_second(remote_path):
                conf = remote_path / "etc/journal-live.conf"
                assert conf.read_text() == "mode=first\\n"
                conf.write_text("mode=second\\n")
            """
        )
        second = suite.run("test_second.py")
        second.assert_outcomes(passed=1, warnings=1)
        second.stdout.fnmatch_lines(
            [f"*JumpstarterMountWarning: jumpstarter mount: another pytest run (pid {first.pid}) has preserved *"]
        )
        assert "restored on" not in second.stdout.str()  # the live run's journal is not taken over
        assert journal.read_bytes() == before
        assert conf.read_text() == "mode=first\n"  # the second run put back what it saw
    finally:
        kill_9(first)

    reading_test(suite, "journal-live.conf")
    third = suite.run("test_read.py")
    third.assert_outcomes(passed=1)
    third.stdout.fnmatch_lines([f"jumpstarter mount: restored on *(left changed by run pid {first.pid}, *"])
    assert conf.read_text() == FACTORY
    conf.unlink()
    suite.assert_clean()


def test_device_gone_at_teardown_is_a_loud_line_and_the_next_run_restores(suite: Suite, tmp_path: Path) -> None:
    dev = LoopbackDevice(tmp_path / "dev").setup().start()
    try:
        conf = device_file(dev, "app.conf")
        yaml = dev.exporter_config(tmp_path / "exporter.yaml")
        args = [
            *(a for a in suite.args() if not a.startswith(("--jmp-mount-exporter-config", "--jmp-mount-remote"))),
            f"--jmp-mount-exporter-config={yaml}",
            f"--jmp-mount-remote={dev.remote('/')}",
            *(f"--jmp-mount-option={o}" for o in FAST_KEEPALIVE),
        ]
        go = suite.pytester.path / "go"
        suite.pytester.makepyfile(
            test_gone=f"""
            import os, time
            import pytest

            @pytest.mark.jmp_mount(restore=[{dev.remote("/etc/app.conf")!r}])
            def test_device_goes_away(remote_path):
                (remote_path / "etc/app.conf").write_text("mode=test\\n")
                open(os.environ["READY_FILE"], "w").write("changed")
                deadline = time.monotonic() + 60
                while not os.path.exists({str(go)!r}) and time.monotonic() < deadline:
                    time.sleep(0.05)
            """
        )
        ready = suite.pytester.path / "ready"
        proc = subprocess.Popen(
            [sys.executable, "-m", "pytest", *args, "test_gone.py"],
            cwd=suite.pytester.path,
            env={**os.environ, "READY_FILE": str(ready)},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        wait_until(lambda: ready.exists() or proc.poll() is not None, 60, "the test to change the file")
        dev.stop()  # the device's sshd goes away during the test
        go.touch()
        out, _ = proc.communicate(timeout=120)
        assert conf.read_text() == "mode=test\n"
        line = (
            f"NOT restored on 127.0.0.1:{dev.port} (host key SHA256:*): {dev.remote('/etc/app.conf')} (*); "
            "the next run against this device restores it"
        )
        pytest.RunResult(proc.returncode, out.splitlines(), [], 0).stdout.fnmatch_lines([line])
        assert len(journals(suite)) == 1

        dev.start()  # the device is back (same address, same host key)
        reading_test(suite, "app.conf")
        result = suite.pytester.runpytest_subprocess(*args, "test_read.py", timeout=120)
        result.assert_outcomes(passed=1)
        result.stdout.fnmatch_lines([f"jumpstarter mount: restored on *: {dev.remote('/etc/app.conf')} (*"])
        assert conf.read_text() == FACTORY
        assert "NOT restored" not in result.stdout.str()
    finally:
        dev.stop()
    suite.assert_clean()


def test_a_workers_unrestored_file_reaches_the_summary(suite: Suite, device: LoopbackDevice) -> None:
    """Under xdist the line comes from the worker that preserved the file, shown by the controller."""
    conf = device_file(device, "journal-xdist.conf")
    suite.pytester.makepyfile(
        test_blocked=f"""
        import pytest

        @pytest.mark.jmp_mount(restore=[{device.remote("/etc/journal-xdist.conf")!r}])
        def test_puts_a_directory_in_the_way(remote_path):
            conf = remote_path / "etc/journal-xdist.conf"
            conf.unlink()
            conf.mkdir()

        def test_other():
            pass
        """
    )
    result = suite.run("-n", "2", "test_blocked.py")
    result.assert_outcomes(passed=2, errors=1)
    result.stdout.fnmatch_lines(
        [f"NOT restored on *: {device.remote('/etc/journal-xdist.conf')} (Is a directory); the next run *"]
    )
    conf.rmdir()
    reading_test(suite, "journal-xdist.conf")
    suite.run("test_read.py").assert_outcomes(passed=1)
    assert conf.read_text() == FACTORY
    conf.unlink()
    suite.assert_clean()


@pytest.mark.parametrize("outcome", ["failed", "passed"])
def test_under_jmp_shell_a_failed_run_ends_with_the_exit_status_note(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, outcome: str
) -> None:
    monkeypatch.setenv("JUMPSTARTER_HOST", "unix:///nonexistent/jumpstarter.sock")  # tests not using the device
    pytester.makepyfile(f"def test_one():\n    assert {outcome == 'passed'}\n")
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(**{outcome: 1})
    lines = result.stdout.lines
    note = [n for n, line in enumerate(lines) if "jmp shell --exporter-config" in line]
    if outcome == "passed":
        assert note == []
        return
    assert len(note) == 1 and "may still exit 0" in lines[note[0]]
    assert lines[note[0] + 1 :] == [lines[-1]]  # the last line before pytest's outcome line


@pytest.mark.parametrize("direct", [True, False], ids=["direct", "port-forward"])
def test_ctrl_c_to_jmp_shell_loses_nothing(suite: Suite, device: LoopbackDevice, direct: bool) -> None:
    """SIGINT to `jmp shell --exporter-config E -- pytest ...`'s process group (Ctrl+C in a terminal).

    Both processes get it; jmp shell may tear its forward down before pytest's teardown runs.
    Either the file is put back at once, or it is journaled, said, and put back by the next run.
    """
    conf = device_file(device, "journal-int.conf")
    changing_test(suite, device, "journal-int.conf", "mode=test\n", more=f", direct={direct}")
    ready = suite.pytester.path / "ready"
    shell = subprocess.Popen(
        suite.in_jmp_shell(*suite.args_without("--jmp-mount-exporter-config"), "test_change.py"),
        cwd=suite.pytester.path,
        env=env_with_jmp(READY_FILE=str(ready)),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        wait_until(lambda: ready.exists() or shell.poll() is not None, 60, "the test to change the file")
        os.killpg(shell.pid, signal.SIGINT)
        out, _ = shell.communicate(timeout=60)
    finally:
        if shell.poll() is None:
            os.killpg(shell.pid, signal.SIGKILL)
            shell.wait()
    wait_until(lambda: not sshfs_mounts(suite.mount_dir), 15, "the mount to go")
    wait_until(lambda: not live_processes_mentioning(str(suite.mount_dir)), 15, "sshfs to exit")
    left = conf.read_text() != FACTORY  # through the forward, the restore cannot run: journaled and said
    if left:
        assert len(journals(suite)) == 1, out
        assert f"NOT restored on 127.0.0.1:{device.port} (host key SHA256:" in out, out
    else:
        assert journals(suite) == [], out
    assert "jmp shell --exporter-config ... -- pytest` may still exit 0" in out, out

    reading_test(suite, "journal-int.conf")
    result = suite.run("test_read.py")  # another source, the same device: its host key says so
    result.assert_outcomes(passed=1)
    assert ("jumpstarter mount: restored on" in result.stdout.str()) == left
    assert conf.read_text() == FACTORY
    conf.unlink()
    suite.assert_clean()
