"""Choosing how sshfs reaches the device: the transport names, the device's address, a quick probe."""

from __future__ import annotations

import os
import socket
from urllib.parse import urlparse

from .sshfs import TRANSPORTS

#: Seconds ``auto`` waits for the device's address to accept a TCP connection.
PROBE_TIMEOUT = 0.3


def resolve_transport(transport: str | None, direct: bool = False) -> str:
    """The transport to use: ``transport`` if given, else "direct" when ``direct``, else "auto"."""
    if transport is None:
        return "direct" if direct else "auto"
    if transport not in TRANSPORTS:
        raise ValueError(f"unknown transport {transport!r}; choose one of {', '.join(TRANSPORTS)}")
    return transport


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
