"""Figure 14 of the benchmark: a remote lab, 0, 10 and 40 ms away (``testing.latency.LatencyProxy``).

Two placements of the delay, as in a lab: "direct", the device's sshd far away (the exporter
reaches it through the delay too, and the client mounts its address); "port forward", the
exporter far away (``jmp run --tls-grpc-listener`` behind the delay, the device next to it), so
every byte goes through Jumpstarter's gRPC port forward. The baseline is plain sshfs straight to
the device at the same distance, in the same run. Bulk figures run with the device connection
already open (a session opens it on first use: the ``device_run`` row shows that login);
"file by file" rows are the same chores without it (``read_in_bulk(None)``), as before bulk work.

The device is a chrooted loopback device where this host allows one (root): a board's paths, and
no shell start-up of this host's own account (its ``~/.bashrc``) on every command, which the
shared loopback device pays (about 0.2 s per command on this project's machine).
"""

from __future__ import annotations

import os
import shutil
import statistics
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from sftp_bench import sftp_far_rows

from jumpstarter_driver_ssh_mount.reach.device_connection import DeviceConnection
from pytest_jumpstarter_mount.testing import LoopbackDevice, StandaloneExporter, can_chroot
from pytest_jumpstarter_mount.testing.latency import LatencyProxy

WAYS = (("direct", "direct"), ("port forward", "forward"))


@dataclass
class Sizes:
    rtts_ms: tuple[int, ...]
    small: int
    collect: int
    preserve: int
    read_many: int
    runs: int
    read_mib: int

    @classmethod
    def of(cls, smoke: bool) -> Sizes:
        if smoke:
            return cls((0,), small=10, collect=20, preserve=5, read_many=10, runs=3, read_mib=2)
        return cls((0, 10, 40), small=100, collect=300, preserve=50, read_many=200, runs=10, read_mib=16)


def reps_at(rtt_ms: int, smoke: bool) -> int:
    return 1 if smoke or rtt_ms >= 40 else 2 if rtt_ms >= 10 else 3


def med(values: list[float]) -> float:
    return statistics.median(values)


