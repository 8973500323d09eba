"""A throwaway loopback "device": a real sshd on 127.0.0.1 with its own keys and files.

For trying the plugin without hardware (``make demo``), for device suites under
development, and for this project's tests::

    python -m pytest_jumpstarter_mount.testing /tmp/mydevice   # Ctrl+C stops it

The device's filesystem is a directory of this host: ``etc/os-release``,
``var/log/messages``, a writable ``data/``. As root, with ``unshare`` available and
``chroot=True``, sshd runs in a private mount namespace and chroots every session to
that tree, with ``/proc``, ``/sys`` and the host's ``/usr`` (read-only) beside it (see
``chroot``), so the device's paths are ``/var/log``, ``/data``, ``/proc``... as on a board.
Otherwise its paths are the host directory's. sshd runs in its own session and gets
SIGTERM when this process dies, even by ``kill -9`` (``PR_SET_PDEATHSIG``);
``stop()`` ends it and its per-connection children by PID.
"""

from __future__ import annotations

import contextlib
import getpass
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from jumpstarter_driver_ssh_mount.common.childprocess import die_with_parent_prefix, spawn_from_lasting_thread
from jumpstarter_driver_ssh_mount.common.procfs import child_pids
from pytest_jumpstarter_mount.testing.chroot import CHROOT_AT, namespace_command

SSHD = "/usr/sbin/sshd"

DEVICE_FILES = {
    "etc/os-release": 'NAME="Loopback Device"\nID=loopback\nVERSION_ID=1.0\n',
    "var/log/messages": "".join(f"boot: line {i}\n" for i in range(1, 51)),
    "var/log/app/app.log": "app started\n",
    "data/.keep": "",
}


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port on ``host`` that is free right now."""
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def keygen(path: Path) -> Path:
    """A new passphrase-less ed25519 key pair at ``path`` and ``path.pub``."""
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "jmp-loopback", "-f", str(path)],
        check=True,
        stdin=subprocess.DEVNULL,
    )
    return path


def wait_for_port(host: str, port: int, timeout: float = 10.0) -> None:
    """Return once ``host:port`` accepts TCP connections; OSError after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.01)


def can_chroot() -> bool:
    """True where sshd can be given a private mount namespace and a chroot (root + unshare)."""
    return os.geteuid() == 0 and shutil.which("unshare") is not None and Path("/mnt").is_dir()


