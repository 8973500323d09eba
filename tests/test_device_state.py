"""The device-side readings of logs and watched directories, run by a real local shell: dash (GNU find and
stat) and BusyBox (no ``find -printf``, no ``date +%N``), as on embedded devices. No ssh: the shell is the
device; the same scripts run through ssh in test_device_log.py."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from jumpstarter_driver_ssh_mount.devicefiles.devicechanges import Sources
from jumpstarter_driver_ssh_mount.devicefiles.devicewatch import DeviceWatch
from jumpstarter_driver_ssh_mount.ssh.remote_shell import RemoteShell

BUSYBOX_APPLETS = ("sh", "find", "stat", "head", "tail", "ls", "date", "cat", "echo", "sleep", "yes")


@pytest.fixture(params=["dash", "busybox"])
def shell_argv(request: pytest.FixtureRequest, tmp_path: Path) -> list[str]:
    """A local shell standing in for the device: ``sh``, or BusyBox with nothing but its own applets on PATH."""
    if request.param == "dash":
        return ["sh"]
    busybox = shutil.which("busybox")
    if busybox is None:
        pytest.skip("busybox is not installed")
    applets = tmp_path / "busybox-bin"
    applets.mkdir()
    for name in BUSYBOX_APPLETS:
        (applets / name).symlink_to(busybox)
    return ["env", f"PATH={applets}", str(applets / "sh")]


@pytest.fixture
def watcher(shell_argv: list[str]) -> Iterator[DeviceWatch]:
    opened: list[RemoteShell] = []

    def opener(script: bytes, ready: bytes, timeout: float) -> RemoteShell:
        shell = RemoteShell(shell_argv)
        opened.append(shell)
        shell.exchange(script, ready, timeout=timeout, max_bytes=1 << 16)
        return shell

    watch = DeviceWatch(opener, cap=1000, timeout=5)
    yield watch
    watch.close()
    assert all(not shell.alive for shell in opened), "a shell outlived its watch"


def texts(sections: list) -> dict[str, str]:
    return {s.title.split(": ", 1)[1]: s.text for s in sections}


def test_log_lines_rotation_appearance_and_the_cap(watcher: DeviceWatch, tmp_path: Path) -> None:
    log, late = tmp_path / "app.log", tmp_path / "late.log"
    log.write_text("before\n")
    test = watcher.begin(Sources(logs=(str(log), str(late))))
    with open(log, "a") as f:
        f.write("one\ntwo\n")
    first = texts(watcher.read(test))
    assert first[str(log)] == "one\ntwo"
    assert first[str(late)] == "(the file does not exist on the device)"
    log.rename(tmp_path / "app.log.1")
    log.write_text("fresh\n")
    late.write_text("late\n")
    second = texts(watcher.read(test))
    assert second[str(log)] == "(rotated: a new or truncated file, shown from its start)\nfresh"
    assert second[str(late)] == "(the file appeared during the test: from its start)\nlate"
    with open(log, "a") as f:
        f.writelines(f"line {i:04d}\n" for i in range(200))  # 2000 bytes: more than the cap (1000) left
    third = texts(watcher.read(test))[str(log)].splitlines()
    assert third[0].startswith("(cap of 0.976562 KiB per test reached: the first ")
    assert third[-1] == "line 0199" and all(line.startswith("line ") and len(line) == 9 for line in third[1:])
    assert texts(watcher.read(test))[str(log)] == "(nothing appended)"
    with open(log, "a") as f:
        f.write("x" * 2000 + "\n")
    assert texts(watcher.read(test))[str(log)] == "(cap of 0.976562 KiB per test reached earlier: nothing more shown)"
    whole = texts(test.whole())[str(log)]
    assert whole.startswith("one\ntwo\n(rotated") and "(nothing appended)" not in whole


def test_changed_files_with_odd_names(watcher: DeviceWatch, tmp_path: Path) -> None:
    root = tmp_path / "w"
    (root / "dir").mkdir(parents=True)
    for name in ("same", "grows", "touched", "chmod", "goes", "odd\nname"):
        (root / name).write_text("x")
    os.utime(root / "touched", (1_000_000_000, 1_000_000_000))
    test = watcher.begin(Sources(watch=(str(root), str(tmp_path / "none"))))
    (root / "grows").write_text("xyz")
    os.utime(root / "touched")
    (root / "chmod").chmod(0o600)
    (root / "goes").unlink()
    (root / "odd\nname").unlink()
    (root / "dir" / "new file").write_text("n")
    (root / "new\ndir").mkdir()
    changed = texts(watcher.read(test))
    assert changed[str(root)].splitlines() == [
        "~ chmod (mode 644 -> 600)",
        "+ dir/new file",
        "- goes",
        "~ grows (size 1 -> 3)",
        "+ new\\ndir/",
        "- odd\\nname",
        "~ touched (mtime)",
    ]
    assert changed[str(tmp_path / "none")] == f"({tmp_path / 'none'} does not exist on the device)"
    assert texts(watcher.read(test))[str(root)] == "(no changes)"


def test_log_commands_get_the_start_and_a_missing_one_says_so(watcher: DeviceWatch) -> None:
    test = watcher.begin(Sources(commands=("echo since {start}", "no-such-tool-xyz --since @{start}", "yes")))
    start = test.start.clock
    assert start is not None and float(start) > 1_600_000_000
    since, missing, endless = texts(watcher.read(test)).values()
    assert since == f"since {start}"
    assert missing.splitlines()[0] == "(the command is missing on the device: exit 127)"
    assert endless.splitlines()[0] == "(cap of 0.976562 KiB per test reached: the rest of its output left out)"
    assert len(endless) < 1100


def test_a_hanging_command_costs_one_timeout_then_the_shell_is_opened_again(watcher: DeviceWatch) -> None:
    watcher.timeout = 1
    test = watcher.begin(Sources(commands=("sleep 30",)))
    (text,) = texts(watcher.read(test)).values()
    assert text == "(not read: the device did not answer within 1s)"
    assert watcher.shell is None
    quick = watcher.begin(Sources(commands=("echo back",)))
    assert list(texts(watcher.read(quick)).values()) == ["back"]


def test_a_garbled_or_hostile_reply_leaves_notes_not_errors() -> None:
    from jumpstarter_driver_ssh_mount.devicefiles.devicechanges import WatchedTest
    from jumpstarter_driver_ssh_mount.devicefiles.devicestate import LogRequest, Reading, parse_reading

    nonce = "00ff"
    garbage = (
        b"\n00ff BEGIN\nnoise\n00ff LOG x y z\n\n00ff WATCH zero gnu\n\x00\x00junk\n00ff RC 0 abc\n"
        b"\n00ff STATS\nnot a stat line\n99 bad /x\n\n00ff CLOCK\nlate\n\n00ff END\n"
    )
    reading = parse_reading(garbage, nonce, logs=[LogRequest("/var/log/x")])
    assert reading.clock is None and reading.commands == {} and reading.listings == {}
    assert reading.logs[0].now.ino is None  # no usable state: as a file that does not exist
    test = WatchedTest(Sources(logs=("/var/log/x",), commands=("dmesg",), watch=("/etc",)), Reading())
    texts = [s.text for s in test.advance(Reading())]
    assert texts == ["(not read: the device's answer had no section for it)"] * 3
