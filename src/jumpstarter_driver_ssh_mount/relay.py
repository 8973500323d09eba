"""The exporter's relay: one TCP connection from the test host, passed on to the device's sshd.

A relay is a one-shot listener on an address of the exporter host. It accepts exactly one
connection within ``window`` seconds and closes the listener; later connections are refused
by the kernel. It then copies bytes between that connection and a new connection to the
device's sshd, in two threads with plain sockets (``recv_into``/``sendall``, the GIL released
in every call), so gRPC never carries the data and the exporter's event loop is not involved.
It ends when either side closes, or when ``close`` is called (the mount ended, the driver closed).
"""

from __future__ import annotations

import contextlib
import errno
import ipaddress
import itertools
import logging
import os
import select
import socket
import threading
import time
import uuid
from collections.abc import Callable

from .transport import format_address

RELAY_WINDOW = 10.0  # seconds a relay waits for its one connection
DEVICE_CONNECT_TIMEOUT = 5.0  # seconds to reach the device's sshd once the connection arrived
BUFFER_SIZE = 256 * 1024
JOIN_TIMEOUT = 2.0  # seconds close() waits for the relay's threads

logger = logging.getLogger(__name__)


def parse_relay_listen(value: str) -> str:
    """The host of ``relay_listen``: an IP address or a host name of the exporter host.

    :raises ValueError: empty, a wildcard address (the client needs one it can reach), or a port.
    """
    host = value.strip() if isinstance(value, str) else ""
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not host:
        raise ValueError("is empty; give an address of the exporter host that the test host reaches")
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        if ":" in host or "/" in host or any(c.isspace() for c in host):
            raise ValueError(f"{value!r} is not an address or host name (ports go in relay_ports, as 'A-B')") from None
        return host
    if address.is_unspecified:
        raise ValueError(
            f"{value!r} is a wildcard address; give the exporter's address that the test host reaches, "
            "the client connects to it"
        )
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


class Relay:
    """One one-shot listener, then the connection it relays to ``target``."""

    def __init__(
        self, listener: socket.socket, target: tuple[str, int], window: float, ended: Callable[[Relay], None]
    ) -> None:
        self.id = uuid.uuid4().hex
        self.port: int = listener.getsockname()[1]
        self._listener: socket.socket | None = listener
        self._target = target
        self._deadline = time.monotonic() + window
        self._ended = ended
        self._wake_r, self._wake_w = os.pipe()
        self._lock = threading.Lock()
        self._closing = False
        self._sockets: list[socket.socket] = []
        self._thread = threading.Thread(target=self._run, name=f"jmp-mount-relay-{self.port}", daemon=True)

    def start(self) -> Relay:
        self._thread.start()
        return self

    @property
    def alive(self) -> bool:
        """True until the listener is closed and the connection (if any) has ended."""
        return self._thread.is_alive()

    def close(self) -> None:
        """Stop listening and end the relayed connection; returns once the threads are gone."""
        with self._lock:
            if not self._closing:
                self._closing = True
                os.write(self._wake_w, b"x")
                for sock in self._sockets:
                    _shutdown(sock)
        if self._thread is not threading.current_thread():
            self._thread.join(JOIN_TIMEOUT)

    # -- in the relay's thread ---------------------------------------------------------
    def _run(self) -> None:
        try:
            conn = self._accept_one()
            if conn is not None:
                self._relay(conn)
        except Exception:  # a relay must never take the exporter down
            logger.exception("relay on port %d failed", self.port)
        finally:
            with self._lock:
                self._closing = True  # close() no longer writes to the wake pipe
                os.close(self._wake_r)
                os.close(self._wake_w)
            self._ended(self)

    def _accept_one(self) -> socket.socket | None:
        listener, self._listener = self._listener, None
        assert listener is not None
        try:
            while (left := self._deadline - time.monotonic()) > 0:
                readable, _, _ = select.select([listener.fileno(), self._wake_r], [], [], left)
                if self._wake_r in readable:
                    return None
                if readable:
                    conn, peer = listener.accept()
                    logger.info("relay port %d: connection from %s", self.port, format_address(*peer[:2]))
                    return conn
            logger.info("relay port %d: no connection within the window, closed", self.port)
            return None
        finally:
            listener.close()  # the one connection is taken: any other is refused from now on

    def _relay(self, conn: socket.socket) -> None:
        with conn:
            try:
                device = socket.create_connection(self._target, timeout=DEVICE_CONNECT_TIMEOUT)
            except OSError as exc:
                logger.warning("relay port %d: cannot reach the device's sshd: %s", self.port, exc)
                return
            with device:
                if not self._register(conn, device):
                    return
                down = threading.Thread(target=self._pump, args=(device, conn), daemon=True)
                down.start()
                self._pump(conn, device)
                down.join()
        logger.info("relay port %d: ended", self.port)

    def _register(self, *sockets: socket.socket) -> bool:
        """Make ``sockets`` blocking, unbuffered and known to ``close``; False if closing already."""
        for sock in sockets:
            sock.settimeout(None)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with self._lock:
            self._sockets.extend(sockets)
            return not self._closing

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        """Copy ``source`` to ``sink`` until either ends; then end both (the relay is over)."""
        buffer = bytearray(BUFFER_SIZE)
        view = memoryview(buffer)
        try:
            while count := source.recv_into(buffer):
                sink.sendall(view[:count])
        except OSError:
            pass  # reset, or shut down by close(): the relay is over either way
        finally:
            _shutdown(source)
            _shutdown(sink)


