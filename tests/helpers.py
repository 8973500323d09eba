"""What the tests share: the loopback device and drivers for it, waiting, running pytest
as a user would, and finding what a mount may leave behind (mounts, processes, keys, directories).

The only module of the tests that imports the loopback device and the /proc scanner.
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from jumpstarter_driver_ssh_mount import DeviceFiles, SshfsTarget, start_mount, start_sftp
from jumpstarter_driver_ssh_mount.common.liveness import judge_record
from jumpstarter_driver_ssh_mount.common.ownedfolders import KNOWN_HOSTS_FOLDERS, OWNER_FILE
from jumpstarter_driver_ssh_mount.common.procfs import child_pids, processes
from jumpstarter_driver_ssh_mount.ssh.hostkeys import HostKey, KnownHosts
from jumpstarter_driver_ssh_mount.sshfs.mountinfo import sshfs_mounts_under
from pytest_jumpstarter_mount.testing import LoopbackDevice, StandaloneExporter, can_chroot, keygen

__all__ = [
    "COUNTING_CONFTEST",
    "IDENTITY_MEMFD",
    "JMP",
    "LAB_CLIENT_ADDR",
    "LAB_DEVICE_ADDR",
    "SLEEPING_TEST",
    "LoopbackDevice",
    "StandaloneExporter",
    "Suite",
    "artifacts_run",
    "child_pids",
    "closed_port",
    "descendants",
    "device_files",
    "env_with_jmp",
    "exporter_config",
    "folder_owner_pid",
    "foreign_pytest_running",
    "identity_fds",
    "ip",
    "keygen",
    "known_hosts_folders_now",
    "leftovers",
    "live_processes_mentioning",
    "make_driver",
    "netns_lab",
    "private_tmpdir",
    "remove_socket_dirs",
    "sshfs_mounts",
    "start_pytest",
    "summary_outcomes",
    "target",
    "wait_until",
]

JMP = str(Path(sys.executable).with_name("jmp"))
"""The ``jmp`` command of this environment."""

IDENTITY_MEMFD = "memfd:jmp-mount-identity"
"""How /proc names the in-memory file that holds a mount's identity."""


def env_with_jmp(**extra: str) -> dict[str, str]:
    """This process's environment with ``jmp`` and ``j`` first on PATH (and ``extra`` set)."""
    return {**os.environ, "PATH": f"{Path(JMP).parent}{os.pathsep}{os.environ.get('PATH', '')}", **extra}


# -- the device -----------------------------------------------------------------------
def target(device: LoopbackDevice, remote: str = "/") -> SshfsTarget:
    """What sshfs mounts to reach ``remote`` (a device path) on ``device`` directly."""
    return SshfsTarget(device.host, device.port, device.user, device.remote(remote))


@contextlib.contextmanager
def device_files(
    backend: str, device: LoopbackDevice, mountpoint: Path, remote: str = "/", *, exact: bool = False
) -> Iterator[DeviceFiles]:
    """``remote`` of ``device`` (``exact``: that path itself, not the device tree's) over ``backend``: an sshfs
    mount on ``mountpoint``, or an SFTP session (``mountpoint`` unused), the host key checked as vouched."""
    spec = SshfsTarget(device.host, device.port, device.user, remote) if exact else target(device, remote)
    if backend == "sshfs":
        with start_mount(spec, mountpoint, identity=device.identity()) as mount:
            yield mount
        return
    key = HostKey.parse((device.base / "host_key.pub").read_text())
    with KnownHosts([key]) as known, start_sftp(spec, identity=device.identity(), options=known.options) as files:
        yield files


@contextlib.contextmanager
def closed_port(host: str = "127.0.0.1") -> Iterator[int]:
    """A port that refuses connections and that nobody else can take meanwhile (bound, not listening)."""
    with socket.socket() as s:
        s.bind((host, 0))
        yield s.getsockname()[1]


def make_driver(
    device: LoopbackDevice,
    *,
    enable_address: bool = True,
    identity: str | None = None,
    address: tuple[str, int] | None = None,
    **mount_config: Any,
):
    """The SSHMount driver tree for ``device``, as an exporter would build it (``mount_config``: SSHMount fields).

    ``address``: where the exporter reaches the device instead of its sshd (a ``LatencyProxy``).
    """
    from jumpstarter_driver_network.driver import TcpNetwork
    from jumpstarter_driver_ssh.driver import SSHWrapper

    from jumpstarter_driver_ssh_mount.driver import SSHMount

    host, port = address or (device.host, device.port)
    tcp = TcpNetwork(host=host, port=port, enable_address=enable_address)
    ssh = SSHWrapper(
        default_username=device.user,
        ssh_identity=device.identity() if identity is None else identity,
        children={"tcp": tcp},
    )
    return SSHMount(children={"ssh": ssh}, **mount_config)


