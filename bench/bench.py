"""Side-by-side benchmark: our mount (auto, direct, the port forward) against plain sshfs.

    python bench/bench.py            # the full run (make bench), prints a Markdown table
    python bench/bench.py --smoke    # tiny sizes, one repetition: CI keeps it working
    python bench/bench.py --relay    # only the exporter-relay section (relay_bench.py; needs root)
    python bench/bench.py --device-log   # only figure 12: the per-test cost of device logs and watched files
    python bench/bench.py --only-sftp    # only figure 13: the SFTP backend (no FUSE) against sshfs
    python bench/bench.py --remote-lab   # only figure 14: a remote lab, 0, 10 and 40 ms away (--smoke: 0 ms)

One loopback sshd serves everything. The exporter runs out of process
(`jmp run --tls-grpc-listener`), as on a lab host, and the client reaches it over gRPC, so
the port-forward figures include the real forwarding path. Page cache is kept out of the
read figures by reading a freshly written file through a fresh mount every time (the local
FUSE cache is empty); the device side is this host's page cache, which is the point of a
loopback device. No figure is asserted anywhere: targets are compared in the table only.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from types import SimpleNamespace

from devicelog_bench import device_log_rows
from import_cost import TARGET_MS, plugin_import_ms
from kernel_files import KernelFileFigures, Tools
from remote_lab_bench import remote_lab_rows
from sftp_bench import sftp_rows
from transport_figures import Helpers, TransportFigures

from jumpstarter_driver_ssh_mount import SshfsTarget, build_argv
from jumpstarter_driver_ssh_mount.sshfs.mountinfo import MountTableWatcher, mounts_at, read_mounts
from pytest_jumpstarter_mount.testing import LoopbackDevice, StandaloneExporter

JMP = str(Path(sys.executable).with_name("jmp"))
WAYS = (("direct", "direct"), ("port forward", "forward"))  # (name, transport)
SSH_OPTS = ["StrictHostKeyChecking=no", "UserKnownHostsFile=/dev/null", "LogLevel=ERROR", "BatchMode=yes"]


def median_range(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.3f}"
    return f"{statistics.median(values):.3f} ({min(values):.3f}-{max(values):.3f})"


# -- plain sshfs, the physical limit ----------------------------------------------------
def plain_sshfs_argv(device: LoopbackDevice, mountpoint: Path, remote: str, options: list[str]) -> list[str]:
    """sshfs as a person would type it: our argv shape, an identity file, only ``options``."""
    target = SshfsTarget(device.host, device.port, device.user, remote)
    return build_argv(target, str(mountpoint), [f"IdentityFile={device.client_key}", *options])


@contextmanager
def plain_sshfs(device: LoopbackDevice, mountpoint: Path, remote: str, extra: list[str]) -> Iterator[float]:
    """Plain sshfs with the same ssh options; yields seconds until mounted and the root stat-able."""
    argv = plain_sshfs_argv(device, mountpoint, remote, [*SSH_OPTS, *extra])
    started = time.monotonic()
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        with MountTableWatcher() as watcher:
            while not mounts_at(mountpoint):
                if proc.poll() is not None:
                    raise RuntimeError("plain sshfs exited")
                watcher.wait(1.0)
        os.stat(mountpoint)
        yield time.monotonic() - started
    finally:
        subprocess.run(["fusermount3", "-u", str(mountpoint)], capture_output=True)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:  # a loaded machine: sshfs unmounts itself on SIGTERM
            proc.terminate()
            proc.wait(30)


@contextmanager
def ours(
    client, mount_dir: Path, remote: str, transport: str, extra: list[str], cache: str = "fresh"
) -> Iterator[tuple[object, float]]:
    """Our API; yields (mount, seconds until mounted() returned and the root answered a stat)."""
    started = time.monotonic()
    mount = client.mounted(
        None, remote_path=remote, transport=transport, extra_args=extra, mount_dir=mount_dir, cache=cache
    )
    os.stat(mount.mountpoint)
    ready = time.monotonic() - started
    try:
        yield mount, ready
    finally:
        mount.unmount()


# -- the figures ----------------------------------------------------------------------------
def timed(fn: Callable[[], object]) -> float:
    started = time.monotonic()
    fn()
    return time.monotonic() - started


def read_file(path: Path) -> None:
    with open(path, "rb", buffering=0) as f:
        while f.read(1 << 20):
            pass


def write_file(path: Path, size: int) -> None:
    block = os.urandom(1 << 20)
    with open(path, "wb", buffering=0) as f:
        for _ in range(size >> 20):
            f.write(block)


def read_small(root: Path, count: int) -> None:
    assert len(os.listdir(root)) == count
    for i in range(count):
        p = root / f"f{i:04}"
        os.stat(p)
        p.read_bytes()


class Bench:
    def __init__(self, args: argparse.Namespace, work: Path) -> None:
        self.args, self.work = args, work
        self.rows: list[tuple[str, str, str, str]] = []
        self.device = LoopbackDevice(work / "device").setup().start()
        self.mounts = work / "mounts"
        self.mounts.mkdir()
        self.exporter = None

    def row(self, what: str, how: str, value: str, note: str = "") -> None:
        self.rows.append((what, how, value, note))
        print(f"  {what:<38} {how:<22} {value:<26} {note}", flush=True)

    @contextmanager
    def client(self) -> Iterator[object]:
        """The device through a standalone exporter process, as on a lab host."""
        from pytest_jumpstarter_mount.config.settings import Settings
        from pytest_jumpstarter_mount.sources.rootclient import open_device

        config = self.device.exporter_config(self.work / "exporter.yaml")
        with StandaloneExporter(config) as exporter:
            settings = Settings(tls_grpc=exporter.wait_ready().address, tls_grpc_insecure=True)
            with open_device(settings) as device:
                yield device.client.children["mount"]

    def mountpoint(self, name: str) -> Path:
        path = self.mounts / name
        path.mkdir(exist_ok=True)
        return path

    def latency(self, client) -> dict[str, float]:
        reps = self.args.reps
        ready: dict[str, list[float]] = {"plain sshfs": [], "ours direct": [], "ours port forward": []}
        unmount: dict[str, list[float]] = {"ours direct": [], "ours port forward": []}
        for _ in range(reps):
            with plain_sshfs(self.device, self.mountpoint("plain"), self.device.remote("/"), []) as t:
                ready["plain sshfs"].append(t)
            for name, transport in (("ours direct", "direct"), ("ours port forward", "forward")):
                with ours(client, self.mounts, self.device.remote("/"), transport, []) as (mount, t):
                    ready[name].append(t)
                    unmount[name].append(timed(mount.unmount))
        base = statistics.median(ready["plain sshfs"])
        for name, values in ready.items():
            ratio = statistics.median(values) / base
            target = "" if name == "plain sshfs" else f"{ratio:.2f}x plain (target <= 1.15x)"
            self.row("1. mount ready, s", name, median_range(values), target)
        for name, values in unmount.items():
            self.row("2. unmount, s", name, median_range(values), "target <= 0.05 s")
        return {k: statistics.median(v) for k, v in ready.items()}

    def throughput(self, client) -> None:
        size = self.args.size_mib << 20
        data = self.device.root / "data"
        results: dict[str, dict[str, float]] = {}
        extra = ["cache=no"] if self.args.no_cache else []
        for name, kind in (("plain sshfs", "plain"), ("ours direct", "direct"), ("ours port forward", "forward")):
            reads, writes = [], []
            for rep in range(self.args.io_reps):
                src = data / f"read-{rep}-{time.monotonic_ns()}.bin"
                write_file(src, size)  # fresh on the device side: nothing of it in the local FUSE cache
                ctx = (
                    plain_sshfs(self.device, self.mountpoint("plain"), self.device.remote("/data"), extra)
                    if kind == "plain"
                    else ours(client, self.mounts, self.device.remote("/data"), kind, extra)
                )
                with ctx as handle:
                    root = self.mounts / "plain" if kind == "plain" else handle[0].mountpoint
                    reads.append(size / (1 << 20) / timed(partial(read_file, root / src.name)))
                    dst = root / f"write-{rep}.bin"
                    writes.append(size / (1 << 20) / timed(partial(write_file, dst, size)))
                src.unlink()
                (data / f"write-{rep}.bin").unlink()
            results[name] = {"read": statistics.median(reads), "write": statistics.median(writes)}
            self.row("3. sequential read, MiB/s", name, median_range(reads))
            self.row("3. sequential write, MiB/s", name, median_range(writes))
        wire = []
        src = data / "wire.bin"
        write_file(src, size)
        for _ in range(self.args.io_reps):
            cmd = ["ssh", "-p", str(self.device.port), "-i", str(self.device.client_key)]
            for option in SSH_OPTS:
                cmd += ["-o", option]
            cmd += [f"{self.device.user}@{self.device.host}", f"cat {self.device.remote('/data/wire.bin')}"]
            wire.append(size / (1 << 20) / timed(partial(subprocess.run, cmd, stdout=subprocess.DEVNULL, check=True)))
        src.unlink()
        self.row("3. sequential read, MiB/s", "ssh cat (wire limit)", median_range(wire))
        plain = results["plain sshfs"]["read"]
        for name in ("ours direct", "ours port forward"):
            target = 0.95 if "direct" in name else 0.7
            self.row("3. read vs plain", name, f"{results[name]['read'] / plain:.2f}x", f"target >= {target}x")

    def small_files(self, client) -> None:
        count = self.args.files
        root = self.device.root / "data" / "small"
        root.mkdir()
        block = os.urandom(4096)
        for i in range(count):
            (root / f"f{i:04}").write_bytes(block)
        times: dict[str, list[float]] = {}
        variants = [("plain sshfs", "plain", "")]
        variants += [
            (f"ours {way} {cache}", transport, cache) for cache in ("fresh", "fast") for way, transport in WAYS
        ]
        for name, kind, cache in variants:
            times[name] = []
            for _ in range(self.args.io_reps):
                ctx = (
                    plain_sshfs(self.device, self.mountpoint("plain"), self.device.remote("/data"), [])
                    if kind == "plain"
                    else ours(client, self.mounts, self.device.remote("/data"), kind, [], cache)
                )
                with ctx as handle:
                    mroot = (self.mounts / "plain" if kind == "plain" else handle[0].mountpoint) / "small"
                    times[name].append(timed(partial(read_small, mroot, count)))
            self.row(f"4. listdir+stat+read {count} x 4 KiB, s", name, median_range(times[name]))
        base = statistics.median(times["plain sshfs"])
        for name, *_ in variants[1:]:
            ratio = statistics.median(times[name]) / base
            target = "target <= 1.8x" if name == "ours port forward fresh" else ""
            self.row("4. small files vs plain", name, f"{ratio:.2f}x", target)
        for way, _ in WAYS:
            fresh, fast = (statistics.median(times[f"ours {way} {c}"]) for c in ("fresh", "fast"))
            self.row("4. fresh vs fast", f"ours {way}", f"{fresh / fast:.2f}x", "aim <= 1.25x")
        for p in root.iterdir():
            p.unlink()
        root.rmdir()

    def j_mount_ready(self) -> None:
        """`jmp shell --exporter-config ... -- j mount --foreground` until "Mounted", vs `-- true`."""
        config = self.device.exporter_config(self.work / "shell.yaml")
        env = {**os.environ, "PATH": f"{Path(JMP).parent}{os.pathsep}{os.environ['PATH']}"}
        shell = [JMP, "shell", "--exporter-config", str(config), "--"]
        true, help_, ready = [], [], []
        for rep in range(max(1, self.args.reps // 2)):
            true.append(timed(partial(subprocess.run, [*shell, "true"], env=env, capture_output=True, check=True)))
            help_.append(
                timed(
                    partial(subprocess.run, [*shell, "j", "mount", "--help"], env=env, capture_output=True, check=True)
                )
            )
            mnt = self.mountpoint(f"j{rep}")
            started = time.monotonic()
            proc = subprocess.Popen(
                [*shell, "j", "mount", str(mnt), "--foreground"],
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                text=True,
                start_new_session=True,
            )
            line = proc.stdout.readline()
            ready.append(time.monotonic() - started)
            os.killpg(proc.pid, 2)
            proc.communicate(timeout=30)
            if not line.startswith("Mounted"):
                raise RuntimeError(f"j mount did not mount: {line!r}")
            mnt.rmdir()
        extra = statistics.median(ready) - statistics.median(true)
        self.row("1b. jmp shell -- true, s", "baseline", median_range(true))
        self.row("1b. jmp shell -- j mount --help, s", "j's own start-up", median_range(help_))
        self.row(
            "1b. j mount --foreground ready, s",
            "port forward",
            median_range(ready),
            f"true + {extra:.2f} s (target <= true + 0.35 s)",
        )

    def plugin_startup(self) -> None:
        suite = self.work / "startup"
        suite.mkdir()
        (suite / "test_many.py").write_text("".join(f"def test_{i}():\n    pass\n" for i in range(self.args.tests)))
        base = [sys.executable, "-m", "pytest", "--co", "-q", "-p", "no:cacheprovider", str(suite)]
        # as a user runs it: with bytecode caching (this workplace sets PYTHONDONTWRITEBYTECODE)
        env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
        run = partial(subprocess.run, capture_output=True, check=True, cwd=suite, env=env)
        for _ in range(2):  # warm-up: bytecode caches written
            run(base)
            run([*base, "-p", "no:jumpstarter_mount"])
        with_plugin, without = [], []
        for _ in range(self.args.reps * 3):
            with_plugin.append(timed(partial(run, base)))
            without.append(timed(partial(run, [*base, "-p", "no:jumpstarter_mount"])))
        cost = (statistics.median(with_plugin) - statistics.median(without)) * 1000
        self.row(f"5. pytest --co, {self.args.tests} tests, s", "with the plugin", median_range(with_plugin))
        self.row(f"5. pytest --co, {self.args.tests} tests, s", "-p no:jumpstarter_mount", median_range(without))
        self.row("5. plugin start-up cost, ms", "unused", f"{cost:.1f}", "target <= 15 ms")
        imported = plugin_import_ms(max(3, self.args.reps * 3))
        self.row(
            "5. import of the plugin, ms",
            "best of fresh interpreters",
            f"{imported:.1f}",
            f"target <= {TARGET_MS:.0f} ms",
        )

    def function_scope(self, ready: float) -> None:
        suite = self.work / "scope"
        suite.mkdir()
        n = self.args.scope_tests
        (suite / "test_scope.py").write_text(
            "".join(f"def test_{i}(remote_fs):\n    assert remote_fs.is_mounted()\n" for i in range(n))
        )
        config = self.device.exporter_config(self.work / "scope.yaml")
        base = [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            str(suite),
            f"--jmp-mount-exporter-config={config}",
            f"--jmp-mount-remote={self.device.remote('/')}",
            f"--jmp-mount-dir={self.mounts}",
        ]
        per: dict[str, list[float]] = {"session": [], "function": []}
        for _ in range(max(1, self.args.reps // 2)):
            for scope in per:
                per[scope].append(
                    timed(
                        partial(
                            subprocess.run,
                            [*base, f"--jmp-mount-scope={scope}"],
                            capture_output=True,
                            check=True,
                            cwd=suite,
                        )
                    )
                )
        overhead = (statistics.median(per["function"]) - statistics.median(per["session"])) / n
        self.row(f"6. {n} tests, session scope, s", "port forward", median_range(per["session"]))
        self.row(f"6. {n} tests, function scope, s", "port forward", median_range(per["function"]))
        self.row(
            "6. function-scope overhead per test, s",
            "port forward",
            f"{overhead:.3f}",
            f"{overhead / ready:.2f}x mount-ready (target <= 1.3x)",
        )

    def kernel_files(self, client) -> None:
        """Figure 11: what direct_io (mounts that show /proc and /sys) costs regular files."""
        tools = Tools(plain_sshfs, ours, timed, read_file, write_file, read_small)
        KernelFileFigures(self, client, tools).run()

    def remote_lab(self) -> None:
        """Figure 14: 0, 10 and 40 ms away, the device or the exporter (bench/remote_lab_bench.py)."""
        remote_lab_rows(self, SimpleNamespace(plain_sshfs=plain_sshfs, ours=ours, timed=timed, read_file=read_file))

    def run(self) -> None:
        print(f"loopback sshd on {self.device.host}:{self.device.port}; {os.cpu_count()} cores", flush=True)
        try:
            if self.args.only_small_files:
                with self.client() as client:
                    self.small_files(client)
                return
            if self.args.only_kernel_files:
                with self.client() as client:
                    self.kernel_files(client)
                return
            if self.args.device_log:
                device_log_rows(self)
                return
            if self.args.only_sftp:
                with self.client() as client:
                    sftp_rows(self, client)
                return
            if self.args.remote_lab:
                self.remote_lab()
                return
            with self.client() as client:
                ready = self.latency(client)
                helpers = Helpers(plain_sshfs, timed, read_file, write_file, read_small)
                TransportFigures(self, client, helpers).run()
                self.j_mount_ready()
                self.throughput(client)
                self.small_files(client)
                sftp_rows(self, client)
                self.kernel_files(client)
            self.plugin_startup()
            self.function_scope(ready["ours port forward"])
            device_log_rows(self)
            self.remote_lab()
        finally:
            self.device.stop()

    def table(self) -> str:
        lines = ["| figure | what | median (range) | against the target |", "| --- | --- | --- | --- |"]
        lines += [f"| {a} | {b} | {c} | {d} |" for a, b, c, d in self.rows]
        return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, one repetition (CI)")
    parser.add_argument("--no-cache", action="store_true", help="mount with -o cache=no for the throughput figures")
    parser.add_argument("--only-small-files", action="store_true", help="only figure 4 (cache modes)")
    parser.add_argument("--only-kernel-files", action="store_true", help="only figure 11 (direct_io's cost)")
    parser.add_argument("--relay", action="store_true", help="only the exporter-relay section (network namespaces)")
    parser.add_argument("--device-log", action="store_true", help="only figure 12 (device logs and watched files)")
    parser.add_argument("--only-sftp", action="store_true", help="only figure 13 (the SFTP backend vs sshfs)")
    parser.add_argument("--remote-lab", action="store_true", help="only figure 14 (0, 10, 40 ms away)")
    args = parser.parse_args()
    small = args.smoke
    args.reps = 1 if small else 7
    args.io_reps = 1 if small else 3
    args.size_mib = 8 if small else 200
    args.files = 50 if small else 2000
    args.tests = 20 if small else 200
    args.scope_tests = 5 if small else 50
    if args.relay:
        return relay_section(args)
    work = Path(tempfile.mkdtemp(prefix="jmp-bench-"))
    bench = Bench(args, work)
    try:
        bench.run()
        if not (
            args.only_small_files or args.only_kernel_files or args.device_log or args.only_sftp or args.remote_lab
        ):
            bench.rows += relay_rows(args)
    finally:
        left = [e.mountpoint for e in read_mounts() if e.mountpoint.startswith(str(work) + "/")]
        if left:  # never let a recursive delete walk into a mount
            raise SystemExit(f"mounts left behind, {work} kept: {left}")
        shutil.rmtree(work)
    print()
    print(bench.table())
    return 0


def relay_rows(args: argparse.Namespace) -> list[tuple[str, str, str, str]]:
    """The relay section's rows (bench/relay_bench.py), or one row saying why it was skipped."""
    import relay_bench

    try:
        return relay_bench.run(args)
    except relay_bench.LabUnavailable as exc:
        return [("R. exporter relay", "skipped", "", str(exc))]


def relay_section(args: argparse.Namespace) -> int:
    """``--relay``: only the relay section, as bench/relay_bench.py prints it."""
    import relay_bench

    return relay_bench.main(["--smoke"] if args.smoke else [])


if __name__ == "__main__":
    sys.exit(main())
