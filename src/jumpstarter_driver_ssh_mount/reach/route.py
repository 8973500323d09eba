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

from jumpstarter_driver_ssh_mount.reach.forward import checked_forward
from jumpstarter_driver_ssh_mount.reach.transport import format_address, parse_tcp_address
from jumpstarter_driver_ssh_mount.reach.trust import fetch_vouched, unreachable_error
from jumpstarter_driver_ssh_mount.ssh.hostkeypolicy import HostKeyTrust, host_key_options
from jumpstarter_driver_ssh_mount.ssh.hostkeys import KnownHosts, VouchedKeys
from jumpstarter_driver_ssh_mount.ssh.keyhook import KeyHook
from jumpstarter_driver_ssh_mount.ssh.optionkeys import option_key


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


def reach_problem(call: Callable[..., Any]) -> str | None:
    """The exporter's answer whether the device's sshd answers: None, or ``"host:port: <reason>"``."""
    try:
        problem: str | None = call("check_reachable")
        return problem
    except DriverMethodNotImplemented:  # an exporter running another SSHMount version
        return None


def check_reachable(call: Callable[..., Any]) -> None:
    """Ask the exporter whether the device's sshd answers, before forwarding to it.

    :raises ConnectError: it does not (the exporter's reason).
    """
    problem = reach_problem(call)
    if problem:
        raise unreachable_error(problem)


@dataclass(frozen=True)
class Route:
    """One opened way to the device's sshd: where to connect, and the ssh options (host-key ones first)."""

    host: str
    port: int
    options: list[str]
    #: Answers ssh's ``KnownHostsCommand`` with what the exporter vouches for now (keys checked against the exporter's)
    hook: KeyHook | None = None


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
    file, and a ``KeyHook`` lets every later ssh on this route (sshfs reconnecting after a reboot) ask the
    exporter again when the device offers another key (a reflash). What it opens (the forward, the file,
    the hook) goes on ``resources``, for the caller to close.
    """
    if address is None:
        check_reachable(client.call)
        host, port = resources.enter_context(checked_forward(client=client, tcp=client.ssh.tcp))
    else:
        host, port = address
    known = resources.enter_context(KnownHosts(vouched.keys)) if vouched is not None else None
    ours = host_key_options(options, known, insecure=trust.insecure)
    hook = None
    if known is not None and vouched is not None and "KnownHostsCommand=none" in ours:  # the exporter's keys
        hook = open_key_hook(client, known, vouched)
        if hook is not None:
            resources.enter_context(hook)
            ours = [hook.option if option_key(o) == "knownhostscommand" else o for o in ours]
    return Route(host, port, [*ours, *options], hook)


def open_key_hook(client: DeviceClient, known: KnownHosts, vouched: VouchedKeys) -> KeyHook | None:
    """The ``KeyHook`` for ``known``: it asks the exporter to read the device's key again, names the device
    by the address the exporter publishes. None (logged) when it cannot listen: a temp dir whose path is too
    long for a Unix socket; then a new host key is followed at the next mount only."""
    address, _ = published_address(client.ssh.tcp)
    where = format_address(*address) if address is not None else "the device"
    try:
        return KeyHook(known, vouched, lambda: fetch_vouched(client.call, client.logger, refresh=True), where)
    except OSError as exc:
        client.logger.info("a changed host key is followed at the next mount only: %s", exc)
        return None