def exporter_config(device: LoopbackDevice, path: Path) -> Path:
    """Write an exporter config for ``device`` in the upstream README's shape."""
    return device.exporter_config(path)


# -- waiting and processes ------------------------------------------------------------------
def wait_until(condition: Callable[[], object], timeout: float = 30.0, what: str = "condition") -> float:
    """Poll ``condition`` until it is true; the seconds it took. AssertionError after ``timeout``."""
    started = time.monotonic()
    while not condition():
        if time.monotonic() - started > timeout:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.02)
    return time.monotonic() - started


def descendants(pid: int) -> list[int]:
    """Children of ``pid``, their children, and so on."""
    found = []
    for child in child_pids(pid):
        found += [child, *descendants(child)]
    return found


def foreign_pytest_running() -> bool:
    """True when a pytest outside this run (not an ancestor, not a descendant of the topmost one) is alive."""
    table = {p.pid: p for p in processes()}
    top, pid = os.getpid(), os.getpid()
    while pid in table and pid > 1:
        if any("pytest" in a or "xdist" in a for a in table[pid].argv()[:3]):
            top = pid
        pid = table[pid].ppid
    ours = {top, *descendants(top), *ancestors(os.getpid())}
    return any(pid not in ours and any("pytest" in a for a in p.argv()[:3]) for pid, p in table.items())


def known_hosts_folders_now(tmpdir: Path | None = None) -> list[str]:
    """Every known-hosts folder in ``tmpdir`` (default: the temp dir): in ``jmp-mount-known-hosts-<uid>``, old-style.

    A test whose processes run with their own ``TMPDIR`` (``private_tmpdir``) passes it.
    """
    tmp = str(tmpdir or tempfile.gettempdir())
    parent = os.path.join(tmp, KNOWN_HOSTS_FOLDERS.parent.name)
    old_style = glob.glob(os.path.join(tmp, "jmp-mount-known-hosts-*"))
    return sorted(glob.glob(os.path.join(parent, "*")) + [p for p in old_style if p != parent])


@contextlib.contextmanager
def private_tmpdir() -> Iterator[Path]:
    """A ``TMPDIR`` for the processes a test starts: known-hosts folders no other run sweeps first. Must end empty."""
    path = Path(tempfile.mkdtemp(prefix="jmp-mount-tests-tmp-"))
    yield path
    assert os.listdir(path) == [], f"left in {path}: {os.listdir(path)}"
    path.rmdir()


