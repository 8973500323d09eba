"""What went otherwise than asked reaches a default run's warnings summary (no -v, no log_cli)."""

from __future__ import annotations

import os
import signal
from pathlib import Path

from helpers import Suite, wait_until


def summary(output: str) -> str:
    """The "warnings summary" part of pytest's output ("" if there is none)."""
    return output.split("warnings summary", 1)[1] if "warnings summary" in output else ""


def test_busy_mount_at_session_teardown_is_in_the_warnings_summary(suite: Suite, tmp_path: Path) -> None:
    pid_file = tmp_path / "holder.pid"
    suite.pytester.makepyfile(
        test_busy=f"""
        import subprocess

        def test_leaves_a_process_in_the_mount(remote_fs):
            holder = subprocess.Popen(
                ["sleep", "60"], cwd=remote_fs.mountpoint,
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
            )
            open({str(pid_file)!r}, "w").write(str(holder.pid))
        """
    )
    try:
        result = suite.run()  # scope session: the mount is released after the last test
    finally:
        if pid_file.exists():
            holder = int(pid_file.read_text())
            os.kill(holder, signal.SIGKILL)
            wait_until(lambda: not os.path.exists(f"/proc/{holder}") or _zombie(holder), what="the holder to exit")
    result.assert_outcomes(passed=1)
    text = summary(result.stdout.str())
    assert "JumpstarterMountWarning: jumpstarter mount of" in text, result.stdout.str()
    assert f"is busy (used by {holder} (sleep)); detached it lazily" in text
    assert "test_busy.py::test_leaves_a_process_in_the_mount" in text
    suite.assert_clean()


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] == "Z"
    except OSError:
        return True


def test_fallback_and_cut_short_collection_are_in_the_warnings_summary(suite: Suite) -> None:
    config = suite.pytester.path / "exporter.yaml"
    port = f"port: {suite.device.port}\n"
    config.write_text(config.read_text().replace(port, port + "          enable_address: false\n"))
    suite.pytester.makepyfile(
        test_fallback="""
        def test_fails(remote_fs):
            assert False
        """
    )
    logs = suite.device.remote("/var/log")
    result = suite.run(f"--jmp-mount-collect={logs}/*", "--jmp-mount-collect-max-bytes=100")
    result.assert_outcomes(failed=1)
    text = summary(result.stdout.str())
    assert "JumpstarterMountWarning" in text, result.stdout.str()
    assert "using the Jumpstarter port forward, not the device's address: the exporter publishes no address" in text
    assert "collecting the device files of test_fallback.py::test_fails was cut short: the 100-byte cap" in text
    suite.assert_clean()
