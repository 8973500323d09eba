"""What reaching the device needs from a client (``DeviceClient``), and the two questions asked of the
exporter before a connection: the device's published address, and whether its sshd answers."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, Protocol

from jumpstarter.client.core import DriverError, DriverMethodNotImplemented

from .transport import parse_tcp_address
from .trust import unreachable_error


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
