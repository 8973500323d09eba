"""The relay's door: which connection sent the relay's token.

Every connection accepted within the relay's window gets ``TOKEN_TIMEOUT`` seconds to send the
``TOKEN_BYTES`` token, and is read only that far (the SSH bytes after it stay queued for the
device). Many can be pending at once, so that a silent connection holds nobody up; a flood beyond
``MAX_PENDING`` drops the oldest. Tokens are compared in constant time (``hmac.compare_digest``).
"""

from __future__ import annotations

import hmac
import logging
import selectors
import socket
import time

from jumpstarter_driver_ssh_mount.reach.relaydial import TOKEN_BYTES
from jumpstarter_driver_ssh_mount.reach.transport import format_address

TOKEN_TIMEOUT = 2.0  # seconds a connection has to send the token, once accepted
MAX_PENDING = 16  # connections awaiting their token at once, per relay; beyond, the oldest is dropped

logger = logging.getLogger(__name__)


class TokenGate:
    """Accepted connections that have not sent the token yet: non-blocking, in ``selector``, oldest first.

    A connection leaves by sending the token (``receive`` returns it; ``take`` it), or is dropped:
    closed, having been sent nothing, when it sends anything else, closes, or runs out of time.
    """

    def __init__(self, token: bytes, selector: selectors.BaseSelector) -> None:
        self._token, self._selector = token, selector
        self._pending: dict[socket.socket, tuple[str, float, bytearray]] = {}  # peer, deadline, received
        self.dropped = 0
        self.first_drop: tuple[str, str] = ("", "")

    def __enter__(self) -> TokenGate:
        return self

    def __exit__(self, *exc: object) -> None:
        for conn in list(self._pending):
            self._remove(conn).close()

    @property
    def pending(self) -> bool:
        return bool(self._pending)

    def deadline(self) -> float:
        """When the oldest pending connection runs out of time (infinity when none is pending)."""
        return min((deadline for _, deadline, _ in self._pending.values()), default=float("inf"))

    def accept(self, listener: socket.socket) -> None:
        """Take every connection in ``listener``'s queue (the oldest pending dropped beyond MAX_PENDING)."""
        while True:
            try:
                conn, address = listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # out of descriptors: the connection stays queued, try again shortly
                logger.debug("relay: accept failed: %s", exc)
                time.sleep(0.05)
                return
            conn.setblocking(False)
            if len(self._pending) >= MAX_PENDING:
                self._drop(next(iter(self._pending)), f"more than {MAX_PENDING} connections awaited their token")
            self._pending[conn] = (format_address(*address[:2]), time.monotonic() + TOKEN_TIMEOUT, bytearray())
            self._selector.register(conn, selectors.EVENT_READ)

    def receive(self, conn: socket.socket) -> socket.socket | None:
        """Read what ``conn`` sent of the token: ``conn`` once it is complete and right, else None."""
        if conn not in self._pending:  # dropped meanwhile (by ``accept``, in the same round of events)
            return None
        _, _, received = self._pending[conn]
        try:
            data = conn.recv(TOKEN_BYTES - len(received))  # never beyond the token: SSH bytes stay queued
        except (BlockingIOError, InterruptedError):
            return None
        except OSError as exc:
            self._drop(conn, f"closed before sending a token ({exc.strerror or exc})")
            return None
        if not data:
            self._drop(conn, "closed before sending a token")
            return None
        received += data
        if len(received) < TOKEN_BYTES:
            return None
        if hmac.compare_digest(bytes(received), self._token):
            return conn
        self._drop(conn, "sent SSH first: a client without relay tokens" if received[:4] == b"SSH-" else "wrong token")
        return None

    def take(self, conn: socket.socket) -> str:
        """``conn`` is the relay's: no longer pending; its peer's address."""
        peer, _, _ = self._pending[conn]
        self._remove(conn)
        return peer

    def expire(self) -> None:
        """Drop the connections whose time to send the token is up."""
        now = time.monotonic()
        for conn in [conn for conn, (_, deadline, _) in self._pending.items() if deadline <= now]:
            self._drop(conn, f"no token within {TOKEN_TIMEOUT:g} s")

    def _drop(self, conn: socket.socket, reason: str) -> None:
        peer, _, _ = self._pending[conn]
        self._remove(conn).close()  # nothing was sent to it, and the device was never contacted
        self.dropped += 1
        if self.dropped == 1:
            self.first_drop = (peer, reason)
        logger.debug("relay: dropped a connection from %s: %s", peer, reason)

    def _remove(self, conn: socket.socket) -> socket.socket:
        del self._pending[conn]
        self._selector.unregister(conn)
        return conn
