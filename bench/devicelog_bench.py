"""Figure 11 of the benchmark: what ``--jmp-mount-log`` and ``--jmp-mount-watch`` cost each test.

The same suite of passing tests (each using the device) runs with and without one device log
and one watched 500-file tree, paired per repetition; the table gives the median difference
per test (paired per repetition) and the least of them, the figure least disturbed by a
busy machine. A passing test costs one reading (its start: one round trip through the shell kept
open on the device); with ``--jmp-mount-log-keep=all`` two (start and end, and the files
written); a failing one three (start, the failing phase, the end).
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

TREE_FILES = 500


def device_log_rows(bench: Any) -> None:
    """Add figure 11's rows to ``bench`` (a ``bench.Bench``: ``work``, ``device``, ``mounts``, ``args``, ``row``)."""
    n = bench.args.scope_tests * 2
    suite = bench.work / "devicelog"
    suite.mkdir()
    (suite / "test_logged.py").write_text("".join(f"def test_{i}(jmp_mount_client):\n    pass\n" for i in range(n)))
    tree = bench.device.root / "data" / "bench-tree"
    for i in range(TREE_FILES):
        sub = tree / f"d{i % 20:02d}"
        sub.mkdir(parents=True, exist_ok=True)
        (sub / f"f{i:03d}").write_text("x" * (i % 7))
    log = bench.device.root / "var" / "log" / "bench.log"
    log.write_text("".join(f"line {i}\n" for i in range(1000)))
    config = bench.device.exporter_config(bench.work / "devicelog.yaml")
    base = [
        sys.executable,
        "-m",
        "pytest",
        "-q",
        "-p",
        "no:cacheprovider",
        str(suite),
        f"--jmp-mount-exporter-config={config}",
        f"--jmp-mount-dir={bench.mounts}",
    ]
    watching = [f"--jmp-mount-log={bench.device.remote('/var/log/bench.log')}"]
    watching.append(f"--jmp-mount-watch={bench.device.remote('/data/bench-tree')}")
    runs = {"off": base, "failed": [*base, *watching], "all": [*base, *watching, "--jmp-mount-log-keep=all"]}
    seconds: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(bench.args.reps):
        for name, argv in runs.items():  # back to back: on a shared machine a pair sees the same load
            started = time.perf_counter()
            subprocess.run(argv, capture_output=True, check=True, cwd=suite)
            seconds[name].append(time.perf_counter() - started)
    off = statistics.median(seconds["off"])
    for name, note in (("failed", "target <= 30 ms"), ("all", "two readings per test, files written")):
        per_test = [(on - base) / n * 1000 for on, base in zip(seconds[name], seconds["off"], strict=True)]
        what = f"11. log + {TREE_FILES}-file watch, per test, ms"
        value = f"{statistics.median(per_test):.1f} (least {min(per_test):.1f})"
        bench.row(what, f"keep={name}, auto", value, f"{note}; {n} tests in {off:.2f} s without")
    _remove(tree, log)


def _remove(tree: Path, log: Path) -> None:
    for sub in tree.iterdir():
        for f in sub.iterdir():
            f.unlink()
        sub.rmdir()
    tree.rmdir()
    log.unlink()
