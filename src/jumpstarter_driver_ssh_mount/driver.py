"""The exporter side: ``SSHMount`` points the client at an SSH driver, and can check the device is up."""

from __future__ import annotations

import os
from dataclasses import dataclass

import anyio
from jumpstarter.common.exceptions import ConfigurationError
from jumpstarter.driver import Driver, export

REACHABLE_TIMEOUT = 5.0  # seconds for the exporter's TCP check of the device's sshd


@dataclass(kw_only=True)
class SSHMount(Driver):
    """Mount the device's filesystem on the client with sshfs.

    Requires a child ``ssh``: an ``SSHWrapper`` (usually ``ref: ssh``) whose ``tcp``
    child reaches the device's sshd. Username and identity come from that driver.
    """

    def __post_init__(self) -> None:
        if hasattr(super(), "__post_init__"):
            super().__post_init__()
        if "ssh" not in self.children:
            raise ConfigurationError(
                "SSHMount needs an 'ssh' child: add `children: {ssh: {ref: ssh}}` to the mount driver, "
                "pointing at an SSHWrapper driver"
            )

    @classmethod
    def client(cls) -> str:
        return "jumpstarter_driver_ssh_mount.client.SSHMountClient"

    @export
    async def check_reachable(self) -> str | None:
        """Open and close a TCP connection to the device's sshd from the exporter.

        Returns None when it connects, else the reason as text. A value, not an exception,
        so that an unreachable device is one line on the client, not a traceback here.
        """
        ssh = self.children["ssh"]
        ssh = getattr(ssh, "_proxy_target", None) or ssh  # `ref: ssh` is a composite Proxy
        tcp = ssh.children.get("tcp")
        host, port = getattr(tcp, "host", None), getattr(tcp, "port", None)
        if not host or not port:
            return None  # not a TcpNetwork: nothing we know how to check
        try:
            with anyio.fail_after(REACHABLE_TIMEOUT):
                stream = await anyio.connect_tcp(host, port)
            await stream.aclose()
        except TimeoutError:
            return f"no answer from {host}:{port} within {REACHABLE_TIMEOUT:g}s"
        except OSError as exc:
            cause = exc.__cause__ if isinstance(exc.__cause__, OSError) else exc
            reason = os.strerror(cause.errno) if cause.errno else str(cause)
            return f"{host}:{port}: {reason}"
        return None
