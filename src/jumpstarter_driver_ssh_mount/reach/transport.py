"""Choosing how sshfs reaches the device: the transport names, the device's address, a quick probe,
the exporter's relay offer."""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any
from urllib.parse import urlparse

from jumpstarter.client.core import DriverMethodNotImplemented

from jumpstarter_driver_ssh_mount.reach.relaydial import PROXY_KEYS, proxy_options
from jumpstarter_driver_ssh_mount.reach.transportrule import decide_transport
from jumpstarter_driver_ssh_mount.ssh.identity import PrivateFile
from jumpstarter_driver_ssh_mount.ssh.optionkeys import option_key, option_parts

#: Seconds ``auto`` waits for the device's address to accept a TCP connection.
PROBE_TIMEOUT = 0.2


def resolve_transport(transport: str | None, direct: bool = False) -> str:
    """The Python API's transport (``transportrule``): ``transport`` if given, else "direct" when ``direct``,
    else "auto". Here ``direct`` is upstream's spelling, ranked below a named ``transport``."""
    return decide_transport(transport, direct or None, transport_rank=1, direct_rank=0) or "auto"


def parse_tcp_address(address: str) -> tuple[str, int]:
    """``tcp://host:port`` (IPv6 in brackets) -> (host, port); ValueError if malformed."""
    parsed = urlparse(address)
    if parsed.scheme != "tcp" or not parsed.hostname or not parsed.port:
        raise ValueError(f"not a tcp://host:port address: {address!r}")
    return parsed.hostname, parsed.port


def probe_tcp(host: str, port: int, timeout: float = PROBE_TIMEOUT) -> str | None:
    """None when ``host:port`` accepts a TCP connection within ``timeout``, else why not (one line)."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return None
    except TimeoutError:
        return f"{format_address(host, port)} did not answer within {timeout:g}s"
    except OSError as exc:
        return f"{format_address(host, port)}: {os.strerror(exc.errno) if exc.errno else exc}"


def format_address(host: str, port: int) -> str:
    """``host:port``, with an IPv6 host in brackets."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


#: ssh's ConnectTimeout (seconds) when ``auto`` tries the exporter's relay, unless the user sets one.
RELAY_CONNECT_TIMEOUT = 3


@dataclass(frozen=True)
class RelayOffer:
    """The exporter's answer to ``open_relay``: where to connect once, or why there is no relay.

    ``offered`` is False when the exporter has no relay configured (``relay_listen`` unset, or
    an older SSHMount); ``problem`` is set when it has one but could not open it now.
    ``token`` (hex) is what the relay wants before anything else; an exporter whose relay
    wants none (older) offers ``""``. It is kept out of ``repr``.
    """

    host: str = ""
    port: int = 0
    id: str = ""
    window: float = 0.0
    problem: str = ""
    offered: bool = True
    token: str = field(default="", repr=False)

    @property
    def usable(self) -> bool:
        """True when there is a listener to connect to."""
        return self.offered and not self.problem and bool(self.host) and bool(self.port)

    @property
    def address(self) -> str:
        """``host:port`` of the listener, for messages."""
        return format_address(self.host, self.port)

    def to_dict(self) -> dict[str, Any]:
        """A plain dict, as a driver method returns it over gRPC."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RelayOffer:
        """The offer in ``data`` (unknown keys ignored, so newer exporters still parse).

        Numbers arrive as floats over gRPC; the port is made an int again.
        """
        known = {f.name for f in fields(cls)}
        offer = cls(**{key: value for key, value in data.items() if key in known})
        return replace(offer, port=int(offer.port), window=float(offer.window))


def request_relay(call: Callable[..., Any]) -> RelayOffer:
    """Ask the exporter (``call`` = the driver client's ``call``) to open a one-shot relay."""
    try:
        return RelayOffer.from_dict(call("open_relay"))
    except DriverMethodNotImplemented:
        return RelayOffer(offered=False, problem="the exporter's SSHMount offers no relay (an older version)")


def release_relay(call: Callable[..., Any], relay_id: str, logger: logging.Logger) -> None:
    """Tell the exporter the mount using relay ``relay_id`` ended (best effort: it may be gone)."""
    try:
        call("close_relay", relay_id)
    except Exception as exc:  # the exporter went away: its relay went with it
        logger.debug("closing relay %s failed: %r", relay_id, exc)


def user_proxy_option(options: Sequence[str]) -> str:
    """The user's ``ProxyCommand``/``ProxyJump``/``ProxyUseFdpass`` option ("" if none): it would
    replace the dialer that sends the relay's token, so a relay cannot be used with it."""
    return next((part.strip() for part in option_parts(options) if option_key(part) in PROXY_KEYS), "")


def relay_options(offer: RelayOffer, options: Sequence[str], resources: ExitStack) -> list[str]:
    """The ssh options that reach the device through ``offer``'s relay, besides ``options``.

    ssh's ``ProxyCommand`` is our dialer (``relaydial``): it connects, sends the token first and
    hands the connection to ssh, which checks the host key as usual. The token is in a private
    in-memory file held open by ``resources``, never in an argv. ``ConnectTimeout`` is
    ``RELAY_CONNECT_TIMEOUT`` unless ``options`` set it; the dialer's connect waits as long.
    """
    given = [part for part in option_parts(options) if option_key(part) == "connecttimeout"]
    try:
        timeout = float(given[0].split("=", 1)[1]) if given else float(RELAY_CONNECT_TIMEOUT)
    except (IndexError, ValueError):
        timeout = float(RELAY_CONNECT_TIMEOUT)  # ssh itself refuses the malformed value
    token = resources.enter_context(PrivateFile(offer.token, "jmp-mount-relay-token"))
    dialer = proxy_options(offer.host, offer.port, token.path, timeout)
    return dialer if given else [*dialer, f"ConnectTimeout={RELAY_CONNECT_TIMEOUT}"]
