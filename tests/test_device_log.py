"""What the device did during a test, in its report: log lines (--jmp-mount-log, --jmp-mount-log-command)
and changed files (--jmp-mount-watch), read through one shell on the loopback device's real sshd."""

from __future__ import annotations

import re
import secrets
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path

import pytest

from helpers import LoopbackDevice, Suite

SUITE_HEAD = """
import os, pathlib, time
import pytest

ROOT = pathlib.Path(os.environ["DEVICE_ROOT"])
LOG = ROOT / os.environ["LOG_REL"]
WATCHED = ROOT / os.environ["WATCH_REL"]

def say(line, log=LOG):
    with open(log, "a") as f:
        f.write(line + "\\n")
"""


@pytest.fixture
def place(suite: Suite, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Path, Path]]:
    """A log file and a watched directory of this test alone on the device: (log, directory)."""
    tag = secrets.token_hex(4)
    log, watched = suite.device.root / f"var/log/app-{tag}.log", suite.device.root / f"data/watched-{tag}"
    log.write_text("line-before-the-run\n")
    watched.mkdir()
    for name in ("old.txt", "keep.txt", "same.txt"):
        (watched / name).write_text(name)
    monkeypatch.setenv("LOG_REL", str(log.relative_to(suite.device.root)))
    monkeypatch.setenv("WATCH_REL", str(watched.relative_to(suite.device.root)))
    yield log, watched
    for child in sorted(watched.rglob("*"), reverse=True):
        child.rmdir() if child.is_dir() else child.unlink()
    watched.rmdir()
    for path in log.parent.glob(f"{log.name}*"):
        path.unlink()


def sections(output: str) -> dict[str, list[str]]:
    """Report sections by title (``---- title ----`` lines), each as its lines; a title may repeat."""
    found: dict[str, list[str]] = {}
    title = None
    for line in output.splitlines():
        head = re.fullmatch(r"-+ ((?:device|jumpstarter|Captured) .+?) -+", line)
        if head:
            title = head.group(1)
            found.setdefault(title, [])
            continue
        if re.match(r"(={3,}|_{3,})", line):
            title = None
        elif title is not None:
            found[title].append(line)
    return found


def device_args(suite: Suite, log: Path, watched: Path, *extra: str) -> list[str]:
    return [
        f"--jmp-mount-log={suite.device.remote(str(log.relative_to(suite.device.root)))}",
        f"--jmp-mount-watch={suite.device.remote(str(watched.relative_to(suite.device.root)))}",
        *extra,
    ]


@pytest.mark.parametrize(
    "how", [(), ("--jmp-mount-scope=function", "--jmp-mount-transport=forward")], ids=["session-auto", "function-fwd"]
)
def test_a_failed_test_gets_exactly_its_own_lines_and_changes(
    suite: Suite, place: tuple[Path, Path], how: tuple[str, ...]
) -> None:
    log, watched = place
    suite.pytester.makepyfile(
        SUITE_HEAD
        + """
@pytest.fixture
def noisy():
    say("setup-of-b")
    yield
    say("teardown-of-b")
    (WATCHED / "made-in-teardown.txt").write_text("t")

def test_a_passes(remote_fs):
    say("line-of-a")
    (WATCHED / "a.txt").write_text("a")

def test_b_fails(remote_fs, noisy):
    say("line-of-b")
    (WATCHED / "b.txt").write_text("b")
    (WATCHED / "sub").mkdir()
    (WATCHED / "sub" / "odd\\nname").write_text("x")
    (WATCHED / "old.txt").unlink()
    (WATCHED / "keep.txt").write_text("keep, but longer")
    assert False, "the device misbehaved"

def test_c_passes(remote_fs):
    say("line-of-c")
    (WATCHED / "c.txt").write_text("c")
"""
    )
    result = suite.run(*device_args(suite, log, watched, *how))
    result.assert_outcomes(passed=2, failed=1)
    found = sections(result.stdout.str())
    log_title = f"device log: {suite.device.remote(str(log.relative_to(suite.device.root)))}"
    files_title = f"device files changed: {suite.device.remote(str(watched.relative_to(suite.device.root)))}"
    assert found[log_title] == ["setup-of-b", "line-of-b"]
    assert found[f"{log_title} (teardown)"] == ["teardown-of-b"]
    assert found[files_title] == ["+ b.txt", "~ keep.txt (size 8 -> 16)", "- old.txt", "+ sub/", "+ sub/odd\\nname"]
    assert found[f"{files_title} (teardown)"] == ["+ made-in-teardown.txt"]
    assert len([t for t in found if t.startswith("device ")]) == 4, found.keys()  # none for the passing tests
    suite.assert_clean()
