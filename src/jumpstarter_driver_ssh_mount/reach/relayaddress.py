"""Where the exporter's relays listen: ``relay_listen`` (never a wildcard, in any spelling) and a
port from ``relay_ports`` (picked at random) or one the kernel picks."""

from __future__ import annotations

import ipaddress
import secrets
import socket

WILDCARD_HINT = "give the exporter's address that the test host reaches, the client connects to it"


def numeric(address: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The IP address ``address`` spells, in any form the C library accepts; None for a name.

    Besides the usual forms, ``inet_aton``'s legacy ones: ``0``, ``0x0``, ``0.0.0``, ``000.0.0.0``,
    ``0x7f000001``, which ``getaddrinfo`` (and so ``bind``) accepts as well.
    """
    try:
        return ipaddress.ip_address(address)
    except ValueError:
        try:
            return ipaddress.IPv4Address(socket.inet_aton(address))
        except OSError:
            return None


def wildcard(address: str) -> bool:
    """True when ``address`` means "every address of the host", in any spelling.

    ``0.0.0.0`` and ``::`` as ``numeric`` reads them, and the IPv4-mapped ``::ffff:0.0.0.0``.
    """
    ip = numeric(address)
    if ip is None:
        return False
    mapped = ip.ipv4_mapped if isinstance(ip, ipaddress.IPv6Address) else None
    return ip.is_unspecified or (mapped is not None and mapped.is_unspecified)


def parse_relay_listen(value: str) -> str:
    """The host of ``relay_listen``: an IP address or a host name of the exporter host.

    A name is resolved now when it can be (and again at each listen): one that resolves to a
    wildcard address is refused as the address itself is.

    :raises ValueError: empty, a wildcard address (the client needs one it can reach), or a port.
    """
    host = value.strip() if isinstance(value, str) else ""
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1].strip()
    if not host:
        raise ValueError("is empty; give an address of the exporter host that the test host reaches")
    ip = numeric(host) if not any(c.isspace() for c in host) else None  # inet_aton stops at a space
    if ip is None and ("/" in host or ":" in host or any(c.isspace() for c in host)):
        raise ValueError(f"{value!r} is not an address or host name (ports go in relay_ports, as 'A-B')")
    if wildcard(host):
        raise ValueError(f"{value!r} is a wildcard address; {WILDCARD_HINT}")
    if ip is not None:
        return str(ip)  # one spelling: the one the client is given
    try:
        resolved = _resolve(host)
    except OSError:
        return host  # a name that does not resolve yet: checked when a relay listens
    if wildcard(resolved[1]):
        raise ValueError(f"{value!r} resolves to the wildcard address {resolved[1]}; {WILDCARD_HINT}")
    return host


def parse_port_range(value: str) -> tuple[int, int]:
    """``"A-B"`` (or ``"A"``) -> (A, B), 1 <= A <= B <= 65535; ValueError otherwise."""
    text = str(value).strip()
    first, dash, last = text.partition("-")
    try:
        low, high = int(first), int(last if dash else first)
    except ValueError:
        raise ValueError(f"{value!r} is not a port range like '7100-7199'") from None
    if not 1 <= low <= high <= 65535:
        raise ValueError(f"{value!r} is not a port range within 1-65535, low to high")
    return low, high


def port_candidates(ports: tuple[int, int] | None) -> list[int]:
    """The ports to try, in order: every port of ``ports`` shuffled, or ``[0]`` (the kernel picks one).

    Random, so that the next relay's port cannot be told from the last one's; the kernel's
    own choice (``bind`` to port 0) is random on Linux too.
    """
    if ports is None:
        return [0]
    low, high = ports
    candidates = list(range(low, high + 1))
    secrets.SystemRandom().shuffle(candidates)
    return candidates


def listen_address(host: str) -> tuple[socket.AddressFamily, str]:
    """(family, numeric address) a relay binds for ``host``; OSError with a one-line message if none.

    Checked for a wildcard again: a name may resolve to another address than at start.
    """
    try:
        family, address = _resolve(host)
    except OSError as exc:
        raise OSError(f"relay_listen {host!r} does not resolve: {exc.strerror or exc}") from None
    if wildcard(address):
        raise OSError(f"relay_listen {host!r} resolves to the wildcard address {address}; {WILDCARD_HINT}")
    return family, address


def _resolve(host: str) -> tuple[socket.AddressFamily, str]:
    family, _, _, _, sockaddr = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)[0]
    return family, str(sockaddr[0])