class RemoteLab:
    """The device, its exporter, and the two delays; ``figures()`` adds the rows to ``bench``."""

    def __init__(self, bench: Any, tools: Any) -> None:
        self.bench, self.tools = bench, tools
        self.sizes = Sizes.of(bench.args.smoke)
        self.own_device = can_chroot()  # chrooted, as a board: no login shell start-up of this host's account
        self.device = LoopbackDevice(bench.work / "lab-device", chroot=True) if self.own_device else bench.device
        self.data = self.device.root / "data" / "lab"

    def prepare(self) -> None:
        s = self.sizes
        for name, count, size in (("small", s.small, 4096), ("collect", s.collect, 2048), ("many", s.read_many, 4096)):
            (self.data / name).mkdir(parents=True)
            for i in range(count):
                (self.data / name / f"f{i:03}.log").write_bytes(os.urandom(size))
        (self.data / "preserve").mkdir()
        for i in range(s.preserve):
            (self.data / "preserve" / f"f{i:03}.conf").write_text(f"setting {i}\n")
        with open(self.data / "big.bin", "wb") as out:
            out.write(os.urandom(s.read_mib << 20))

    def remote(self, rel: str = "") -> str:
        return self.device.remote("/data/lab" + (f"/{rel}" if rel else ""))

    def figures(self) -> None:
        if self.own_device:
            self.device.setup().start()
        self.prepare()
        try:
            with LatencyProxy((self.device.host, self.device.port), 0) as near_device:
                config = self.device.exporter_config(
                    self.bench.work / "lab.yaml", host=near_device.host, port=near_device.port
                )
                with StandaloneExporter(config) as exporter:
                    exporter.wait_ready()
                    with LatencyProxy((exporter.host, exporter.port), 0) as near_exporter:
                        for rtt_ms in self.sizes.rtts_ms:
                            self.at_distance(rtt_ms, near_device, near_exporter)
        finally:
            shutil.rmtree(self.data, ignore_errors=True)
            if self.own_device:
                self.device.stop()

    @contextmanager
    def client(self, exporter: LatencyProxy) -> Iterator[Any]:
        from pytest_jumpstarter_mount.config.settings import Settings
        from pytest_jumpstarter_mount.sources.rootclient import open_device

        with open_device(Settings(tls_grpc=exporter.address, tls_grpc_insecure=True)) as device:
            yield device.client.children["mount"]

    def at_distance(self, rtt_ms: int, device_delay: LatencyProxy, exporter_delay: LatencyProxy) -> None:
        reps = reps_at(rtt_ms, self.bench.args.smoke)
        device_delay.rtt, exporter_delay.rtt = rtt_ms / 1000, 0
        plain = self.plain_figures(rtt_ms, reps, device_delay)
        for way, transport in WAYS:
            device_delay.rtt = rtt_ms / 1000 if transport == "direct" else 0
            exporter_delay.rtt = rtt_ms / 1000 if transport == "forward" else 0
            with self.client(exporter_delay) as client:
                self.our_figures(rtt_ms, reps, way, transport, client, plain)

    # -- plain sshfs at the same distance ---------------------------------------------------
    def plain_figures(self, rtt_ms: int, reps: int, far: LatencyProxy) -> dict[str, float]:
        t = self.tools
        device = _Far(self.device, far)
        out: dict[str, float] = {}
        ready, reads, small, copies, rewrites = [], [], [], [], []
        for _ in range(reps):
            point = self.bench.mountpoint("lab-plain")
            with t.plain_sshfs(device, point, self.remote(), []) as took:
                ready.append(took)
                reads.append(self.sizes.read_mib / t.timed(partial(t.read_file, point / "big.bin")))
                small.append(t.timed(partial(read_small, point / "small", self.sizes.small)))
                copies.append(t.timed(partial(_copy_tree, point / "collect", self.bench.work / "plain-copy")))
                rewrites.append(t.timed(partial(_read_and_rewrite, point / "preserve")))
        out = {"ready": med(ready), "read": med(reads), "small": med(small), "copy": med(copies)}
        out["rewrite"] = med(rewrites)
        at = f"{rtt_ms} ms"
        self.bench.row(f"14. {at}: mount ready, s", "plain sshfs", f"{out['ready']:.3f}")
        self.bench.row(f"14. {at}: sequential read, MiB/s", "plain sshfs", f"{out['read']:.1f}")
        self.bench.row(
            f"14. {at}: {self.sizes.small} x 4 KiB listdir+stat+read, s", "plain sshfs", f"{out['small']:.2f}"
        )
        self.bench.row(f"14. {at}: copy {self.sizes.collect} x 2 KiB, s", "plain sshfs", f"{out['copy']:.2f}")
        self.bench.row(f"14. {at}: read+rewrite {self.sizes.preserve} files, s", "plain sshfs", f"{out['rewrite']:.2f}")
        return out

    # -- ours ------------------------------------------------------------------------------------
    def our_figures(
        self, rtt_ms: int, reps: int, way: str, transport: str, client: Any, plain: dict[str, float]
    ) -> None:
        t, s, at = self.tools, self.sizes, f"{rtt_ms} ms"
        row = self.bench.row
        connection = DeviceConnection(client, transport=transport)
        try:
            first = [t.timed(lambda: [connection.run("true", check=True) for _ in range(s.runs)])]
            connection.close()
            once = [t.timed(lambda: [client.run("true", transport=transport, check=True) for _ in range(s.runs)])]
            row(
                f"14. {at}: {s.runs} device_run, s",
                f"{way}, one connection",
                f"{med(first):.2f}",
                "target <= 1.5 s at 40 ms",
            )
            row(f"14. {at}: {s.runs} device_run, s", f"{way}, a login each (before)", f"{med(once):.2f}")
            ready, reads = [], []
            for _ in range(reps):
                with t.ours(client, self.bench.mounts, self.remote(), transport, []) as (mount, took):
                    ready.append(took)
                    reads.append(s.read_mib / t.timed(lambda m=mount: t.read_file(m.mountpoint / "big.bin")))
            row(f"14. {at}: mount ready, s", way, f"{med(ready):.3f}", f"{med(ready) / plain['ready']:.2f}x plain")
            row(
                f"14. {at}: sequential read, MiB/s",
                way,
                f"{med(reads):.1f}",
                f"{med(reads) / plain['read']:.2f}x plain",
            )
            for cache in ("fresh", "fast"):
                small = []
                for _ in range(reps):
                    with t.ours(client, self.bench.mounts, self.remote(), transport, [], cache) as (mount, _):
                        small.append(t.timed(lambda m=mount: read_small(m.mountpoint / "small", s.small)))
                label = f"14. {at}: {s.small} x 4 KiB listdir+stat+read, s"
                row(label, f"{way} {cache}", f"{med(small):.2f}", f"{med(small) / plain['small']:.2f}x plain")
            with t.ours(client, self.bench.mounts, self.remote(), transport, []) as (mount, _):
                self.bulk_figures(at, way, mount, connection, reps, plain)
            sftp_far_rows(self, at, way, transport, client, plain)
        finally:
            connection.close()

    def bulk_figures(self, at: str, way: str, mount: Any, connection: DeviceConnection, reps: int, plain: dict) -> None:
        s, row = self.sizes, self.bench.row
        connection.run("true")  # open, as after a session's first use

        runner = connection.script_runner()
        targets = {"collect": "target <= 5 s at 40 ms", "preserve": "target <= 2.5 s at 40 ms", "read_many": "<= 2 s"}
        for bulk in (True, False):
            mount.read_in_bulk(runner if bulk else None)
            how = f"{way}, {'bulk' if bulk else 'file by file (before)'}"
            runs = reps if bulk else 1
            collected: list[Any] = []
            took = [self.tools.timed(partial(_append, collected, self.collect, mount)) for _ in range(runs)]
            files = len(collected[-1].files)
            note = f"{files} files" + (", cut short" if collected[-1].cut_short else "")
            note += f"; {med(took) / plain['copy']:.2f}x plain copy" + (f"; {targets['collect']}" if bulk else "")
            row(f"14. {at}: collect {s.collect} x 2 KiB, s", how, f"{med(took):.2f}", note)
            paths = [self.remote(f"preserve/f{i:03}.conf") for i in range(s.preserve)]
            took = [self.tools.timed(partial(self.preserve_restore, mount, paths)) for _ in range(runs)]
            note = f"{med(took) / plain['rewrite']:.2f}x plain read+rewrite" + (
                f"; {targets['preserve']}" if bulk else ""
            )
            row(f"14. {at}: preserve+restore {s.preserve} files, s", how, f"{med(took):.2f}", note)
            if bulk:
                took = [self.tools.timed(partial(mount.read_many, self.remote("many") + "/*.log")) for _ in range(runs)]
                row(f"14. {at}: read_many {s.read_many} x 4 KiB, s", how, f"{med(took):.2f}", targets["read_many"])
        mount.read_in_bulk(None)

    def collect(self, mount: Any) -> Any:
        dest = self.bench.work / "lab-collected"
        try:
            return mount.collect([self.remote("collect") + "/*.log"], dest)
        finally:
            shutil.rmtree(dest, ignore_errors=True)

    def preserve_restore(self, mount: Any, paths: list[str]) -> None:
        mount.preserve(*paths)
        (self.data / "preserve" / "f000.conf").write_text("changed\n")
        mount.restore_preserved()


