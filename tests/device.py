"""A loopback "device" for the tests: a real sshd on 127.0.0.1 with its own keys and files.

Started and stopped by PID; its per-connection children are ended by PID too.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

SSHD = shutil.which("sshd") or "/usr/sbin/sshd"

DEVICE_FILES = {
    "etc/os-release": 'NAME="Loopback Device"\nID=loopback\nVERSION_ID=1.0\n',
    "var/log/messages": "".join(f"boot: line {i}\n" for i in range(1, 51)),
    "var/log/app/app.log": "app started\n",
    "data/.keep": "",
}


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def keygen(path: Path) -> Path:
    """A new passphrase-less ed25519 key pair at ``path`` and ``path.pub``."""
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "jmp-mount-test", "-f", str(path)],
        check=True,
        stdin=subprocess.DEVNULL,
    )
    return path


def wait_for_port(host: str, port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.01)


def child_pids(pid: int) -> list[int]:
    """Direct children of ``pid``, whichever of its threads started them (from /proc)."""
    children = []
    try:
        tasks = list(Path(f"/proc/{pid}/task").iterdir())
    except OSError:
        return []
    for task in tasks:
        try:
            children += [int(p) for p in (task / "children").read_text().split()]
        except OSError:
            continue
    return children


@dataclass
class SshDevice:
    """An sshd serving ``root`` (a directory of device files) on 127.0.0.1:``port``."""

    base: Path
    host: str = "127.0.0.1"
    port: int = 0
    user: str = field(default_factory=lambda: os.environ.get("USER") or __import__("getpass").getuser())
    process: subprocess.Popen[bytes] | None = None

    @property
    def root(self) -> Path:
        """The device's filesystem, as a directory on this host."""
        return self.base / "fs"

    @property
    def client_key(self) -> Path:
        return self.base / "client_key"

    @property
    def host_key(self) -> Path:
        return self.base / "host_key"

    def remote(self, device_path: str = "/") -> str:
        """The absolute path sshd sees for ``device_path`` (a path inside ``root``)."""
        return str(self.root / device_path.lstrip("/")).rstrip("/") or "/"

    def identity(self) -> str:
        return self.client_key.read_text()

    def known_hosts_line(self) -> str:
        """A known_hosts line pinning this device's host key."""
        key = (self.base / "host_key.pub").read_text().split()
        return f"[{self.host}]:{self.port} {key[0]} {key[1]}\n"

    def setup(self) -> SshDevice:
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

    def config(self) -> Path:
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
            "Subsystem sftp internal-sftp\n"
        )
        return path

    def start(self) -> SshDevice:
        """Start sshd in the foreground as our child; return once it accepts connections."""
        if not self.port:
            self.port = free_port()
        self.process = subprocess.Popen(
            [SSHD, "-D", "-e", "-f", str(self.config())],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=open(self.base / "sshd.log", "ab"),  # noqa: SIM115 - owned by the child
        )
        try:
            wait_for_port(self.host, self.port)
        except OSError:
            self.stop()
            raise RuntimeError(f"sshd did not start: {(self.base / 'sshd.log').read_text()[-2000:]}") from None
        return self

    def stop(self) -> None:
        """Stop sshd and its per-connection children, by PID."""
        if self.process is None:
            return
        sessions = child_pids(self.process.pid)
        self.process.terminate()
        self.process.wait(10)
        for pid in sessions:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        self.process = None

    def restart(self) -> None:
        self.stop()
        self.start()


def make_driver(device: SshDevice, *, enable_address: bool = True, identity: str | None = None):
    """The SSHMount driver tree for ``device``, as an exporter would build it."""
    from jumpstarter_driver_network.driver import TcpNetwork
    from jumpstarter_driver_ssh.driver import SSHWrapper

    from jumpstarter_driver_ssh_mount.driver import SSHMount

    tcp = TcpNetwork(host=device.host, port=device.port, enable_address=enable_address)
    ssh = SSHWrapper(
        default_username=device.user,
        ssh_identity=device.identity() if identity is None else identity,
        children={"tcp": tcp},
    )
    return SSHMount(children={"ssh": ssh})


def exporter_config(device: SshDevice, path: Path, *, identity_file: Path | None = None) -> Path:
    """Write an exporter config for ``device`` in the upstream README's shape."""
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
        f'      default_username: "{device.user}"\n'
        f'      ssh_identity_file: "{identity_file or device.client_key}"\n'
        "    children:\n"
        "      tcp:\n"
        "        type: jumpstarter_driver_network.driver.TcpNetwork\n"
        "        config:\n"
        f'          host: "{device.host}"\n'
        f"          port: {device.port}\n"
        "  mount:\n"
        "    type: jumpstarter_driver_ssh_mount.driver.SSHMount\n"
        "    children:\n"
        "      ssh:\n"
        '        ref: "ssh"\n'
    )
    return path