class LoopbackDevice:
    """An sshd serving a small device tree on ``host``:``port`` (a free one by default)."""

    def __init__(
        self,
        base: str | os.PathLike[str],
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        chroot: bool = False,
        netns: str | None = None,
    ) -> None:
        self.base = Path(base)
        self.host = host
        self.port = port
        self.chroot = chroot and can_chroot()
        self.netns = netns  # a network namespace name (ip netns) to run sshd in
        self.user = getpass.getuser()
        self.process: subprocess.Popen[bytes] | None = None
        self.exporter_config_path: Path | None = None  # set by exporter_config()

    @property
    def root(self) -> Path:
        """The device's filesystem, as a directory on this host."""
        return self.base / "fs"

    @property
    def client_key(self) -> Path:
        """The private key the device accepts (its ``.pub`` is in ``authorized_keys``)."""
        return self.base / "client_key"

    @property
    def host_key(self) -> Path:
        """sshd's private host key."""
        return self.base / "host_key"

    def remote(self, device_path: str = "/") -> str:
        """The path sshd serves for ``device_path`` (itself when chrooted)."""
        if self.chroot:
            return "/" + device_path.strip("/")
        return str(self.root / device_path.lstrip("/")).rstrip("/") or "/"

    def identity(self) -> str:
        """The client private key's text, as an SSH driver's ``ssh_identity`` takes it."""
        return self.client_key.read_text()

    def known_hosts_line(self) -> str:
        """A known_hosts line pinning this device's host key."""
        kind, key = (self.base / "host_key.pub").read_text().split()[:2]
        return f"[{self.host}]:{self.port} {kind} {key}\n"

    def setup(self) -> LoopbackDevice:
        """Create the device tree, host and client keys, and authorized_keys."""
        self.base.mkdir(parents=True, exist_ok=True)
        for rel, text in DEVICE_FILES.items():
            path = self.root / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
        keygen(self.host_key)
        keygen(self.client_key)
        shutil.copy(self.base / "client_key.pub", self.base / "authorized_keys")
        if os.geteuid() == 0:
            Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # sshd's privilege separation dir
        return self

    def _config(self) -> Path:
        path = self.base / "sshd_config"
        path.write_text(
            f"Port {self.port}\n"
            f"ListenAddress {self.host}\n"
            f"HostKey {self.host_key}\n"
            f"AuthorizedKeysFile {self.base / 'authorized_keys'}\n"
            f"PidFile {self.base / 'sshd.pid'}\n"
            "PasswordAuthentication no\n"
            "KbdInteractiveAuthentication no\n"
            "UsePAM no\n"
            "PermitRootLogin prohibit-password\n"
            "StrictModes no\n"
            "MaxStartups 100\n"
            "MaxSessions 100\n"
            "Subsystem sftp internal-sftp\n" + (f"ChrootDirectory {CHROOT_AT}\n" if self.chroot else "")
        )
        return path

    def _command(self) -> list[str]:
        """sshd's argv: it dies with us, in the network namespace if any, chrooted if asked."""
        sshd = [SSHD, "-D", "-e", "-f", str(self._config())]
        prefix = [*die_with_parent_prefix(), *(["ip", "netns", "exec", self.netns] if self.netns else [])]
        return [*prefix, *(namespace_command(self.root, sshd) if self.chroot else sshd)]

    def start(self) -> LoopbackDevice:
        """Start sshd as our child, in its own session; return once it accepts connections.

        Interrupted or failed (a signal, sshd not listening), it stops what it started.
        """
        if not self.port:
            self.port = free_port(self.host) if not self.netns else 2222
        command = self._command()
        with open(self.base / "sshd.log", "ab") as log:
            self.process = spawn_from_lasting_thread(
                lambda: subprocess.Popen(
                    command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=log, start_new_session=True
                )
            )
        try:
            self._wait_listening()
        except OSError:
            self.stop()
            raise RuntimeError(f"sshd did not start: {self.log_tail()}") from None
        except BaseException:
            self.stop()
            raise
        return self

    def log_tail(self, size: int = 2000) -> str:
        """The end of sshd's log (``DIR/sshd.log``)."""
        try:
            return (self.base / "sshd.log").read_text(errors="replace")[-size:]
        except OSError:
            return ""

    def _wait_listening(self, timeout: float = 10.0) -> None:
        """Return once sshd accepts connections; OSError when it exits first or after ``timeout``."""
        deadline = time.monotonic() + timeout
        while not self._accepts():
            if (self.process is not None and self.process.poll() is not None) or time.monotonic() > deadline:
                raise OSError("sshd is not listening")
            time.sleep(0.02)

    def _accepts(self) -> bool:
        if not self.netns:
            try:
                socket.create_connection((self.host, self.port), timeout=0.5).close()
            except OSError:
                return False
            return True
        probe = f"import socket; socket.create_connection(({self.host!r}, {self.port}), 1).close()"
        command = ["ip", "netns", "exec", self.netns, sys.executable, "-c", probe]
        return subprocess.run(command, capture_output=True).returncode == 0

    @property
    def pid(self) -> int:
        """sshd's PID (the device must be running)."""
        if self.process is None:
            raise RuntimeError("the loopback device is not running")
        return self.process.pid

    def stop(self) -> None:
        """Stop sshd, then its per-connection children, by PID."""
        if self.process is None:
            return
        sessions = child_pids(self.process.pid)
        terminate(self.process)
        for pid in sessions:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        self.process = None

    def exporter_config(
        self,
        path: str | os.PathLike[str],
        *,
        host: str | None = None,
        port: int | None = None,
        mount_config: dict[str, str] | None = None,
    ) -> Path:
        """Write an exporter config for this device, in the upstream README's shape; its path.

        ``host`` and ``port`` override the address the exporter's TCP driver gives for the device
        (a ``latency.LatencyProxy`` in front of it, say);
        ``mount_config`` is SSHMount's ``config`` (``relay_listen``...).
        """
        path = Path(path)
        config = "".join(f'      {key}: "{value}"\n' for key, value in (mount_config or {}).items())
        path.write_text(
            "apiVersion: jumpstarter.dev/v1alpha1\n"
            "kind: ExporterConfig\n"
            "metadata:\n  namespace: default\n  name: loopback\n"
            'endpoint: ""\n'
            'token: ""\n'
            "export:\n"
            "  ssh:\n"
            "    type: jumpstarter_driver_ssh.driver.SSHWrapper\n"
            "    config:\n"
            f'      default_username: "{self.user}"\n'
            f'      ssh_identity_file: "{self.client_key}"\n'
            "    children:\n"
            "      tcp:\n"
            "        type: jumpstarter_driver_network.driver.TcpNetwork\n"
            "        config:\n"
            f'          host: "{host or self.host}"\n'
            f"          port: {port or self.port}\n"
            "  mount:\n"
            "    type: jumpstarter_driver_ssh_mount.driver.SSHMount\n"
            + ("    config:\n" + config if config else "")
            + "    children:\n"
            "      ssh:\n"
            '        ref: "ssh"\n'
        )
        self.exporter_config_path = path
        return path

    def __enter__(self) -> LoopbackDevice:
        return self.setup().start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def terminate(process: subprocess.Popen[bytes], grace: float = 10.0) -> None:
    """SIGTERM our child, SIGKILL it after ``grace`` seconds, and reap it."""
    process.terminate()
    try:
        process.wait(grace)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