def _shutdown(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):  # not connected (any more)
        sock.shutdown(socket.SHUT_RDWR)


class Relays:
    """The relays of one driver: listening on ``host``, a port from ``ports`` (or any)."""

    def __init__(self, host: str, ports: tuple[int, int] | None, window: float = RELAY_WINDOW) -> None:
        self.host, self.ports, self.window = host, ports, window
        self._lock = threading.Lock()
        self._open: dict[str, Relay] = {}
        self._next = itertools.count()

    def open(self, target: tuple[str, int]) -> Relay:
        """A started relay to ``target``; OSError (with a one-line message) if it cannot listen."""
        relay = Relay(self._listen(), target, self.window, self._forget)
        with self._lock:
            self._open[relay.id] = relay
        return relay.start()

    def close(self, relay_id: str) -> bool:
        """End the relay ``relay_id``; False if it has ended already (or never was)."""
        with self._lock:
            relay = self._open.get(relay_id)
        if relay is None:
            return False
        relay.close()
        return True

    def close_all(self) -> None:
        """End every relay (the driver is closing or being reset)."""
        with self._lock:
            relays = list(self._open.values())
        for relay in relays:
            relay.close()

    def __len__(self) -> int:
        with self._lock:
            return len(self._open)

    def _forget(self, relay: Relay) -> None:
        with self._lock:
            self._open.pop(relay.id, None)

    def _listen(self) -> socket.socket:
        family, address = _resolve(self.host)
        if self.ports is None:
            candidates: list[int] = [0]
            exhausted = ""
        else:
            low, high = self.ports
            start = next(self._next) % (high - low + 1)  # spread over the range; TIME_WAIT lingers
            candidates = [low + (start + i) % (high - low + 1) for i in range(high - low + 1)]
            exhausted = f"every port of relay_ports {low}-{high} on {self.host} is in use"
        for port in candidates:
            sock = socket.socket(family, socket.SOCK_STREAM)
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                sock.bind((address, port))
                sock.listen(1)
                return sock
            except OSError as exc:
                sock.close()
                if self.ports is None or exc.errno != errno.EADDRINUSE:
                    where = format_address(self.host, port)
                    raise OSError(f"cannot listen on {where}: {exc.strerror or exc}") from None
        raise OSError(exhausted)


def _resolve(host: str) -> tuple[socket.AddressFamily, str]:
    """(family, numeric address) of ``host``; OSError with a one-line message if it does not resolve."""
    try:
        infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise OSError(f"relay_listen {host!r} does not resolve: {exc.strerror}") from None
    family, _, _, _, sockaddr = infos[0]
    return family, str(sockaddr[0])
