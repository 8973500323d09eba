"""Figure 11 of the benchmark: what reading /proc and /sys right costs regular files.

A mount that shows the device's /proc or /sys (a mount of ``/``, ``/proc``, ``/sys/...``)
reads with ``direct_io``: no page cache. Here our mount of the device's ``/`` (the loopback
device is not chrooted, so its ``/`` is this host's) reads regular files next to plain sshfs of
``/`` (page cache), plain sshfs of ``/`` with ``-o direct_io``, and our mount of a directory below it
(page cache), all on the device's address (no port forward), each repetition starting with
another kind. Figures are medians over the repetitions.
"""

from __future__ import annotations

import errno
import mmap
import os
import statistics
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

MIB = 1 << 20


@dataclass
class Tools:
    """What figure 11 takes from bench.py (passed in: bench.py imports this module)."""

    plain_sshfs: Callable[..., AbstractContextManager[float]]
    ours: Callable[..., AbstractContextManager[tuple[Any, float]]]
    timed: Callable[[Callable[[], object]], float]
    read_file: Callable[[Path], None]
    write_file: Callable[[Path, int], None]
    read_small: Callable[[Path, int], None]


def rotated(kinds: tuple[str, ...], rep: int) -> tuple[str, ...]:
    """``kinds`` starting at another one each repetition: none always runs first (cold) or last."""
    start = rep % len(kinds)
    return kinds[start:] + kinds[:start]


def reread(path: Path, times: int = 3) -> None:
    """Read ``path`` ``times`` times through one open file (the page cache serves the repeats)."""
    with open(path, "rb", buffering=0) as f:
        for _ in range(times):
            f.seek(0)
            while f.read(MIB):
                pass


def mmap_touch(path: Path, access: int) -> None:
    """Map ``path`` and touch every page."""
    with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=access) as m:
        for offset in range(0, len(m), mmap.PAGESIZE):
            m[offset]


def shared_mmap_works(path: Path) -> str:
    try:
        mmap_touch(path, mmap.ACCESS_READ)
    except OSError as exc:
        return "fails: ENODEV" if exc.errno == errno.ENODEV else f"fails: {exc}"
    return "works"


class KernelFileFigures:
    """The rows of figure 11, added to ``bench``'s table."""

    def __init__(self, bench: Any, client: Any, tools: Tools) -> None:
        self.bench, self.client, self.tools = bench, client, tools
        self.device = bench.device

    @contextmanager
    def mounted(self, kind: str) -> Iterator[tuple[Path, str]]:
        """(where the device's ``/`` files are, prefix to reach device.root from there) for ``kind``."""
        bench, tools = self.bench, self.tools
        if kind in ("plain /", "plain / direct_io"):
            extra = ["direct_io"] if kind.endswith("direct_io") else []
            with tools.plain_sshfs(self.device, bench.mountpoint("plain"), "/", extra):
                yield bench.mounts / "plain", str(self.device.root).lstrip("/")
        elif kind == "ours /":
            with tools.ours(self.client, bench.mounts, "/", "direct", []) as (mount, _):
                assert "direct_io" in mount.options
                yield mount.mountpoint, str(self.device.root).lstrip("/")
        else:  # ours subdirectory: the device tree below / (where data/ is), without direct_io
            with tools.ours(self.client, bench.mounts, self.device.remote("/"), "direct", []) as (mount, _):
                assert "direct_io" not in mount.options
                yield mount.mountpoint, ""

    KINDS = ("plain /", "plain / direct_io", "ours /", "ours subdirectory")

    def run(self) -> None:
        self.proc_row()
        self.sequential()
        self.small_files()

    def proc_row(self) -> None:
        for kind in ("plain /", "ours /"):
            with self.mounted(kind) as (root, _):
                size = len((root / "proc/meminfo").read_bytes())
                mode = shared_mmap_works(root / "etc/os-release") if kind == "ours /" else "works"
            self.bench.row("11. /proc/meminfo read, bytes", kind, str(size), "direct_io: the content")
            self.bench.row("11. shared mmap of a regular file", kind, mode, "libfuse < 3.16: ENODEV")

    def sequential(self) -> None:
        size = self.bench.args.size_mib * MIB
        data = self.device.root / "data"
        figures: dict[str, dict[str, list[float]]] = {k: {"read": [], "reread": [], "mmap": []} for k in self.KINDS}
        for rep in range(self.bench.args.io_reps):
            for kind in rotated(self.KINDS, rep):
                src = data / f"kf-{rep}-{kind.replace(' ', '_').replace('/', '')}.bin"
                self.tools.write_file(src, size)  # fresh: nothing of it in the local FUSE cache
                with self.mounted(kind) as (root, prefix):
                    path = root / prefix / "data" / src.name
                    figures[kind]["read"].append(size / MIB / self.tools.timed(partial(self.tools.read_file, path)))
                    figures[kind]["reread"].append(3 * size / MIB / self.tools.timed(partial(reread, path)))
                    touch = partial(mmap_touch, path, mmap.ACCESS_COPY)
                    figures[kind]["mmap"].append(size / MIB / self.tools.timed(touch))
                src.unlink()
        labels = {
            "read": "sequential read, MiB/s",
            "reread": "read 3x in one open, MiB/s",
            "mmap": "private mmap, all pages, MiB/s",
        }
        for figure, label in labels.items():
            plain = statistics.median(figures["plain /"][figure])
            for kind in self.KINDS:
                values = figures[kind][figure]
                value = statistics.median(values)
                shown = f"{value:.0f} ({min(values):.0f}-{max(values):.0f})"
                self.bench.row(f"11. {label}", kind, shown, f"{value / plain:.2f}x plain /")

    def small_files(self) -> None:
        count = self.bench.args.files
        root = self.device.root / "data" / "kf-small"
        root.mkdir()
        block = os.urandom(4096)
        for i in range(count):
            (root / f"f{i:04}").write_bytes(block)
        times: dict[str, list[float]] = {k: [] for k in self.KINDS}
        try:
            for rep in range(self.bench.args.io_reps):
                for kind in rotated(self.KINDS, rep):
                    with self.mounted(kind) as (mroot, prefix):
                        small = mroot / prefix / "data" / "kf-small"
                        times[kind].append(self.tools.timed(partial(self.tools.read_small, small, count)))
        finally:
            for p in root.iterdir():
                p.unlink()
            root.rmdir()
        plain = statistics.median(times["plain /"])
        for kind in self.KINDS:
            value = statistics.median(times[kind])
            shown = f"{value:.3f} ({min(times[kind]):.3f}-{max(times[kind]):.3f})"
            self.bench.row(f"11. listdir+stat+read {count} x 4 KiB, s", kind, shown, f"{value / plain:.2f}x plain /")
