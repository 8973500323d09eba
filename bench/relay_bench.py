"""The relay section of the benchmark: exporter relay against port forward against plain sshfs.

    python bench/relay_bench.py            # the full run, prints a Markdown table (bench.py --relay runs it)
    python bench/relay_bench.py --smoke    # tiny sizes, one repetition

A lab in two network namespaces joined by a veth pair, as in tests/test_relay.py: the device's sshd
listens on 127.0.0.1 inside the exporter's namespace, so only the exporter reaches it; the exporter
(`jmp run --tls-grpc-listener`) listens on the veth address, with `relay_listen` on that address.
Our mounts run in the other namespace (the test host); plain sshfs runs in the exporter's namespace,
the best any path can do. Every variant is measured by a child process started in its namespace
(``--measure``), which prints its figures as JSON. Needs root, ip(8) and nsenter(1).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from functools import partial
from pathlib import Path

from bench import median_range, plain_sshfs, read_file, read_small, timed, write_file

from pytest_jumpstarter_mount.testing import LoopbackDevice, StandaloneExporter

DEVICE_ADDR, CLIENT_ADDR = "10.231.78.1", "10.231.78.2"  # only inside the two namespaces below
DEVICE_PORT, EXPORTER_PORT = 2222, 7791
TRANSPORT = {"plain sshfs (exporter's namespace)": "", "ours relay": "relay", "ours port forward": "forward"}
VARIANTS = tuple(TRANSPORT)


# -- the lab ---------------------------------------------------------------------------------
class LabUnavailable(RuntimeError):
    """Network namespaces cannot be made here (not root, no ip/nsenter, or not permitted)."""


def ip(*args: str) -> None:
    result = subprocess.run(["ip", *args], capture_output=True, text=True)
    if result.returncode != 0:
        raise LabUnavailable(f"ip {' '.join(args)}: {result.stderr.strip()}")


@contextlib.contextmanager
def namespaces() -> Iterator[tuple[str, str]]:
    """<name>-dev (device and exporter) and <name>-cli (the test host), a veth pair between them."""
    name = f"jmpb{os.getpid() % 100000}"
    dev, cli = f"{name}-dev", f"{name}-cli"
    made = []
    try:
        for ns in (dev, cli):
            ip("netns", "add", ns)
            made.append(ns)
        ip("link", "add", f"{name}a", "netns", dev, "type", "veth", "peer", "name", f"{name}b", "netns", cli)
        ip("-n", dev, "addr", "add", f"{DEVICE_ADDR}/30", "dev", f"{name}a")
        ip("-n", cli, "addr", "add", f"{CLIENT_ADDR}/30", "dev", f"{name}b")
        for ns, link in ((dev, f"{name}a"), (cli, f"{name}b")):
            ip("-n", ns, "link", "set", link, "up")
            ip("-n", ns, "link", "set", "lo", "up")
        yield dev, cli
    finally:
        for ns in made:
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)


def in_ns(ns: str, *argv: str) -> list[str]:
    return ["nsenter", f"--net=/run/netns/{ns}", *argv]


def wait_for(ns: str, host: str, port: int, timeout: float = 60) -> None:
    probe = f"import socket; socket.create_connection(({host!r}, {port}), 1).close()"
    deadline = time.monotonic() + timeout
    while subprocess.run(in_ns(ns, sys.executable, "-c", probe), capture_output=True).returncode != 0:
        if time.monotonic() > deadline:
            raise RuntimeError(f"{host}:{port} does not answer in {ns}")
        time.sleep(0.2)


# -- one variant, in its namespace -----------------------------------------------------------
@contextlib.contextmanager
def mounted(variant: str, device: LoopbackDevice, client, mounts: Path, remote: str) -> Iterator[tuple[Path, float]]:
    """(the mounted root, seconds until it answered a stat), for ``variant``."""
    transport = TRANSPORT[variant]
    if not transport:
        point = mounts / "plain"
        point.mkdir(exist_ok=True)
        with plain_sshfs(device, point, remote, []) as ready:
            yield point, ready
        return
    started = time.monotonic()
    # cache "fast" is sshfs's own caching, as plain sshfs has: only the path differs
    mount = client.mounted(None, remote_path=remote, transport=transport, mount_dir=mounts, cache="fast")
    try:
        os.stat(mount.mountpoint)
        ready = time.monotonic() - started
        if mount.transport != transport:
            raise RuntimeError(f"asked for {transport}, got {mount.transport}: {mount.transport_note}")
        yield mount.mountpoint, ready
    finally:
        mount.unmount()


def measure(args: argparse.Namespace) -> dict[str, dict[str, list[float]]]:
    """Mount ready, sequential read and small files for ``args.variants``, interleaved rep by rep.

    Runs inside the variants' namespace; ours share one client of the exporter.
    """
    device = LoopbackDevice(args.device_base, host="127.0.0.1", port=DEVICE_PORT)
    mounts, variants = Path(args.mounts), args.measure.split(",")
    with contextlib.ExitStack() as stack:
        client = None
        if any(TRANSPORT[v] for v in variants):
            from pytest_jumpstarter_mount.config.settings import Settings
            from pytest_jumpstarter_mount.sources.rootclient import open_device

            settings = Settings(tls_grpc=f"{DEVICE_ADDR}:{EXPORTER_PORT}", tls_grpc_insecure=True)
            client = stack.enter_context(open_device(settings)).client.children["mount"]
        figures = {v: {"ready": [], "read": [], "small": []} for v in variants}
        for v in variants:  # warm-up, not counted: first connections, imports, caches
            with mounted(v, device, client, mounts, device.remote("/")):
                pass
        for _ in range(args.reps):
            for v in variants:
                with mounted(v, device, client, mounts, device.remote("/")) as (_, ready):
                    figures[v]["ready"].append(ready)
        data = device.root / "data"
        for rep in range(args.io_reps):
            for v in variants:
                src = data / f"read-{rep}-{time.monotonic_ns()}.bin"
                write_file(src, args.size_mib << 20)  # fresh: nothing of it in the local FUSE cache
                with mounted(v, device, client, mounts, device.remote("/data")) as (root, _):
                    figures[v]["read"].append(args.size_mib / timed(partial(read_file, root / src.name)))
                src.unlink()
                with mounted(v, device, client, mounts, device.remote("/data")) as (root, _):
                    figures[v]["small"].append(timed(partial(read_small, root / "small", args.files)))
    return figures


# -- the run ---------------------------------------------------------------------------------
def run(args: argparse.Namespace) -> list[tuple[str, str, str, str]]:
    """Every variant in the lab; the table rows."""
    if os.geteuid() != 0 or not shutil.which("nsenter") or not shutil.which("ip"):
        raise LabUnavailable("the relay benchmark needs root, ip(8) and nsenter(1) for its network namespaces")
    work = Path(tempfile.mkdtemp(prefix="jmp-bench-relay-"))
    mounts = work / "mounts"
    mounts.mkdir()
    results: dict[str, dict[str, list[float]]] = {}
    try:
        with namespaces() as (dev_ns, cli_ns):
            device = LoopbackDevice(work / "device", host="127.0.0.1", port=DEVICE_PORT, netns=dev_ns)
            with contextlib.closing(_Stopping(device.setup().start())):
                small = device.root / "data" / "small"
                small.mkdir()
                block = os.urandom(4096)
                for i in range(args.files):
                    (small / f"f{i:04}").write_bytes(block)
                config = device.exporter_config(work / "exporter.yaml", mount_config={"relay_listen": DEVICE_ADDR})
                with StandaloneExporter(config, host=DEVICE_ADDR, port=EXPORTER_PORT, netns=dev_ns) as exporter:
                    wait_for(cli_ns, DEVICE_ADDR, EXPORTER_PORT)
                    exporter.pids = [exporter.process.pid, *_children(exporter.process.pid)]
                    for ns, group in ((dev_ns, VARIANTS[:1]), (cli_ns, VARIANTS[1:])):
                        results.update(_child(ns, group, args, work, mounts))
                    for variant, figures in results.items():
                        print(f"  {variant}: {json.dumps(figures)}", flush=True)
    finally:
        _remove(work)
    return rows(results, args)


class _Stopping:
    """``device``, stopped by ``close()``."""

    def __init__(self, device: LoopbackDevice) -> None:
        self.device = device

    def close(self) -> None:
        self.device.stop()


def _children(pid: int) -> list[int]:
    from jumpstarter_driver_ssh_mount.common.procfs import child_pids

    return child_pids(pid)


def _child(
    ns: str, variants: tuple[str, ...], args: argparse.Namespace, work: Path, mounts: Path
) -> dict[str, dict[str, list[float]]]:
    """``measure`` of ``variants`` in a child process in namespace ``ns``."""
    argv = [sys.executable, __file__, "--measure", ",".join(variants), "--device-base", str(work / "device")]
    argv += ["--mounts", str(mounts), "--size-mib", str(args.size_mib), "--files", str(args.files)]
    argv += ["--reps", str(args.reps), "--io-reps", str(args.io_reps)]
    result = subprocess.run(in_ns(ns, *argv), capture_output=True, text=True, timeout=1800)
    if result.returncode != 0:
        raise RuntimeError(f"{', '.join(variants)} failed: {result.stderr[-3000:]}")
    return json.loads(result.stdout.splitlines()[-1])


def _remove(work: Path) -> None:
    from jumpstarter_driver_ssh_mount.sshfs.mountinfo import read_mounts

    left = [e.mountpoint for e in read_mounts() if e.mountpoint.startswith(str(work) + "/")]
    if left:  # never let a recursive delete walk into a mount
        raise SystemExit(f"mounts left behind, {work} kept: {left}")
    shutil.rmtree(work)


def rows(results: dict[str, dict[str, list[float]]], args: argparse.Namespace) -> list[tuple[str, str, str, str]]:
    """The table rows: each figure per variant, then the ratios against the targets."""
    table = []
    plain, forward = results[VARIANTS[0]], results["ours port forward"]
    for key, what in (
        ("ready", "R1. mount ready, s"),
        ("read", f"R2. sequential read {args.size_mib} MiB, MiB/s"),
        ("small", f"R3. stat+read {args.files} x 4 KiB, s"),
    ):
        for variant in VARIANTS:
            table.append((what, variant, median_range(results[variant][key]), ""))

    def ratio(variant: str, key: str, base: dict[str, list[float]]) -> str:
        return f"{statistics.median(results[variant][key]) / statistics.median(base[key]):.2f}x"

    table += [
        ("R2. read vs plain", "ours relay", ratio("ours relay", "read", plain), "target >= 0.8x"),
        ("R2. read vs plain", "ours port forward", ratio("ours port forward", "read", plain), ""),
        ("R3. small files vs plain", "ours relay", ratio("ours relay", "small", plain), "target <= 1.5x"),
        ("R3. small files vs plain", "ours port forward", ratio("ours port forward", "small", plain), ""),
        ("R1. ready, relay vs forward", "ours relay", ratio("ours relay", "ready", forward), "target <= 1.0x"),
    ]
    return table


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, one repetition")
    parser.add_argument("--measure", help=argparse.SUPPRESS)  # variants, comma-separated, in their namespace
    for name in ("--device-base", "--mounts"):
        parser.add_argument(name, help=argparse.SUPPRESS)
    for name in ("--size-mib", "--files", "--reps", "--io-reps"):
        parser.add_argument(name, type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.measure is None:
        args.reps = 1 if args.smoke else 7
        args.io_reps = 1 if args.smoke else 3
        args.size_mib = 8 if args.smoke else 200
        args.files = 50 if args.smoke else 2000
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    if args.measure:
        print(json.dumps(measure(args)))
        return 0
    try:
        table = run(args)
    except LabUnavailable as exc:
        print(f"relay benchmark skipped: {exc}", file=sys.stderr)
        return 1
    print()
    print("| figure | what | median (range) | against the target |\n| --- | --- | --- | --- |")
    for a, b, c, d in table:
        print(f"| {a} | {b} | {c} | {d} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
