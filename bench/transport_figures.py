"""Figures 7-10 of the benchmark: the ``auto`` transport and the cost of host key verification.

Every figure is paired per repetition with its baseline in the same run (plain sshfs, or the
port forward), and the table gives the median of the per-repetition ratios or differences:
on a shared machine a pair taken back to back sees the same load.
"""

from __future__ import annotations

import dataclasses
import os
import socket
import statistics
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import Any

from jumpstarter.driver import export
from jumpstarter_driver_network.driver import TcpNetwork

from jumpstarter_driver_ssh_mount.reach.transport import PROBE_TIMEOUT


@dataclasses.dataclass(kw_only=True)
class PublishedElsewhere(TcpNetwork):
    """A TcpNetwork that publishes another address than the one the exporter connects to."""

    published: str

    @export
    async def address(self) -> str:
        return self.published


@contextmanager
def silent_port() -> Iterator[int]:
    """A loopback port whose connection attempts get no answer (a full accept queue drops SYNs)."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        port = listener.getsockname()[1]
        fillers = []
        try:
            for _ in range(3):
                filler = socket.socket()
                filler.setblocking(False)
                filler.connect_ex(("127.0.0.1", port))
                fillers.append(filler)
            time.sleep(0.1)
            yield port
        finally:
            for filler in fillers:
                filler.close()


@contextmanager
def closed_port() -> Iterator[int]:
    """A loopback port that refuses connections (bound, not listening)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        yield s.getsockname()[1]


@contextmanager
def served_elsewhere(device: Any, published: str) -> Iterator[Any]:
    """An in-process exporter for ``device`` whose TCP driver publishes ``published``."""
    from jumpstarter.common.utils import serve
    from jumpstarter_driver_ssh.driver import SSHWrapper

    from jumpstarter_driver_ssh_mount.driver import SSHMount

    tcp = PublishedElsewhere(host=device.host, port=device.port, published=published)
    ssh = SSHWrapper(default_username=device.user, ssh_identity=device.identity(), children={"tcp": tcp})
    with serve(SSHMount(children={"ssh": ssh})) as client:
        yield client


def ready_time(client: Any, mount_dir: Path, remote: str, expect: str, **kwargs: Any) -> float:
    """Seconds until ``client.mounted(...)`` returned and the root answered a stat; checks the transport."""
    started = time.monotonic()
    with client.mounted(None, remote_path=remote, mount_dir=mount_dir, **kwargs) as mount:
        os.stat(mount.mountpoint)
        took = time.monotonic() - started
        if mount.transport != expect:
            raise RuntimeError(f"expected {expect}, got {mount.transport}: {mount.transport_note}")
    return took


def median_range(values: list[float], fmt: str = "{:.3f}") -> str:
    if len(values) == 1:
        return fmt.format(values[0])
    return f"{fmt.format(statistics.median(values))} ({fmt.format(min(values))}-{fmt.format(max(values))})"


@dataclasses.dataclass(frozen=True)
class Helpers:
    """The measuring tools of bench.py (run as a script, so not importable from here)."""

    plain_sshfs: Callable[..., Any]
    timed: Callable[[Callable[[], object]], float]
    read_file: Callable[[Path], None]
    write_file: Callable[[Path, int], None]
    read_small: Callable[[Path, int], None]