def folder_owner_pid(folder: str) -> int | None:
    """The pid in a known-hosts folder's owner record (None if it has none)."""
    try:
        return int(json.loads(Path(folder, OWNER_FILE).read_text())["pid"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


@contextlib.contextmanager
def chrooted_device(factory: pytest.TempPathFactory, needed_for: str) -> Iterator[LoopbackDevice]:
    """A running chrooted loopback device with its own /proc and /sys; skipped where sshd cannot chroot."""
    if not can_chroot():
        pytest.skip(f"{needed_for} needs a chrooted loopback device (root and unshare)")
    with LoopbackDevice(factory.mktemp("chrooted"), chroot=True) as dev:
        yield dev


def folder_in_use(folder: str) -> bool:
    """True while a known-hosts folder's owner lives (or this process cannot tell): it is in use, not left behind."""
    try:
        record = json.loads(Path(folder, OWNER_FILE).read_text())
    except (OSError, ValueError):
        return False
    verdict = judge_record(record) if isinstance(record, dict) else None
    return verdict is not None and not verdict.dead


def ancestors(pid: int) -> list[int]:
    """The parent of ``pid``, its parent, and so on."""
    table = {p.pid: p.ppid for p in processes()}
    found = []
    while pid in table and table[pid] > 0:
        pid = table[pid]
        found.append(pid)
    return found


def remove_socket_dirs(runtime: Path) -> list[str]:
    """Remove the ``jumpstarter-*`` socket directories in ``runtime`` (unlink their files, rmdir them); their names.

    Never recursive: a directory inside one (there should be none) stops its removal, and it is reported.
    """
    removed = []
    for entry in sorted(runtime.glob("jumpstarter-*")):
        for child in entry.iterdir():
            if not child.is_dir() or child.is_symlink():
                child.unlink()
        entry.rmdir()
        removed.append(entry.name)
    return removed


# -- what a mount may leave behind ------------------------------------------------------------
def live_processes_mentioning(text: str, names: tuple[str, ...] = ("sshfs", "ssh", "fusermount3", "sh")) -> list[str]:
    """Live (non-zombie) processes named in ``names`` whose command line contains ``text``.

    ``sh`` is the unmount watchdog, which names the mountpoint in its arguments.
    """
    found = []
    for process in processes():
        argv = process.argv()
        if argv and os.path.basename(argv[0]) in names and text in " ".join(argv):
            found.append(f"{process.pid}: {' '.join(argv)}")
    return found


def sshfs_mounts(under: str | os.PathLike[str] = "/") -> list[str]:
    """Mountpoints of sshfs mounts at ``under`` or below it (default: all)."""
    return [e.mountpoint for e in sshfs_mounts_under(under)]


def identity_fds() -> list[str]:
    """Our open in-memory identity files."""
    found = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            if os.readlink(f"/proc/self/fd/{fd}").startswith(IDENTITY_MEMFD):
                found.append(fd)
        except OSError:
            continue
    return found


def leftovers(mountpoint: str | os.PathLike[str], *, dir_should_exist: bool) -> list[str]:
    """Everything a finished mount at ``mountpoint`` left behind; empty when clean."""
    path = os.fspath(mountpoint)
    problems = [f"still mounted: {m}" for m in sshfs_mounts() if m == path]
    problems += [f"process left: {p}" for p in live_processes_mentioning(path)]
    problems += [f"identity fd left open: {fd}" for fd in identity_fds()]
    if os.path.exists(path) != dir_should_exist:
        problems.append(f"mountpoint directory {'missing' if dir_should_exist else 'left behind'}: {path}")
    return problems


# -- the plugin, run as a user would ------------------------------------------------------
COUNTING_CONFTEST = """
import json, os

def pytest_jmp_mount_ready(mount, request):
    with open(os.environ["MOUNT_LOG"], "a") as f:
        f.write(json.dumps({"event": "ready", "mountpoint": str(mount.mountpoint),
                            "remote": mount.remote_path, "pid": getattr(mount, "pid", None)}) + "\\n")

def pytest_jmp_mount_teardown(mount):
    with open(os.environ["MOUNT_LOG"], "a") as f:
        f.write(json.dumps({"event": "teardown", "mountpoint": str(mount.mountpoint)}) + "\\n")
"""
"""A conftest that logs every mount the plugin makes and releases to ``$MOUNT_LOG`` (JSON lines)."""

SLEEPING_TEST = """
import os, time

def test_sleeps(remote_fs):
    ready = os.environ["READY_FILE"]
    with open(ready + ".tmp", "w") as f:
        f.write(str(remote_fs.mountpoint))
    os.rename(ready + ".tmp", ready)  # whoever sees the file sees it whole
    time.sleep(120)
"""
"""A test that writes its mountpoint to ``$READY_FILE`` once mounted (atomically), then sleeps until killed."""


class Suite:
    """A pytester directory set up to mount the loopback device through the plugin.

    ``log`` is where ``COUNTING_CONFTEST`` records mounts; ``mount_dir`` is the run's
    ``--jmp-mount-dir`` (inside the session's ``mount_base``).
    """

    def __init__(self, pytester: pytest.Pytester, device: LoopbackDevice, log: Path, mount_dir: Path) -> None:
        self.pytester, self.device, self.log, self.mount_dir = pytester, device, log, mount_dir

    def args(self, *extra: str, remote: str = "/") -> list[str]:
        """Command-line arguments that point the plugin at the device."""
        return [
            "-p",
            "no:cacheprovider",
            f"--jmp-mount-exporter-config={self.pytester.path / 'exporter.yaml'}",
            f"--jmp-mount-remote={self.device.remote(remote)}",
            f"--jmp-mount-dir={self.mount_dir}",
            *extra,
        ]

    def args_without(self, prefix: str, *extra: str) -> list[str]:
        """``args(*extra)`` without the arguments starting with ``prefix`` (to give another value)."""
        return [a for a in self.args(*extra) if not a.startswith(prefix)]

    def in_jmp_shell(self, *pytest_args: str) -> list[str]:
        """``jmp shell --exporter-config <this suite's> -- python -m pytest PYTEST_ARGS``."""
        config = str(self.pytester.path / "exporter.yaml")
        return [JMP, "shell", "--exporter-config", config, "--", sys.executable, "-m", "pytest", *pytest_args]

    def run(self, *extra: str, remote: str = "/") -> pytest.RunResult:
        """Run pytest in a subprocess with ``args``."""
        return self.pytester.runpytest_subprocess(*self.args(*extra, remote=remote), timeout=120)

    def events(self, kind: str) -> list[dict]:
        """The logged events of ``kind`` ("ready", "teardown", ...), in order."""
        if not self.log.exists():
            return []
        return [e for e in map(json.loads, self.log.read_text().splitlines()) if e["event"] == kind]

    def assert_clean(self) -> None:
        """Nothing of the run remains: no mount, no process, no directory but the (empty) base."""
        assert sshfs_mounts(self.mount_dir) == []
        assert live_processes_mentioning(str(self.mount_dir)) == []
        if self.mount_dir.exists():
            assert os.listdir(self.mount_dir) == [], os.listdir(self.mount_dir)
            os.rmdir(self.mount_dir)
        assert identity_fds() == []


def start_pytest(suite: Suite, *args: str, ready: Path, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    """Start pytest on ``suite`` in the background, ``$READY_FILE`` set to ``ready`` (see ``SLEEPING_TEST``)."""
    return subprocess.Popen(
        [sys.executable, "-m", "pytest", *suite.args(), *args],
        cwd=suite.pytester.path,
        env={**os.environ, "READY_FILE": str(ready), **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def artifacts_run(root: Path) -> Path:
    """The newest run folder in ``root/jmp-artifacts`` (where a run copies failed tests' device files).

    A path that does not exist when no run has collected anything.
    """
    base = root / "jmp-artifacts"
    runs = sorted(p for p in base.iterdir() if p.is_dir()) if base.is_dir() else []
    return runs[-1] if runs else base / "no-run"


def summary_outcomes(output: str) -> dict[str, int]:
    """The outcome counts of pytest's summary line in ``output`` (``{}`` if there is none); warnings left out."""
    try:
        counts = pytest.RunResult.parse_summary_nouns(output.splitlines())
    except ValueError:
        return {}
    counts.pop("warnings", None)
    return counts


# -- the network-namespace lab ---------------------------------------------------------------
LAB_DEVICE_ADDR, LAB_CLIENT_ADDR = "10.231.77.1", "10.231.77.2"  # only inside a lab's two namespaces


def ip(*args: str) -> subprocess.CompletedProcess[str]:
    """``ip ARGS``, output captured."""
    return subprocess.run(["ip", *args], capture_output=True, text=True)


@contextlib.contextmanager
def netns_lab(tag: str = "") -> Iterator[tuple[str, str]]:
    """Namespaces <lab>-dev and <lab>-cli joined by a veth pair (LAB_DEVICE_ADDR, LAB_CLIENT_ADDR).

    Yields their names; deletes both (and the pair) afterwards. Skips the test where network
    namespaces cannot be made.
    """
    if os.geteuid() != 0 or not shutil.which("ip") or not shutil.which("nsenter"):
        pytest.skip("needs root, ip(8) and nsenter(1) to make network namespaces")
    name = f"jmp{os.getpid() % 100000}{tag}"
    dev_ns, cli_ns = f"{name}-dev", f"{name}-cli"
    made: list[str] = []
    try:
        for ns in (dev_ns, cli_ns):
            result = ip("netns", "add", ns)
            if result.returncode != 0:
                pytest.skip(f"ip netns is not permitted here: {result.stderr.strip()}")
            made.append(ns)
        steps = [
            ("link", "add", f"{name}a", "netns", dev_ns, "type", "veth", "peer", "name", f"{name}b", "netns", cli_ns),
            ("-n", dev_ns, "addr", "add", f"{LAB_DEVICE_ADDR}/30", "dev", f"{name}a"),
            ("-n", cli_ns, "addr", "add", f"{LAB_CLIENT_ADDR}/30", "dev", f"{name}b"),
            ("-n", dev_ns, "link", "set", f"{name}a", "up"),
            ("-n", cli_ns, "link", "set", f"{name}b", "up"),
            ("-n", dev_ns, "link", "set", "lo", "up"),
            ("-n", cli_ns, "link", "set", "lo", "up"),
        ]
        for step in steps:
            result = ip(*step)
            if result.returncode != 0:
                pytest.skip(f"cannot build the veth lab ({' '.join(step)}): {result.stderr.strip()}")
        yield dev_ns, cli_ns
    finally:
        for ns in made:
            ip("netns", "del", ns)  # takes the veth pair with it
