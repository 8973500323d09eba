"""Figure 11 of the benchmark: what ``--jmp-mount-log`` and ``--jmp-mount-watch`` cost each test.

Suites of N and 2N passing tests (each using the device) run with and without one device log and
one watched 500-file tree, back to back in each repetition. The cost per test is the marginal one,
``((on 2N - off 2N) - (on N - off N)) / N``, so the one-time cost of opening the shell on the device
(shown on its own) is not spread over the tests; the table gives the median over the repetitions
and the least (the figure least disturbed by a busy machine), and the test host's CPU time per test
(pytest and ssh; load-independent). A passing test costs one reading (its start: one round trip
through the shell kept open on the device); with ``--jmp-mount-log-keep=all`` two (start and end,
and the files written); a failing one three (start, the failing phase, the end).
"""

from __future__ import annotations

import resource
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
    for count in (n, 2 * n):
        tests = "".join(f"def test_{i}(jmp_mount_client):\n    pass\n" for i in range(count))
        (suite / f"test_logged_{count}.py").write_text(tests)
    tree, log = _device_files(bench.device)
    config = bench.device.exporter_config(bench.work / "devicelog.yaml")
    base = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"]
    base += [f"--jmp-mount-exporter-config={config}", f"--jmp-mount-dir={bench.mounts}"]
    watching = [f"--jmp-mount-log={bench.device.remote('/var/log/bench.log')}"]
    watching.append(f"--jmp-mount-watch={bench.device.remote('/data/bench-tree')}")
    modes = {"off": [], "failed": watching, "all": [*watching, "--jmp-mount-log-keep=all"]}
    wall: dict[tuple[str, int], list[float]] = {(m, c): [] for m in modes for c in (n, 2 * n)}
    cpu: dict[tuple[str, int], list[float]] = {key: [] for key in wall}
    for _ in range(max(1, bench.args.reps // 2)):
        for mode, extra in modes.items():  # back to back: on a shared machine a group sees the same load
            for count in (n, 2 * n):
                used, started = _children_cpu(), time.perf_counter()
                argv = [*base, str(suite / f"test_logged_{count}.py"), *extra]
                subprocess.run(argv, capture_output=True, check=True, cwd=suite)
                wall[mode, count].append(time.perf_counter() - started)
                cpu[mode, count].append(_children_cpu() - used)
    what = f"11. log + {TREE_FILES}-file watch, per test, ms"
    for mode, note in (("failed", "target <= 30 ms"), ("all", "two readings per test, files written")):
        per_test = [_marginal(wall, mode, n, i) / n * 1000 for i in range(len(wall[mode, n]))]
        value = f"{statistics.median(per_test):.1f} (least {min(per_test):.1f})"
        bench.row(what, f"keep={mode}, auto", value, note)
        host = statistics.median(_marginal(cpu, mode, n, i) / n * 1000 for i in range(len(cpu[mode, n])))
        bench.row("11. the same, test-host CPU per test, ms", f"keep={mode}, auto", f"{host:.1f}", "pytest and ssh")
    once = statistics.median(
        wall["failed", n][i] - wall["off", n][i] - n * _marginal(wall, "failed", n, i) / n
        for i in range(len(wall["off", n]))
    )
    bench.row(
        "11. opening the shell, once per process, s",
        "auto",
        f"{once:.3f}",
        f"{n} tests without it: {statistics.median(wall['off', n]):.2f} s",
    )
    _remove(tree, log)


def _marginal(figures: dict[tuple[str, int], list[float]], mode: str, n: int, i: int) -> float:
    """What ``mode`` adds to N more tests, in repetition ``i``."""
    return (figures[mode, 2 * n][i] - figures["off", 2 * n][i]) - (figures[mode, n][i] - figures["off", n][i])


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


def _children_cpu() -> float:
    """CPU seconds (user + system) of the waited-for children so far: pytest and what it ran, ssh included."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _remove(tree: Path, log: Path) -> None:
    for sub in tree.iterdir():
        for f in sub.iterdir():
            f.unlink()
        sub.rmdir()
    tree.rmdir()
    log.unlink()
