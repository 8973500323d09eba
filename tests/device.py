"""The tests' "device": the package's loopback sshd (no chroot: device paths are host paths)."""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Iterator
from pathlib import Path

from jumpstarter_driver_ssh_mount.procfs import child_pids
from pytest_jumpstarter_mount.testing import DEVICE_FILES, free_port, keygen, wait_for_port
from pytest_jumpstarter_mount.testing import LoopbackDevice as SshDevice

__all__ = [
    "DEVICE_FILES",
    "SshDevice",
    "child_pids",
    "exporter_config",
    "free_port",
    "keygen",
    "make_driver",
    "wait_for_port",
]


@contextlib.contextmanager
def closed_port(host: str = "127.0.0.1") -> Iterator[int]:
    """A port that refuses connections and that nobody else can take meanwhile (bound, not listening)."""
    with socket.socket() as s:
        s.bind((host, 0))
        yield s.getsockname()[1]


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


def exporter_config(device: SshDevice, path: Path) -> Path:
    """Write an exporter config for ``device`` in the upstream README's shape."""
    return device.exporter_config(path)
