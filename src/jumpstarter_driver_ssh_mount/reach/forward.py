"""The Jumpstarter port forward, asked first: a connection to a device that is down is closed at once.

Jumpstarter's forward (``TcpPortforwardAdapter``) accepts ssh's connection and opens a stream to
the exporter, which connects to the device; when the device is down (a reboot, a power test) that
stream never answers and never ends, so ssh waits ``ConnectTimeout`` for the banner, and sshfs
twice: about 20 s per file access. Here each new connection first asks the exporter whether the
device's sshd answers (``check_reachable``: a TCP connect from the exporter, at most 3 s); when it
does not, the connection is closed (ssh: "Connection closed by remote host", sshfs: ``EIO``), else
it is forwarded as Jumpstarter does. One exporter round trip per ssh connection (a mount, a
reconnect, a device command), none per file access.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from typing import Any

from jumpstarter.client.adapters import blocking
from jumpstarter.common import TemporaryTcpListener
from jumpstarter.streams.common import forward_stream

logger = logging.getLogger("jumpstarter_driver_ssh_mount")


async def _reach_problem(client: Any) -> str | None:
    """The exporter's ``check_reachable``; None when it cannot be asked (the stream then tells)."""
    try:
        problem: str | None = await client.call_async("check_reachable")
    except Exception as exc:  # an older exporter, a call that failed: forward as Jumpstarter does
        logger.debug("check_reachable before forwarding failed: %r", exc)
        return None
    return problem


async def _handler(client: Any, tcp: Any, conn: Any) -> None:
    async with conn:
        problem = await _reach_problem(client)
        if problem:
            logger.info("port forward: the exporter cannot reach the device's sshd at %s; connection closed", problem)
            return
        async with tcp.stream_async("connect") as stream, forward_stream(conn, stream):
            pass


@blocking
@asynccontextmanager
async def checked_forward(*, client: Any, tcp: Any) -> AsyncIterator[tuple[str, int]]:
    """A local port forwarding to ``tcp``'s device, asking ``client`` (the ``SSHMount`` client) first; (host, port)."""
    async with TemporaryTcpListener(partial(_handler, client, tcp), local_host="127.0.0.1") as address:
        yield address