class TransportFigures:
    """The ``auto`` figures, written as rows through ``bench.row(what, how, value, note)``."""

    def __init__(self, bench: Any, client: Any, helpers: Helpers) -> None:
        self.bench, self.client, self.args, self.device = bench, client, bench.args, bench.device
        self.row: Callable[..., None] = bench.row
        self.h = helpers

    def run(self) -> None:
        self.ready_auto_and_verification()
        self.unreachable()
        self.io_auto()

    def ready_auto_and_verification(self) -> None:
        """7. auto on a reachable device vs plain sshfs; 10. verified vs insecure, direct and forward."""
        remote = self.device.remote("/")
        ratios, verify_direct, verify_forward = [], [], []
        for _ in range(self.args.reps):
            with self.h.plain_sshfs(self.device, self.bench.mountpoint("plain"), remote, []) as plain:
                pass
            auto = ready_time(self.client, self.bench.mounts, remote, "direct")
            ratios.append(auto / plain)
            timing = partial(ready_time, self.client, self.bench.mounts, remote)
            verify_direct.append(
                timing("direct", transport="direct") - timing("direct", transport="direct", insecure=True)
            )
            verify_forward.append(
                timing("forward", transport="forward") - timing("forward", transport="forward", insecure=True)
            )
        self.row(
            "7. auto ready vs plain, reachable",
            "ours auto (direct)",
            median_range(ratios, "{:.2f}x"),
            "target <= 1.15x",
        )
        ms = "{:+.0f} ms"
        self.row(
            "10. verification cost, ready",
            "direct",
            median_range([v * 1000 for v in verify_direct], ms),
            "verified - insecure",
        )
        self.row(
            "10. verification cost, ready",
            "port forward",
            median_range([v * 1000 for v in verify_forward], ms),
            "verified - insecure",
        )

    def unreachable(self) -> None:
        """8. auto when the published address refuses or stays silent, against the port forward."""
        remote = self.device.remote("/")
        for name, port_of in (("silent", silent_port), ("refused", closed_port)):
            with port_of() as port, served_elsewhere(self.device, f"tcp://127.0.0.1:{port}") as client:
                extra = []
                ready_time(client, self.bench.mounts, remote, "forward", transport="forward")  # warm: key read
                for _ in range(self.args.reps):
                    forward = ready_time(client, self.bench.mounts, remote, "forward", transport="forward")
                    auto = ready_time(client, self.bench.mounts, remote, "forward")
                    extra.append(auto - forward)
            self.row(
                f"8. auto, address {name}, - forward",
                "in-process exporter",
                median_range(extra, "{:+.3f} s"),
                f"target <= +0.3 s (probe bound {PROBE_TIMEOUT:g} s)",
            )

    def io_auto(self) -> None:
        """9. sequential read and small files in auto on a reachable device, each rep against plain."""
        h = self.h
        size, count = self.args.size_mib << 20, self.args.files
        data = self.device.root / "data"
        small = data / "small-auto"
        small.mkdir()
        block = os.urandom(4096)
        for i in range(count):
            (small / f"f{i:04}").write_bytes(block)
        reads, smalls = [], []
        for rep in range(self.args.io_reps):
            per: dict[str, tuple[float, float]] = {}
            for kind in ("plain", "auto"):
                src = data / f"auto-{rep}-{kind}-{time.monotonic_ns()}.bin"
                h.write_file(src, size)  # fresh on the device side: nothing of it in the local FUSE cache
                if kind == "plain":
                    ctx = h.plain_sshfs(self.device, self.bench.mountpoint("plain"), self.device.remote("/data"), [])
                else:
                    ctx = self.client.mounted(
                        None, remote_path=self.device.remote("/data"), mount_dir=self.bench.mounts
                    )
                with ctx as handle:
                    root = self.bench.mounts / "plain" if kind == "plain" else handle.mountpoint
                    if kind == "auto" and handle.transport != "direct":
                        raise RuntimeError(f"auto did not go direct: {handle.transport_note}")
                    mib_s = size / (1 << 20) / h.timed(partial(h.read_file, root / src.name))
                    per[kind] = (mib_s, h.timed(partial(h.read_small, root / small.name, count)))
                src.unlink()
            reads.append(per["auto"][0] / per["plain"][0])
            smalls.append(per["auto"][1] / per["plain"][1])
        for p in small.iterdir():
            p.unlink()
        small.rmdir()
        self.row("9. sequential read vs plain", "ours auto (direct)", median_range(reads, "{:.2f}x"), "target >= 0.95x")
        self.row(
            f"9. {count} small files vs plain", "ours auto (direct)", median_range(smalls, "{:.2f}x"), "target <= 1.1x"
        )
