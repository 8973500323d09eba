"""Fixtures: a real sshd "device" on 127.0.0.1 and Jumpstarter serving SSHMount in-process."""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from device import SshDevice, exporter_config, make_driver  # noqa: F401 - re-exported for tests
from leftovers import live_processes_mentioning, sshfs_mounts

pytest_plugins = ["pytester"]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    missing = [tool for tool in ("sshfs", "ssh-keygen") if shutil.which(tool) is None]
    if not os.path.exists("/dev/fuse"):
        missing.append("/dev/fuse")
    if missing:
        raise pytest.UsageError(f"these tests need {', '.join(missing)}; run `make test` (it installs them)")


@pytest.fixture(scope="session")
def device(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SshDevice]:
    """A running sshd serving a directory of known device files."""
    dev = SshDevice(tmp_path_factory.mktemp("device")).setup().start()
    yield dev
    dev.stop()


@pytest.fixture(scope="session")
def mount_base() -> Iterator[Path]:
    """A private directory for mountpoints, outside pytest's basetemp (never rm -rf'd).

    At the end it must be empty: every mountpoint removed, nothing mounted.
    """
    base = Path(tempfile.mkdtemp(prefix="jmp-mount-tests-"))
    yield base
    left = sshfs_mounts(base)
    entries = os.listdir(base)
    if not left and not entries:
        os.rmdir(base)
    assert not left, f"mounts left behind: {left}"
    assert not entries, f"mountpoints left behind in {base}: {entries}"
    assert not live_processes_mentioning(str(base)), "sshfs processes left behind"


@pytest.fixture
def mountpoint(mount_base: Path, request: pytest.FixtureRequest) -> Iterator[Path]:
    """An empty directory to mount on, removed with rmdir afterwards."""
    name = re.sub(r"[^\w.-]", "_", request.node.name)[:40]
    path = Path(tempfile.mkdtemp(prefix=f"{name}-", dir=mount_base))
    yield path
    if path.exists():
        os.rmdir(path)


@pytest.fixture(scope="session")
def client(device: SshDevice):
    """An ``SSHMountClient`` for the device, served in-process by Jumpstarter."""
    from jumpstarter.common.utils import serve

    with serve(make_driver(device)) as c:
        yield c
