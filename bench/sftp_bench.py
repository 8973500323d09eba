"""Figure 13 of the benchmark: the SFTP backend (no FUSE) against sshfs, in the same run, at zero distance.

Both backends are opened the way the plugin opens them (``SSHMountClient.files``, the device's
address, host key checked), and the same pathlib code reads through both: a ``pathlib.Path`` below
the sshfs mountpoint, a ``DevicePath`` over SFTP. Small files: list the directory, ``stat`` and read
every file, one after the other, as a test would. Sequential read: one fresh file read whole
(``read_bytes``; over SFTP many requests in flight). The figures are ratios of medians taken in one
run, so a busy machine moves both alike.
"""

from __future__ import annotations

import os
import statistics
import time
from typing import Any

BACKENDS = ("sshfs", "sftp")


def read_tree(root: Any, count: int) -> None:
    """What a test does with a directory of small files, in pathlib calls that work on both backends."""
    entries = list(root.iterdir())
    assert len(entries) == count
    for path in entries:
        path.stat()
        path.read_bytes()


def sftp_rows(bench: Any, client: Any) -> None:
    """Rows of figure 13: small files and sequential read, each backend, and SFTP's ratio to sshfs."""
    count, size = bench.args.files, bench.args.size_mib << 20
    data = bench.device.root / "data"
    small = data / "sftp-small"
    small.mkdir()
    block = os.urandom(4096)
    for i in range(count):
        (small / f"f{i:04}").write_bytes(block)
    tree: dict[str, list[float]] = {b: [] for b in BACKENDS}
    reads: dict[str, list[float]] = {b: [] for b in BACKENDS}
    try:
        for rep in range(bench.args.io_reps):
            big = data / f"sftp-read-{rep}-{time.monotonic_ns()}.bin"
            with open(big, "wb") as out:
                out.write(os.urandom(size))
            for backend in BACKENDS:
                remote = bench.device.remote("/data")
                with client.files(remote, backend=backend, transport="direct", mount_dir=bench.mounts) as files:
                    started = time.monotonic()
                    read_tree(files / "sftp-small", count)
                    tree[backend].append(time.monotonic() - started)
                    started = time.monotonic()
                    assert len((files / big.name).read_bytes()) == size
                    reads[backend].append(size / (1 << 20) / (time.monotonic() - started))
            big.unlink()
    finally:
        for path in small.iterdir():
            path.unlink()
        small.rmdir()
    for backend in BACKENDS:
        bench.row(f"13. list+stat+read {count} x 4 KiB, s", f"{backend} direct", spread(tree[backend]))
    for backend in BACKENDS:
        bench.row("13. sequential read, MiB/s", f"{backend} direct", spread(reads[backend]))
    small_ratio = statistics.median(tree["sftp"]) / statistics.median(tree["sshfs"])
    read_ratio = statistics.median(reads["sftp"]) / statistics.median(reads["sshfs"])
    bench.row("13. small files, sftp vs sshfs", "time ratio", f"{small_ratio:.2f}x", "issue's hint: 2.2x (3.3 / 1.5 s)")
    bench.row("13. sequential read, sftp vs sshfs", "throughput ratio", f"{read_ratio:.2f}x", "hint: 0.77x (85/110)")


def spread(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.3f}"
    return f"{statistics.median(values):.3f} ({min(values):.3f}-{max(values):.3f})"


def sftp_far_rows(lab: Any, at: str, way: str, transport: str, client: Any, plain: dict[str, float]) -> None:
    """Figure 14's SFTP rows (no FUSE) at one distance: session ready, sequential read, small files one by one,
    ``read_many``; ratios against plain sshfs at the same distance, in the same run."""
    s, row, timed = lab.sizes, lab.bench.row, lab.tools.timed
    started = time.monotonic()
    with client.files(lab.remote(), backend="sftp", transport=transport) as files:
        ready = time.monotonic() - started
        row(f"14. {at}: mount ready, s", f"{way} sftp", f"{ready:.3f}", f"{ready / plain['ready']:.2f}x plain")
        read = s.read_mib / timed(lambda: (files / "big.bin").read_bytes())
        row(f"14. {at}: sequential read, MiB/s", f"{way} sftp", f"{read:.1f}", f"{read / plain['read']:.2f}x plain")
        small = timed(lambda: read_tree(files / "small", s.small))
        label = f"14. {at}: {s.small} x 4 KiB listdir+stat+read, s"
        row(label, f"{way} sftp", f"{small:.2f}", f"{small / plain['small']:.2f}x plain")
        many = timed(lambda: files.read_many(lab.remote("many") + "/*.log"))
        row(f"14. {at}: read_many {s.read_many} x 4 KiB, s", f"{way} sftp", f"{many:.2f}")
