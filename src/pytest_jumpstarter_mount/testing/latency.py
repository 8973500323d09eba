"""A remote lab on one host: ``LatencyProxy``, a TCP relay on 127.0.0.1 that delays every byte.

This kernel-independent stand-in for ``tc netem`` sits between a client and a server (the
device's sshd, or a standalone exporter's gRPC listener) and holds each chunk it reads for a
fixed one-way delay (half the round trip) before it writes it on, in each direction. It is
pipelined: many chunks are on their way at once, as on a real link, so a stream of requests
costs one round trip plus its bytes, and only a request that waits for its answer pays a round
trip each. There is no bandwidth limit and no loss: only distance.

Placing it::

    with LoopbackDevice(dir) as device, LatencyProxy(("127.0.0.1", device.port), rtt=0.040) as far:
        device.exporter_config(path, host=far.host, port=far.port)  # the device is 40 ms away

    with StandaloneExporter(config) as exporter, LatencyProxy((exporter.host, exporter.port), rtt=0.040) as far:
        Settings(tls_grpc=far.address, ...)                         # the exporter is 40 ms away

It runs on its own thread and event loop, in this process: nothing of it outlives the process,
``kill -9`` included. Only loopback addresses are accepted, for listening and for the target.
``python -m pytest_jumpstarter_mount.testing.latency --rtt-ms 40 TARGET_PORT`` runs one until Ctrl+C.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ipaddress
import threading
from concurrent.futures import Future

#: Bytes read per chunk (one chunk is delayed as a whole; a real link would deliver it a little earlier).
CHUNK = 1 << 16


def _loopback(host: str) -> str:
    if not ipaddress.ip_address(host).is_loopback:
        raise ValueError(f"the latency lab works on loopback addresses only, not {host}")
    return host


class LatencyProxy:
    """Listen on ``host``:``port`` (a free one by default); relay each connection to ``target``, ``rtt`` apart.

    :param rtt: the round trip to add, in seconds (each direction gets half of it).
    """

    def __init__(self, target: tuple[str, int], rtt: float, *, host: str = "127.0.0.1", port: int = 0) -> None:
        if rtt < 0:
            raise ValueError("the round trip cannot be negative")
        self.target = (_loopback(target[0]), int(target[1]))
        self.rtt = rtt
        self.host = _loopback(host)
        self.port = port
        self.connections = 0  # accepted so far (a test can count a client's connections)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.Server | None = None
        self._open: set[asyncio.StreamWriter] = set()

    @property
    def address(self) -> str:
        """``host:port`` to dial instead of the target."""
        return f"{self.host}:{self.port}"

    def start(self) -> LatencyProxy:
        """Start listening (on its own thread); return once connections are accepted."""
        loop = asyncio.new_event_loop()
        started: Future[None] = Future()
        self._loop = loop
        self._thread = threading.Thread(target=self._run, args=(loop, started), name="latency-proxy", daemon=True)
        self._thread.start()
        started.result(timeout=10)
        return self

    def _run(self, loop: asyncio.AbstractEventLoop, started: Future[None]) -> None:
        asyncio.set_event_loop(loop)
        try:
            self._server = loop.run_until_complete(asyncio.start_server(self._serve, self.host, self.port))
            self.port = self._server.sockets[0].getsockname()[1]
        except BaseException as exc:
            started.set_exception(exc)
            loop.close()
            return
        started.set_result(None)
        try:
            loop.run_forever()
        finally:
            loop.run_until_complete(self._shutdown())
            loop.close()

    async def _shutdown(self) -> None:
        if self._server is not None:
            self._server.close()
        for writer in list(self._open):
            writer.close()
        tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def stop(self) -> None:
        """Close the listener and every relayed connection; safe to call twice."""
        loop, thread = self._loop, self._thread
        self._loop = self._thread = None
        if loop is None or thread is None:
            return
        with contextlib.suppress(RuntimeError):  # the loop already ended
            loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)

    async def _serve(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self._open.add(client_writer)
        try:
            server_reader, server_writer = await asyncio.open_connection(*self.target)
        except OSError:
            client_writer.close()
            self._open.discard(client_writer)
            return
        self._open.add(server_writer)
        delay = self.rtt / 2
        try:
            await asyncio.gather(
                _pipe(client_reader, server_writer, delay),
                _pipe(server_reader, client_writer, delay),
            )
        except asyncio.CancelledError:  # stop(): the connection ends with the proxy
            pass
        finally:
            for writer in (client_writer, server_writer):
                writer.close()
                self._open.discard(writer)

    def __enter__(self) -> LatencyProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, delay: float) -> None:
    """Copy ``reader`` to ``writer``, each chunk ``delay`` seconds after it arrived; EOF passes on delayed too.

    A reset on either side ends both directions (the other side's read or write then fails as well).
    """
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

    async def deliver() -> None:
        while True:
            due, data = await queue.get()
            wait = due - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            if not data:
                if writer.can_write_eof():
                    writer.write_eof()
                return
            writer.write(data)
            await writer.drain()

    delivering = asyncio.ensure_future(deliver())
    try:
        while not delivering.done():
            data = await reader.read(CHUNK)
            queue.put_nowait((loop.time() + delay, data))
            if not data:
                break
        await delivering
    except (ConnectionError, OSError):
        writer.close()
    finally:
        delivering.cancel()
        with contextlib.suppress(asyncio.CancelledError, ConnectionError, OSError):
            await delivering


def main(argv: list[str] | None = None) -> int:
    """Run one proxy until Ctrl+C, printing where it listens."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("target_port", type=int, help="the port on 127.0.0.1 to relay to")
    parser.add_argument("--rtt-ms", type=float, default=40.0, help="round trip to add, ms (default 40)")
    parser.add_argument("--port", type=int, default=0, help="port to listen on (default: a free one)")
    args = parser.parse_args(argv)
    with LatencyProxy(("127.0.0.1", args.target_port), args.rtt_ms / 1000, port=args.port) as proxy:
        print(f"127.0.0.1:{proxy.port} -> 127.0.0.1:{args.target_port}, {args.rtt_ms:g} ms round trip", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            threading.Event().wait()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
