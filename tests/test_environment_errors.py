"""FUSE and sshfs conditions of the test host: real where possible, simulated where not."""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from helpers import LoopbackDevice, leftovers, target
from jumpstarter_driver_ssh_mount import start_mount


def run_in_private_mount_namespace(shell_setup: str, device: LoopbackDevice, mountpoint: Path) -> str:
    """Run a mount attempt in a mount namespace of our own, after ``shell_setup`` changed /dev there."""
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        pytest.skip("needs root and unshare(1) to make a private mount namespace")
    script = textwrap.dedent(
        f"""
        from jumpstarter_driver_ssh_mount import MountError, SshfsTarget, start_mount
        t = SshfsTarget({device.host!r}, {device.port}, {device.user!r}, {device.remote()!r})
        try:
            start_mount(t, {str(mountpoint)!r}, identity=open({str(device.client_key)!r}).read(), timeout=10)
        except MountError as e:
            print(type(e).__name__ + ": " + str(e))
        """
    )
    result = subprocess.run(
        [
            "unshare",
            "--mount",
            "--propagation",
            "private",
            "sh",
            "-ec",
            f'{shell_setup}\nexec "$0" -c "$1"',
            sys.executable,
            script,
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    if result.returncode != 0 and "unshare failed" in result.stderr:
        pytest.skip(f"mount namespaces not permitted here: {result.stderr.strip()}")
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_dev_fuse_not_a_fuse_device(device: LoopbackDevice, mountpoint: Path) -> None:
    out = run_in_private_mount_namespace("mount --bind /dev/null /dev/fuse", device, mountpoint)
    assert out.startswith("FuseUnavailableError: FUSE is not available"), out
    assert leftovers(mountpoint, dir_should_exist=True) == []


def test_dev_fuse_missing(device: LoopbackDevice, mountpoint: Path, tmp_path: Path) -> None:
    real = tmp_path / "realdev"
    real.mkdir()
    setup = (
        f"mount --bind /dev {real}\n"
        "mount -t tmpfs jmp-test-dev /dev\n"
        "for n in null zero random urandom tty; do touch /dev/$n; "
        f"mount --bind {real}/$n /dev/$n; done"
    )
    out = run_in_private_mount_namespace(setup, device, mountpoint)
    assert out.startswith("FuseUnavailableError: FUSE is not available: /dev/fuse does not exist"), out
    assert "modprobe fuse" in out


def test_allow_other_refused_retries_without(
    device: LoopbackDevice, mountpoint: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog
) -> None:
    """Simulated: as root FUSE always allows allow_other, so a wrapper plays a non-root
    fusermount3 without user_allow_other; the retry itself runs the real sshfs."""
    shim = tmp_path / "bin" / "sshfs"
    shim.parent.mkdir()
    shim.write_text(
        "#!/bin/sh\n"
        'for arg in "$@"; do case ",$arg," in *,allow_other,*)\n'
        "  echo \"fusermount3: option allow_other only allowed if 'user_allow_other' is set in /etc/fuse.conf\" >&2\n"
        "  exit 1;;\nesac; done\n"
        f'exec {shutil.which("sshfs")} "$@"\n'
    )
    shim.chmod(0o755)
    monkeypatch.setenv("PATH", f"{shim.parent}{os.pathsep}{os.environ['PATH']}")
    with caplog.at_level(logging.WARNING):
        m = start_mount(target(device), mountpoint, identity=device.identity(), options=["allow_other", "reconnect"])
    with m:
        assert "allow_other" not in m.options
        assert "reconnect" in m.argv
        assert (m / "etc/os-release").exists()
    assert "FUSE refused allow_other" in caplog.text and "mounting without it" in caplog.text
    assert leftovers(mountpoint, dir_should_exist=True) == []
