"""Quiet by default: one copy of each Jumpstarter log line in a failure report, worker ids on the
``-v`` mount lines under xdist, and the example suite (``make demo``) printing each mount once."""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from helpers import LoopbackDevice, Suite, chrooted_device

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
MOUNT_LINE = re.compile(r"^jumpstarter mount: (?:(gw\d+) )?(mounted|unmounted) (\S+) \((\w[\w ]*)\) in \d+ ms$")


def test_a_jumpstarter_log_line_appears_once_in_a_failure_report(suite: Suite) -> None:
    """``--jmp-mount-insecure`` makes the mount client log why ``auto`` took the port forward."""
    suite.pytester.makepyfile(test_board="def test_fails(remote_fs):\n    assert False, 'on purpose'\n")
    result = suite.run("--jmp-mount-insecure")
    result.assert_outcomes(failed=1)
    out = result.stdout.str()
    assert out.count("transport auto: using the port forward (host key NOT verified") == 1, out
    result.stdout.fnmatch_lines(
        ["*Captured log setup*", "INFO *SSHMountClient*transport auto: using the port forward*"]
    )
    assert "Captured stdout setup" not in out  # the Rich copy is gone
    suite.assert_clean()


def test_mount_lines_name_the_xdist_worker(suite: Suite) -> None:
    suite.pytester.makepyfile(
        test_board="""
        import pytest

        @pytest.mark.parametrize("n", range(4))
        def test_own_mount(remote_path, n):
            assert remote_path.is_dir()
        """
    )
    result = suite.run("-n", "2", "-v", "--jmp-mount-scope=function")
    result.assert_outcomes(passed=4)
    lines = [m.groups() for m in map(MOUNT_LINE.match, result.outlines + result.errlines) if m]
    assert len(lines) == 8, result.stdout.str()  # a mount and an unmount per test, each said once
    assert all(worker in ("gw0", "gw1") for worker, *_ in lines), lines
    suite.assert_clean()


def test_single_process_mount_lines_name_no_worker(suite: Suite) -> None:
    suite.pytester.makepyfile(test_board="def test_mounts(remote_fs):\n    pass\n")
    result = suite.run("-v")
    result.assert_outcomes(passed=1)
    lines = [m.groups() for m in map(MOUNT_LINE.match, result.outlines) if m]
    assert [(worker, done) for worker, done, *_ in lines] == [(None, "mounted"), (None, "unmounted")]
    suite.assert_clean()


# -- the example suite, as `make demo` runs it -----------------------------------------------------
@pytest.fixture(scope="module")
def chrooted(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LoopbackDevice]:
    """The examples use device paths (/etc, /data): a chrooted loopback device, as ``make demo`` starts."""
    with chrooted_device(tmp_path_factory, "the example suite's device paths") as dev:
        yield dev


def test_the_example_suite_says_each_mount_once(
    pytester: pytest.Pytester, chrooted: LoopbackDevice, mount_base: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("JUMPSTARTER_HOST", raising=False)
    chrooted.exporter_config(pytester.path / "exporter.yaml")
    for name in ("conftest.py", "test_device.py"):
        shutil.copy(EXAMPLES / name, pytester.path / name)
    suite = Suite(pytester, chrooted, pytester.path / "mounts.jsonl", mount_base / f"examples-{os.getpid()}")
    result = suite.run("-v", "-s", remote="/var/log")  # as scripts/demo.py runs it
    result.assert_outcomes(passed=7)
    said = [line for line in result.outlines if "mounted" in line or "unmounting" in line]
    events = [(m[2], m[3]) for m in map(MOUNT_LINE.match, said) if m]
    assert len(events) == len(said), said  # nothing but the plugin's own -v lines
    assert sorted(events) == sorted(
        [(done, path) for path in ("/var/log", "/etc", "/etc", "/data") for done in ("mounted", "unmounted")]
    ), said
    suite.assert_clean()
