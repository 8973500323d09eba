"""Reaching the device's sshd, for mounts and device commands alike: ``open_route`` opens one way there
(the device's or a relay's address, or a Jumpstarter port forward) with the host-key options that check
it, everything it opened on the caller's ``ExitStack``. Also what a route needs from a client
(``DeviceClient``), and the two questions asked of the exporter first: the device's published address,
and whether its sshd answers."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Any, Protocol

from jumpstarter.client.core import DriverError, DriverMethodNotImplemented
from jumpstarter_driver_network.adapters import TcpPortforwardAdapter

from jumpstarter_driver_ssh_mount.reach.transport import parse_tcp_address
from jumpstarter_driver_ssh_mount.reach.trust import unreachable_error
from jumpstarter_driver_ssh_mount.ssh.hostkeypolicy import HostKeyTrust, host_key_options
from jumpstarter_driver_ssh_mount.ssh.hostkeys import KnownHosts, VouchedKeys


class DeviceClient(Protocol):
    """The parts of ``SSHMountClient`` a route to the device uses (a structural type: no import of the client)."""

    logger: logging.Logger

    @property
    def ssh(self) -> Any:
        """The SSH driver's client (its ``tcp`` child forwards a port)."""

    @property
    def identity(self) -> str | None:
        """The SSH driver's private key text (never logged)."""

    @property
    def username(self) -> str:
        """The device user."""

    def call(self, method: str, *args: Any) -> Any:
        """Call the exporter-side driver."""


def published_address(tcp: Any) -> tuple[tuple[str, int] | None, str]:
    """(the device's address the exporter publishes, or None; why there is none)."""
    try:
        return parse_tcp_address(tcp.address()), ""
    except (DriverError, ValueError) as exc:
        return None, f"the exporter publishes no address: {exc}"


def check_reachable(call: Callable[..., Any]) -> None:
    """Ask the exporter whether the device's sshd answers, before forwarding to it.

    :raises ConnectError: it does not (the exporter's reason).
    """
    try:
        problem = call("check_reachable")
    except DriverMethodNotImplemented:  # an exporter running another SSHMount version
        return
    if problem:
        raise unreachable_error(problem)


@dataclass(frozen=True)
class Route:
    """One opened way to the device's sshd: where to connect, and the ssh options (host-key ones first)."""

    host: str
    port: int
    options: list[str]


def open_route(
    client: DeviceClient,
    address: tuple[str, int] | None,
    trust: HostKeyTrust,
    vouched: VouchedKeys | None,
    options: Sequence[str],
    resources: ExitStack,
) -> Route:
    """Open the way to the device: ``address`` as given, or (None) a new Jumpstarter port forward, after
    the exporter says the device's sshd answers. The keys the exporter vouches for go in a known-hosts
    file. What it opens (the forward, the file) goes on ``resources``, for the caller to close.
    """
    if address is None:
        check_reachable(client.call)
        host, port = resources.enter_context(TcpPortforwardAdapter(client=client.ssh.tcp))
    else:
        host, port = address
    known = resources.enter_context(KnownHosts(vouched.keys)) if vouched is not None else None
    return Route(host, port, [*host_key_options(options, known, insecure=trust.insecure), *options])
