"""The exporter side: ``SSHMount`` points the client at an SSH driver and vouches for the device.

The exporter reaches the device over its own network and the client reaches the exporter
over Jumpstarter's authenticated channel, so the exporter is the party that can tell the
client which host key the device has: the configured ``host_key``, or what it reads from
the device itself.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import anyio
from jumpstarter.common.exceptions import ConfigurationError
from jumpstarter.driver import Driver, export

from jumpstarter_driver_ssh_mount.reach.relay import Relays
from jumpstarter_driver_ssh_mount.reach.relayaddress import parse_port_range, parse_relay_listen
from jumpstarter_driver_ssh_mount.reach.transport import RelayOffer
from jumpstarter_driver_ssh_mount.ssh.hostkeys import (
    CONFIGURED,
    SCAN_TIMEOUT,
    SCANNED,
    HostKey,
    VouchedKeys,
    parse_host_keys,
    scan_command,
)
from jumpstarter_driver_ssh_mount.ssh.hostkeys import parse_keyscan as parse_keyscan_output

REACHABLE_TIMEOUT = 3.0  # seconds for the exporter's TCP check of the device's sshd (a dropped SYN waits this long)


@dataclass(kw_only=True)
class SSHMount(Driver):
    """Mount the device's filesystem on the client with sshfs.

    Requires a child ``ssh``: an ``SSHWrapper`` (usually ``ref: ssh``) whose ``tcp``
    child reaches the device's sshd. Username and identity come from that driver.

    ``host_key``: the device's public host key(s), one ``ssh_host_*_key.pub`` line each.
    Unset, the exporter reads them from the device (as ``ssh-keyscan`` does) when first
    asked and keeps them while it runs.

    ``relay_listen`` (opt-in): an address of the exporter host that the test host reaches.
    Each mount may then ask for a one-shot relay there (a random port of ``relay_ports``,
    "A-B", or any free one): the one TCP connection that sends the relay's secret token,
    passed on to the device's sshd with plain sockets.
    """

    host_key: str | None = None
    relay_listen: str | None = None
    relay_ports: str | None = None
    _relays: Relays | None = field(init=False, default=None, repr=False)
    _configured_keys: tuple[HostKey, ...] = field(init=False, default=(), repr=False)
    _scanned_keys: tuple[HostKey, ...] = field(init=False, default=(), repr=False)
    _scan_lock: anyio.Lock = field(init=False, repr=False, default_factory=anyio.Lock)

    def __post_init__(self) -> None:
        if hasattr(super(), "__post_init__"):
            super().__post_init__()
        if "ssh" not in self.children:
            raise ConfigurationError(
                "SSHMount needs an 'ssh' child: add `children: {ssh: {ref: ssh}}` to the mount driver, "
                "pointing at an SSHWrapper driver"
            )
        if self.host_key is not None:
            try:
                self._configured_keys = parse_host_keys(self.host_key)
            except ValueError as exc:
                raise ConfigurationError(f"SSHMount host_key, {exc}") from None
        self._relays = self._relay_config()

    def _relay_config(self) -> Relays | None:
        """The relays of ``relay_listen``/``relay_ports``, None without ``relay_listen``."""
        if self.relay_listen is None:
            if self.relay_ports is not None:
                raise ConfigurationError("SSHMount relay_ports is set without relay_listen; set both, or neither")
            return None
        try:
            host = parse_relay_listen(self.relay_listen)
        except ValueError as exc:
            raise ConfigurationError(f"SSHMount relay_listen {exc}") from None
        try:
            ports = None if self.relay_ports is None else parse_port_range(self.relay_ports)
        except ValueError as exc:
            raise ConfigurationError(f"SSHMount relay_ports {exc}") from None
        return Relays(host, ports)

    @classmethod
    def client(cls) -> str:
        return "jumpstarter_driver_ssh_mount.client.SSHMountClient"

    def _device_address(self) -> tuple[str | None, int | None]:
        """The host and port of the ``tcp`` driver under ``ssh`` (None when it is not a TcpNetwork)."""
        ssh = self.children["ssh"]
        ssh = getattr(ssh, "_proxy_target", None) or ssh  # `ref: ssh` is a composite Proxy
        tcp = ssh.children.get("tcp")
        return getattr(tcp, "host", None), getattr(tcp, "port", None)

    @export
    async def check_reachable(self) -> str | None:
        """Open and close a TCP connection to the device's sshd from the exporter.

        Returns None when it connects, else the reason as text. A value, not an exception,
        so that an unreachable device is one line on the client, not a traceback here.
        """
        host, port = self._device_address()
        if not host or not port:
            return None  # not a TcpNetwork: nothing we know how to check
        return await _reach_problem(host, port)

    @export
    async def host_keys(self, refresh: bool = False) -> dict[str, Any]:
        """The device's host keys this exporter vouches for, as ``VouchedKeys.to_dict()``.

        ``source`` is "configured" (``host_key``, returned as is, never re-read) or
        "scanned" (read from the device once, again when ``refresh`` is true). When they
        cannot be read, ``keys`` is empty and ``problem`` says why: a value, not an exception.
        """
        if self._configured_keys:
            return VouchedKeys(self._configured_keys, CONFIGURED).to_dict()
        async with self._scan_lock:
            if refresh or not self._scanned_keys:
                vouched = await self._scan()
                if vouched.problem:
                    return vouched.to_dict()
                if self._scanned_keys and vouched.lines != VouchedKeys(self._scanned_keys, SCANNED).lines:
                    self.logger.info("the device's host key changed: %s", ", ".join(map(str, vouched.keys)))
                self._scanned_keys = vouched.keys
        return VouchedKeys(self._scanned_keys, SCANNED).to_dict()

    @export
    async def open_relay(self) -> dict[str, Any]:
        """Open a one-shot relay to the device's sshd, as ``RelayOffer.to_dict()``.

        The listener serves the first connection that sends ``RelayOffer.token`` (hex; the
        secret that only this authenticated caller learns) within ``RelayOffer.window`` seconds,
        then closes. Without ``relay_listen``, ``offered`` is False; when no listener can be
        opened now (ports in use, ``MAX_RELAYS`` open...), ``problem`` says why: values, not exceptions.
        """
        if self._relays is None:
            return RelayOffer(offered=False, problem="the exporter offers no relay (relay_listen is not set)").to_dict()
        host, port = self._device_address()
        if not host or not port:
            return RelayOffer(offered=False, problem="the SSH driver's tcp child is not a TcpNetwork").to_dict()
        try:
            relay = self._relays.open((host, port))
        except OSError as exc:
            return RelayOffer(problem=str(exc)).to_dict()
        self.logger.info("relay offered on %s:%d for %s:%d", self._relays.host, relay.port, host, port)
        offer = RelayOffer(self._relays.host, relay.port, relay.id, self._relays.window, token=relay.token.hex())
        return offer.to_dict()

    @export
    async def close_relay(self, relay_id: str) -> bool:
        """End the relay ``relay_id`` (the mount using it ended); False if it had ended already."""
        if self._relays is None:
            return False
        return await anyio.to_thread.run_sync(self._relays.close, relay_id)

    def close(self) -> None:
        """End every relay, then close the children."""
        if self._relays is not None:
            self._relays.close_all()
        super().close()

    def reset(self) -> None:
        """End every relay (a new lease starts), then reset the children."""
        if self._relays is not None:
            self._relays.close_all()
        super().reset()

    async def _scan(self) -> VouchedKeys:
        """Read the device's host keys with ssh-keyscan, from the exporter's side.

        A TCP check comes first, so that a device that does not answer is known as such
        within ``REACHABLE_TIMEOUT``, not after ssh-keyscan's longer wait.
        """
        host, port = self._device_address()
        if not host or not port:
            return VouchedKeys((), SCANNED, "the SSH driver's tcp child is not a TcpNetwork; set host_key")
        unreachable = await _reach_problem(host, port)
        if unreachable:
            return VouchedKeys((), SCANNED, unreachable, unreachable=True)
        try:
            with anyio.fail_after(SCAN_TIMEOUT + 2):
                result = await anyio.run_process(scan_command(host, port, SCAN_TIMEOUT), check=False)
        except FileNotFoundError:
            return VouchedKeys((), SCANNED, "ssh-keyscan is not installed on the exporter; install openssh-client")
        except TimeoutError:
            problem = f"{host}:{port}: ssh-keyscan got no answer within {SCAN_TIMEOUT + 2:g} s"
            return VouchedKeys((), SCANNED, problem, unreachable=True)
        keys = parse_keyscan_output(result.stdout.decode(errors="replace"))
        if keys:
            return VouchedKeys(keys, SCANNED)
        said = result.stderr.decode(errors="replace").strip().splitlines()
        problem = await _reach_problem(host, port) or (
            f"{host}:{port} accepts connections but sent no SSH host key within {SCAN_TIMEOUT:g}s"
            + (f" (ssh-keyscan: {said[-1]})" if said else "")
        )
        return VouchedKeys((), SCANNED, problem, unreachable=True)


async def _reach_problem(host: str, port: int) -> str | None:
    """None when ``host:port`` accepts a TCP connection, else ``"host:port: <reason>"``.

    The address is the device's as the exporter sees it; a connect that gets no answer
    (a dropped SYN: a device that is off, a wrong address) gives up after ``REACHABLE_TIMEOUT``.
    """
    try:
        with anyio.fail_after(REACHABLE_TIMEOUT):
            stream = await anyio.connect_tcp(host, port)
        await stream.aclose()
    except TimeoutError:
        return f"{host}:{port}: timed out after {REACHABLE_TIMEOUT:g} s"
    except OSError as exc:
        cause = exc.__cause__ if isinstance(exc.__cause__, OSError) else exc
        reason = os.strerror(cause.errno) if cause.errno else str(cause)
        return f"{host}:{port}: {reason}"
    return None
