"""Figure 12 of the benchmark: what ``--jmp-mount-log`` and ``--jmp-mount-watch`` cost each test.

A suite of passing tests (each using the device) runs with and without one device log and one
watched 500-file tree, back to back in each repetition. A conftest times each test's whole run
(``pytest_runtest_protocol``: setup, call, teardown, reports), and the cost per test is the
difference of the median test with and without: medians, because on a busy machine a total is
swayed by whatever else ran meanwhile, and the first test (which also opens the shell on the
device, shown on its own) is not typical. A passing test costs one reading (its start: one round
trip through the shell kept open on the device); with ``--jmp-mount-log-keep=all`` two (start and
end, and the files written); a failing one three (start, the failing phase, the end).
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

TREE_FILES = 500
TIMING_CONFTEST = """
import json, os, time
import pytest

durations = []

@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_protocol(item, nextitem):
    started = time.perf_counter()
    try:
        return (yield)
    finally:
        durations.append(time.perf_counter() - started)

def pytest_sessionfinish(session):
    with open(os.environ["BENCH_DURATIONS"], "w") as f:
        json.dump(durations, f)
"""


def device_log_rows(bench: Any) -> None:
    """Add figure 12's rows to ``bench`` (a ``bench.Bench``: ``work``, ``device``, ``mounts``, ``args``, ``row``)."""
    n = bench.args.scope_tests * 2
    suite = bench.work / "devicelog"
    suite.mkdir()
    (suite / "conftest.py").write_text(TIMING_CONFTEST)
    (suite / "test_logged.py").write_text("".join(f"def test_{i}(jmp_mount_client):\n    pass\n" for i in range(n)))
    tree, log = _device_files(bench.device)
    config = bench.device.exporter_config(bench.work / "devicelog.yaml")
    base = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(suite)]
    base += [f"--jmp-mount-exporter-config={config}", f"--jmp-mount-dir={bench.mounts}"]
    watching = [f"--jmp-mount-log={bench.device.remote('/var/log/bench.log')}"]
    watching.append(f"--jmp-mount-watch={bench.device.remote('/data/bench-tree')}")
    modes = {"off": [], "failed": watching, "all": [*watching, "--jmp-mount-log-keep=all"]}
    typical: dict[str, list[float]] = {mode: [] for mode in modes}  # the median test of each run, s
    first: dict[str, list[float]] = {mode: [] for mode in modes}  # the first test of each run, s
    out = bench.work / "durations.json"
    for _ in range(bench.args.reps):
        for mode, extra in modes.items():  # back to back: on a shared machine a group sees the same load
            subprocess.run(
                [*base, *extra],
                capture_output=True,
                check=True,
                cwd=suite,
                env={**os.environ, "BENCH_DURATIONS": str(out)},
            )
            durations = json.loads(out.read_text())
            typical[mode].append(statistics.median(durations[1:]))
            first[mode].append(durations[0])
    what = f"12. log + {TREE_FILES}-file watch, per test, ms"
    for mode, note in (("failed", "target <= 30 ms"), ("all", "two readings per test, files written")):
        per_test = [(on - off) * 1000 for on, off in zip(typical[mode], typical["off"], strict=True)]
        value = f"{statistics.median(per_test):.1f} ({min(per_test):.1f}-{max(per_test):.1f})"
        bench.row(what, f"keep={mode}, auto", value, f"{note}; a test without: {_ms(typical['off'])} ms")
    once = [on - off for on, off in zip(first["failed"], first["off"], strict=True)]
    bench.row("12. opening the shell, once per process, s", "auto", f"{statistics.median(once):.3f}")
    _remove(tree, log)


def _ms(seconds: list[float]) -> str:
    return f"{statistics.median(seconds) * 1000:.1f}"


def _device_files(device: Any) -> tuple[Path, Path]:
    """A 500-file tree in 20 directories and a 1000-line log on the device; their paths."""
    tree = device.root / "data" / "bench-tree"
    for i in range(TREE_FILES):
        sub = tree / f"d{i % 20:02d}"
        sub.mkdir(parents=True, exist_ok=True)
        (sub / f"f{i:03d}").write_text("x" * (i % 7))
    log = device.root / "var" / "log" / "bench.log"
    log.write_text("".join(f"line {i}\n" for i in range(1000)))
    return tree, log


def _remove(tree: Path, log: Path) -> None:
    for sub in tree.iterdir():
        for f in sub.iterdir():
            f.unlink()
        sub.rmdir()
    tree.rmdir()
    log.unlink()
