"""Fixtures: a real sshd "device" on 127.0.0.1, Jumpstarter serving SSHMount in-process, and
pytester suites that mount it through the plugin. Shared functions are in helpers.py."""

from __future__ import annotations

import glob
import os
import re
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from helpers import (
    COUNTING_CONFTEST,
    LoopbackDevice,
    StandaloneExporter,
    Suite,
    exporter_config,
    folder_in_use,
    folder_owner_pid,
    foreign_pytest_running,
    known_hosts_folders_now,
    live_processes_mentioning,
    make_driver,
    netns_lab,
    remove_socket_dirs,
    sshfs_mounts,
)

pytest_plugins = ["pytester"]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    missing = [tool for tool in ("sshfs", "ssh-keygen") if shutil.which(tool) is None]
    if not os.path.exists("/dev/fuse"):
        missing.append("/dev/fuse")
    if missing:
        raise pytest.UsageError(f"these tests need {', '.join(missing)}; run `make test` (it installs them)")


@pytest.fixture(scope="session", autouse=True)
def jumpstarter_sockets() -> Iterator[Path]:
    """Jumpstarter's unix socket directories (``$XDG_RUNTIME_DIR/jumpstarter-*``, else in /tmp) kept private.

    ``jmp shell`` and exporters that a test kills leave theirs behind (Jumpstarter removes them only
    on an orderly exit). Every Jumpstarter of this run, in-process or a subprocess, puts them in a
    private runtime directory instead, emptied at the end (``rmdir`` fails if anything is left).
    Then /tmp must have gained no ``jumpstarter-*`` directory: checked where the run has the
    machine to itself (``CI`` set, no other pytest alive), since any other Jumpstarter process on
    a shared machine (``jmp shell``, ``make bench``) adds its own there.
    """
    before = set(glob.glob(os.path.join(tempfile.gettempdir(), "jumpstarter-*")))
    runtime = Path(tempfile.mkdtemp(prefix="jmp-mount-tests-xdg-"))
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("XDG_RUNTIME_DIR", str(runtime))
        yield runtime
    remove_socket_dirs(runtime)
    runtime.rmdir()
    grown = sorted(set(glob.glob(os.path.join(tempfile.gettempdir(), "jumpstarter-*"))) - before)
    if os.environ.get("CI") and not foreign_pytest_running():
        assert not grown, f"Jumpstarter socket directories left in /tmp: {grown}"


@pytest.fixture(scope="session", autouse=True)
def known_hosts_folders() -> Iterator[None]:
    """No known-hosts folder is left behind (``<tmp>/jmp-mount-known-hosts-<uid>/*``, or one made the old way).

    Those this process made (its own pid in their owner record) are checked always. The new ones
    of the suite's subprocesses (pytest runs, ``j mount``) only where the run has the machine to
    itself (``CI`` set, no other pytest alive), as for the socket directories: any other run on a
    shared machine adds its own there. A test that kills a process holding one sweeps it.
    """
    before = set(known_hosts_folders_now())
    yield
    mine = [f for f in known_hosts_folders_now() if folder_owner_pid(f) == os.getpid()]
    assert not mine, f"known-hosts folders of this process left behind: {mine}"
    # a folder whose owner still lives is in use (the other xdist worker may still be mid-test), not left
    grown = sorted(f for f in set(known_hosts_folders_now()) - before if not folder_in_use(f))
    if os.environ.get("CI") and not foreign_pytest_running():
        assert not grown, f"known-hosts folders left behind: {grown}"


@pytest.fixture(params=["sshfs", "sftp"])
def backend(request: pytest.FixtureRequest) -> str:
    """A test that takes it runs on both backends: a FUSE mount (sshfs) and an SFTP session (no FUSE)."""
    return str(request.param)


@pytest.fixture(scope="session")
def device(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LoopbackDevice]:
    """A running sshd serving a directory of known device files."""
    dev = LoopbackDevice(tmp_path_factory.mktemp("device")).setup().start()
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
def client(device: LoopbackDevice):
    """An ``SSHMountClient`` for the device, served in-process by Jumpstarter."""
    from jumpstarter.common.utils import serve

    with serve(make_driver(device)) as c:
        yield c


@pytest.fixture
def suite(
    pytester: pytest.Pytester, device: LoopbackDevice, mount_base: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Suite]:
    """A pytester directory with an exporter config for the device and a mount-counting conftest."""
    exporter_config(device, pytester.path / "exporter.yaml")
    pytester.makeconftest(COUNTING_CONFTEST)
    log = pytester.path / "mounts.jsonl"
    monkeypatch.setenv("MOUNT_LOG", str(log))
    monkeypatch.setenv("DEVICE_ROOT", str(device.root))
    monkeypatch.delenv("JUMPSTARTER_HOST", raising=False)
    mount_dir = mount_base / f"plugin-{os.getpid()}-{time.monotonic_ns()}"
    yield Suite(pytester, device, log, mount_dir)
    if mount_dir.exists():  # after a failed test; rmdir only, so a left mount stays visible
        for child in mount_dir.iterdir():
            child.rmdir()
        mount_dir.rmdir()


@pytest.fixture
def standalone_exporter(suite: Suite) -> Iterator[str]:
    """Source 3: `jmp run --tls-grpc-listener 127.0.0.1:PORT --tls-grpc-insecure`, stopped by PID; its address."""
    with StandaloneExporter(suite.pytester.path / "exporter.yaml") as exporter:
        yield exporter.wait_ready().address


@pytest.fixture
def lab() -> Iterator[tuple[str, str]]:
    """Namespaces <lab>-dev and <lab>-cli, a veth pair between them; deleted afterwards."""
    with netns_lab() as namespaces:
        yield namespaces


@pytest.fixture
def own_device(suite: Suite, tmp_path: Path) -> Iterator[Suite]:
    """``suite`` pointed at a device of this test alone: only this test reads its sshd log, and it may kill it."""
    device = LoopbackDevice(tmp_path / "own-device").setup().start()
    device.exporter_config(suite.pytester.path / "exporter.yaml")
    yield Suite(suite.pytester, device, suite.log, suite.mount_dir)
    device.stop()