@dataclass
class _Far:
    """The device as plain sshfs sees it through the delay: ``plain_sshfs`` takes host, port, user, key."""

    device: Any
    far: LatencyProxy

    def __getattr__(self, name: str) -> Any:
        return getattr(self.device, name)

    @property
    def host(self) -> str:
        return self.far.host

    @property
    def port(self) -> int:
        return self.far.port


def _copy_tree(source: Path, dest: Path) -> None:
    try:
        dest.mkdir()
        for entry in sorted(os.listdir(source)):
            shutil.copyfile(source / entry, dest / entry)
    finally:
        shutil.rmtree(dest, ignore_errors=True)


def _read_and_rewrite(folder: Path) -> None:
    """What preserve+restore does by hand: read each file, then write each back."""
    saved = {p: p.read_bytes() for p in sorted(folder.iterdir())}
    for path, content in saved.items():
        path.write_bytes(content)


def remote_lab_rows(bench: Any, tools: Any) -> None:
    """Add figure 14's rows to ``bench``."""
    RemoteLab(bench, tools).figures()


def read_small(root: Path, count: int) -> None:
    """What a test does with many small files through a mount: list, stat and read each."""
    names = sorted(os.listdir(root))
    assert len(names) == count
    for name in names:
        os.stat(root / name)
        (root / name).read_bytes()


def _append(into: list[Any], make: Any, *args: Any) -> None:
    into.append(make(*args))
