"""Hosts without FUSE (a CI container, a Kubernetes pod): the whole example suite runs with the default
``--jmp-mount-backend auto``, over SFTP, in a mount namespace whose ``/dev/fuse`` is ``/dev/null`` (as an
unprivileged container has it); ``j mount`` there says that a mount needs FUSE and what works without it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from helpers import JMP, LoopbackDevice, Suite, chrooted_device, env_with_jmp, sshfs_mounts

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
#: Run a command in a new mount namespace where /dev/fuse is /dev/null: FUSE mounts fail ("Invalid argument").
WITHOUT_FUSE = ["unshare", "-m", "--propagation", "private", "sh", "-c"]
BIND_NULL = 'mount --bind /dev/null /dev/fuse && exec "$@"'


@pytest.fixture(scope="module")
def chrooted(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LoopbackDevice]:
    """The examples use device paths (/etc, /data): a chrooted loopback device, as ``make demo`` starts."""
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        pytest.skip("a mount namespace without FUSE needs root and unshare")
    with chrooted_device(tmp_path_factory, "the example suite's device paths") as dev:
        yield dev


@pytest.fixture
def examples(pytester: pytest.Pytester, chrooted: LoopbackDevice, mount_base: Path) -> Suite:
    chrooted.exporter_config(pytester.path / "exporter.yaml")
    for name in ("conftest.py", "test_device.py"):
        shutil.copy(EXAMPLES / name, pytester.path / name)
    return Suite(pytester, chrooted, pytester.path / "mounts.jsonl", mount_base / f"nofuse-{os.getpid()}")


def without_fuse(argv: list[str], cwd: Path, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in env_with_jmp().items() if not k.startswith(("JMP_MOUNT_", "JUMPSTARTER_HOST"))}
    return subprocess.run(
        [*WITHOUT_FUSE, BIND_NULL, "sh", *argv], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )


def test_the_example_suite_runs_over_sftp_without_fuse(examples: Suite) -> None:
    result = without_fuse(
        [sys.executable, "-m", "pytest", *examples.args("-v", remote="/var/log")], examples.pytester.path
    )
    out = result.stdout + result.stderr
    assert result.returncode == 0, out
    assert out.count("jumpstarter mount: files via sftp (no usable /dev/fuse)") == 1, out
    assert "7 passed" in out
    assert "jumpstarter mount: mounted /var/log (direct)" in out  # -v: each mount said once, as with sshfs
    assert (examples.device.root / "etc/os-release").read_text().startswith('NAME="Loopback Device"')  # restored
    examples.assert_clean()


def test_j_mount_says_it_needs_fuse(examples: Suite, mount_base: Path) -> None:
    mountpoint = mount_base / f"nofuse-j-{os.getpid()}"
    config = str(examples.pytester.path / "exporter.yaml")
    command = 'j mount "$@"; echo "j-exit=$?"'
    result = without_fuse(
        [JMP, "shell", "--exporter-config", config, "--", "sh", "-c", command, "sh", str(mountpoint)], mount_base
    )
    out = result.stdout + result.stderr
    assert "FUSE is not available" in out and "needs FUSE" in out and "over SFTP" in out, out
    assert "j-exit=0" not in out
    assert sshfs_mounts(mount_base) == []
    if mountpoint.exists():
        mountpoint.rmdir()
