"""The exporter's relay: one TCP connection from the client that asked for it, passed on to the
device's sshd.

A relay listens on an address of the exporter host for ``window`` seconds. Each connection
must first send the relay's token (``TOKEN_BYTES`` random bytes, given to the client over
Jumpstarter's authenticated channel; see ``relaygate``); one that sends anything else, or
nothing, is closed without the device ever being contacted, and the relay keeps waiting.
The first connection with the token is the relay's: the listener closes (later connections
are refused by the kernel) and the bytes are copied between it and a new connection to the
device's sshd, in two threads with blocking sockets (``recv_into``/``sendall``, the GIL
released in every call), so gRPC never carries the data and the exporter's event loop is not
involved. Waiting uses ``selectors`` (epoll), which has no limit on descriptor numbers.
It ends when either side closes, or when ``close`` is called (the mount ended, the driver closed).
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import secrets
import selectors
import socket
import threading
import time
import uuid
from collections.abc import Callable

from jumpstarter_driver_ssh_mount.reach.relayaddress import listen_address, port_candidates
from jumpstarter_driver_ssh_mount.reach.relaydial import TOKEN_BYTES
from jumpstarter_driver_ssh_mount.reach.relaygate import MAX_PENDING, TokenGate
from jumpstarter_driver_ssh_mount.reach.transport import format_address

RELAY_WINDOW = 10.0  # seconds a relay waits for its client
MAX_RELAYS = 16  # relays one SSHMount keeps open at once (waiting, or carrying a mount)
DEVICE_CONNECT_TIMEOUT = 5.0  # seconds to reach the device's sshd once the client is known
BUFFER_SIZE = 256 * 1024
JOIN_TIMEOUT = 2.0  # seconds close() waits for the relay's threads

logger = logging.getLogger(__name__)


class Relay:
    """One listener for one client, then the connection it relays to ``target``."""

    def __init__(
        self, listener: socket.socket, target: tuple[str, int], window: float, ended: Callable[[Relay], None]
    ) -> None:
        self.id = uuid.uuid4().hex
        self.token = secrets.token_bytes(TOKEN_BYTES)
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
        """Start the relay's thread; if it cannot start, close the listener and raise OSError."""
        try:
            self._thread.start()
        except RuntimeError as exc:  # "can't start new thread": out of threads or memory
            if self._listener is not None:
                self._listener.close()
            os.close(self._wake_r)
            os.close(self._wake_w)
            raise OSError(f"cannot start a relay thread: {exc}") from None
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
            conn = self._await_client()
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

    def _await_client(self) -> socket.socket | None:
        """The first connection that sends the token; None when the window passed or close() was called."""
        listener, self._listener = self._listener, None
        assert listener is not None
        with selectors.DefaultSelector() as selector, contextlib.ExitStack() as cleanup:
            gate = cleanup.enter_context(TokenGate(self.token, selector))
            cleanup.callback(listener.close)  # first: any later connection is refused by the kernel
            listener.setblocking(False)
            selector.register(listener, selectors.EVENT_READ)
            selector.register(self._wake_r, selectors.EVENT_READ)
            listening = True
            while listening or gate.pending:
                wait = min(self._deadline if listening else float("inf"), gate.deadline()) - time.monotonic()
                for key, _ in selector.select(max(wait, 0)):
                    if key.fd == self._wake_r:
                        return None
                    if key.fileobj is listener:
                        gate.accept(listener)
                    elif winner := gate.receive(key.fileobj):  # type: ignore[arg-type]
                        logger.info("relay port %d: the client connected from %s", self.port, gate.take(winner))
                        self._log_dropped(gate)
                        return winner
                gate.expire()
                if listening and time.monotonic() >= self._deadline:
                    selector.unregister(listener)
                    listener.close()
                    listening = False
            logger.info("relay port %d: no client within the window, closed", self.port)
            self._log_dropped(gate)
            return None

    def _log_dropped(self, gate: TokenGate) -> None:
        if gate.dropped:
            logger.warning(
                "relay port %d: dropped %d connection(s) without this relay's token (the first from %s: %s)",
                self.port,
                gate.dropped,
                *gate.first_drop,
            )

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
    """The relays of one driver, at most ``MAX_RELAYS``: on ``host``, a random port of ``ports`` (or any)."""

    def __init__(self, host: str, ports: tuple[int, int] | None, window: float = RELAY_WINDOW) -> None:
        self.host, self.ports, self.window = host, ports, window
        self._lock = threading.Lock()
        self._open: dict[str, Relay] = {}

    def open(self, target: tuple[str, int]) -> Relay:
        """A started relay to ``target``; OSError (with a one-line message) if there is none to give now."""
        with self._lock:
            if len(self._open) >= MAX_RELAYS:
                raise OSError(
                    f"{len(self._open)} relays are open, the most one SSHMount keeps at once "
                    f"(MAX_RELAYS = {MAX_RELAYS}); each ends with its mount"
                )
            listener = self._listen()
            try:
                relay = Relay(listener, target, self.window, self._forget)
            except OSError as exc:  # no descriptor left for the wake pipe
                listener.close()
                raise OSError(f"cannot open a relay: {exc.strerror or exc}") from None
            self._open[relay.id] = relay
            try:
                return relay.start()  # its thread's end takes it out again, after this lock
            except OSError:
                del self._open[relay.id]
                raise

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
        family, address = listen_address(self.host)
        for port in port_candidates(self.ports):
            sock = socket.socket(family, socket.SOCK_STREAM)
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                sock.bind((address, port))
                sock.listen(MAX_PENDING)
                return sock
            except OSError as exc:
                sock.close()
                if self.ports is None or exc.errno != errno.EADDRINUSE:
                    where = format_address(self.host, port)
                    raise OSError(f"cannot listen on {where}: {exc.strerror or exc}") from None
        low, high = self.ports or (0, 0)
        raise OSError(f"every port of relay_ports {low}-{high} on {self.host} is in use")
