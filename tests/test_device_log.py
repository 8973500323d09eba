"""What the device did during a test, in its report: log lines (--jmp-mount-log, --jmp-mount-log-command)
and changed files (--jmp-mount-watch), read through one shell on the loopback device's real sshd."""

from __future__ import annotations

import re
import secrets
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path

import pytest

from helpers import Suite, live_processes_mentioning

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
        if re.match(r"(={3,}|_{3,}|jumpstarter mount: )", line):
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
    assert live_processes_mentioning(f" -p {suite.device.port} ", names=("ssh",)) == []  # the shell ended
    suite.assert_clean()


def test_junit_xml_names_files_of_the_whole_test_and_keep_all_adds_passing_tests(
    suite: Suite, place: tuple[Path, Path]
) -> None:
    log, watched = place
    suite.pytester.makepyfile(
        SUITE_HEAD
        + """
@pytest.fixture
def noisy():
    say("setup-line")
    yield
    say("teardown-line")

def test_passes(jmp_mount_client):
    say("passing-line")

def test_fails(jmp_mount_client, noisy):
    say("failing-line")
    (WATCHED / "new.txt").write_text("n")
    assert False
"""
    )
    for keep in ("failed", "all"):
        xml = suite.pytester.path / f"junit-{keep}.xml"
        result = suite.run(
            *device_args(suite, log, watched, f"--jmp-mount-log-keep={keep}", f"--junitxml={xml}", "-rP")
        )
        result.assert_outcomes(passed=1, failed=1)
        cases = {case.get("name"): case for case in ET.parse(xml).iter("testcase")}
        props = {
            name: [(p.get("name"), p.get("value", "")) for p in case.iter("property")] for name, case in cases.items()
        }
        logs = {name: [Path(v) for k, v in found if k == "jmp_mount_device_log"] for name, found in props.items()}
        changed = {
            name: [Path(v) for k, v in found if k == "jmp_mount_device_files_changed"] for name, found in props.items()
        }
        assert [p.read_text() for p in logs["test_fails"]] == ["setup-line\nfailing-line\nteardown-line\n"]
        assert [p.read_text() for p in changed["test_fails"]] == ["+ new.txt\n"]
        if keep == "all":
            assert [p.read_text() for p in logs["test_passes"]] == ["passing-line\n"]
            assert [p.read_text() for p in changed["test_passes"]] == ["(no changes)\n"]
            passing = sections(result.stdout.str().split("PASSES")[1])  # -rP: the passing test's sections
            title = f"device log: {suite.device.remote(str(log.relative_to(suite.device.root)))} (setup to teardown)"
            assert passing[title] == ["passing-line"]
        else:
            assert props["test_passes"] == []
            assert "passing-line" not in result.stdout.str()
        (watched / "new.txt").unlink()
    suite.assert_clean()


def test_rotation_truncation_a_new_file_and_the_cap(suite: Suite, place: tuple[Path, Path]) -> None:
    log, watched = place
    late = log.with_name(log.name + ".late")
    suite.pytester.makepyfile(
        SUITE_HEAD
        + """
LATE = LOG.with_name(LOG.name + ".late")

def test_rotated(jmp_mount_client):
    say("old-file-line")
    LOG.rename(LOG.with_name(LOG.name + ".1"))
    say("new-file-line")
    assert False

def test_fill(jmp_mount_client):
    say("y" * 200)

def test_truncated(jmp_mount_client):  # truncated to fewer bytes than it had at the test's start
    say("x" * 100)
    with open(LOG, "w") as f:
        f.write("after-truncation\\n")
    assert False

def test_appears(jmp_mount_client):
    say("first-line-of-a-new-file", LATE)
    assert False

def test_capped(jmp_mount_client):
    for i in range(40000):
        say(f"bulk line {i:06d}")  # 18 bytes each: 720,000 in all
    assert False
"""
    )
    result = suite.run(
        *device_args(
            suite, log, watched, f"--jmp-mount-log={suite.device.remote(str(late.relative_to(suite.device.root)))}"
        )
    )
    result.assert_outcomes(passed=1, failed=4)
    out = result.stdout.str()
    title = f"device log: {suite.device.remote(str(log.relative_to(suite.device.root)))}"
    late_title = f"device log: {suite.device.remote(str(late.relative_to(suite.device.root)))}"
    by_test = {
        name: sections(part)
        for name, part in zip(
            re.findall(r"_{3,} (test_\w+) _{3,}", out), re.split(r"_{3,} test_\w+ _{3,}", out)[1:], strict=True
        )
    }
    rotated = by_test["test_rotated"][title]
    assert rotated == ["(rotated: a new or truncated file, shown from its start)", "new-file-line"]
    assert by_test["test_truncated"][title] == [
        "(rotated: a new or truncated file, shown from its start)",
        "after-truncation",
    ]
    assert by_test["test_appears"][late_title] == [
        "(the file appeared during the test: from its start)",
        "first-line-of-a-new-file",
    ]
    assert by_test["test_rotated"][late_title] == ["(the file does not exist on the device)"]
    capped = by_test["test_capped"][title]
    assert capped[0].startswith("(cap of 256 KiB per test reached: the first ")
    assert capped[-1] == "bulk line 039999"
    assert len("\n".join(capped[1:])) <= 256 * 1024
    numbers = [int(line.split()[-1]) for line in capped[1:]]
    assert numbers == list(range(numbers[0], 40000)), "the lines kept are the last ones, whole and in order"
    suite.assert_clean()


def test_log_command_reads_since_the_tests_start_and_says_when_it_is_missing(
    suite: Suite, place: tuple[Path, Path]
) -> None:
    log, _ = place
    journal = suite.device.remote(str(log.relative_to(suite.device.root)))
    since = (
        f"awk -v since={{start}} '$1 + 0 >= since {{print $2}}' {journal}"  # a journal with time stamps, as journalctl
    )
    suite.pytester.makepyfile(
        SUITE_HEAD
        + """
def stamp(text):
    say(f"{time.time():.6f} {text}")

def test_earlier(jmp_mount_client):
    stamp("earlier-entry")

def test_fails(jmp_mount_client):
    stamp("entry-of-this-test")
    assert False
"""
    )
    missing = "no-such-journal-tool --since @{start}"
    result = suite.run(f"--jmp-mount-log-command={since}", f"--jmp-mount-log-command={missing}")
    result.assert_outcomes(passed=1, failed=1)
    found = sections(result.stdout.str())
    assert found[f"device log: {since}"] == ["entry-of-this-test"]
    assert found[f"device log: {missing}"][0] == "(the command is missing on the device: exit 127)"
    assert "not found" in "\n".join(found[f"device log: {missing}"][1:])
    suite.assert_clean()


def test_each_xdist_worker_reports_its_own_tests(suite: Suite, place: tuple[Path, Path]) -> None:
    log, _ = place
    per_worker = {w: log.with_name(f"{log.name}.{w}") for w in ("gw0", "gw1")}
    for path in per_worker.values():
        path.write_text("line-before-the-run\n")
    suite.pytester.makepyfile(
        SUITE_HEAD
        + """
import os

@pytest.mark.parametrize("n", range(6))
def test_fails(jmp_mount_client, n):
    own = LOG.with_name(LOG.name + "." + os.environ["PYTEST_XDIST_WORKER"])
    say(f"line-of-{n}", own)
    say(f"second-line-of-{n}", own)
    assert False
"""
    )
    logs = [
        f"--jmp-mount-log={suite.device.remote(str(p.relative_to(suite.device.root)))}" for p in per_worker.values()
    ]
    result = suite.run("-n", "2", *logs)
    result.assert_outcomes(failed=6)
    out = result.stdout.str()
    for name, part in zip(
        re.findall(r"_{3,} (test_fails\[\d\]) _{3,}", out),
        re.split(r"_{3,} test_fails\[\d\] _{3,}", out)[1:],
        strict=True,
    ):
        n = name[-2]
        found = sections(part)
        own = [t for t, lines in found.items() if lines == [f"line-of-{n}", f"second-line-of-{n}"]]
        assert len(own) == 1, (name, found)  # the other worker's file may hold a test running meanwhile
    suite.assert_clean()


@pytest.mark.parametrize("transport", ["forward", "direct"])
def test_a_device_gone_mid_test_is_a_note_not_a_hang(
    own_device: Suite, monkeypatch: pytest.MonkeyPatch, transport: str
) -> None:
    suite, dev = own_device, own_device.device
    assert dev.process is not None
    sshd = [dev.process.pid]
    monkeypatch.setenv("DEVICE_ROOT", str(dev.root))
    suite.pytester.makepyfile(
        """
        import os, signal

        def say(line):
            with open(os.path.join(os.environ["DEVICE_ROOT"], "var/log/messages"), "a") as f:
                f.write(line + "\\n")

        def descendants(pid):
            try:
                with open(f"/proc/{pid}/task/{pid}/children") as f:
                    children = [int(c) for c in f.read().split()]
            except OSError:
                return []
            return [d for c in children for d in (c, *descendants(c))]

        def test_device_dies(jmp_mount_client):
            say("last words")
            sshd = int(os.environ["SSHD_PID"])
            for pid in [*descendants(sshd), sshd]:  # the device's sshd and every session it serves
                os.kill(pid, signal.SIGKILL)
            assert False, "the device is gone"

        def test_next(jmp_mount_client):
            assert False, "still gone"
        """
    )
    monkeypatch.setenv("SSHD_PID", str(sshd[0]))
    result = suite.run(f"--jmp-mount-log={dev.remote('/var/log/messages')}", f"--jmp-mount-transport={transport}")
    result.assert_outcomes(failed=2)  # no error: the device's client still closes in order
    out = result.stdout.str()
    dies, then = (sections(part) for part in re.split(r"_{3,} test_next _{3,}", out.split(" test_device_dies ")[1]))
    title = f"device log: {dev.remote('/var/log/messages')}"
    assert len(dies[title]) == 1 and dies[title][0].startswith("(not read: the device could not be reached: ")
    assert then[title][0].startswith("(not read at the test's start: the device could not be reached: ")
    assert "Traceback" not in out and "INTERNALERROR" not in out and "Exception ignored" not in out
    suite.assert_clean()


def test_help_lists_the_options_with_values_for_metavars(pytester: pytest.Pytester) -> None:
    out = pytester.runpytest_subprocess("--help").stdout.str()
    for usage in (
        "--jmp-mount-log=DEVICE_PATH",
        "--jmp-mount-log-command=CMD",
        "--jmp-mount-log-keep=failed|all",
        "--jmp-mount-watch=DEVICE_DIR",
    ):
        assert usage in out
    for ini in ("jmp_mount_log ", "jmp_mount_log_command ", "jmp_mount_log_keep ", "jmp_mount_watch "):
        assert ini in out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--jmp-mount-log=var/log/messages"], "--jmp-mount-log 'var/log/messages': give the absolute path"),
        (["--jmp-mount-watch=data"], "--jmp-mount-watch 'data': give the absolute path of a device directory"),
        (["--jmp-mount-log-keep=passed"], "--jmp-mount-log-keep must be one of failed, all, got 'passed'"),
    ],
)
def test_bad_values_are_usage_errors(pytester: pytest.Pytester, args: list[str], message: str) -> None:
    pytester.makepyfile(test_any="def test_any(): pass\n")
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", *args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert message in result.stderr.str()


def test_bad_marker_log_is_a_usage_error(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("import pytest\n\n@pytest.mark.jmp_mount(log='/var/log/x')\ndef test_m():\n    pass\n")
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "log must be a list of absolute device paths" in result.stderr.str()


def test_sources_from_ini_lines_environment_and_marker(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytester.makeini("[pytest]\njmp_mount_log =\n    /var/log/a\n    /var/log/b\njmp_mount_log_keep = all\n")
    monkeypatch.setenv("JMP_MOUNT_WATCH", "/data '/with space'")
    monkeypatch.setenv("JMP_MOUNT_LOG_COMMAND", "'journalctl --since @{start}' dmesg")
    monkeypatch.setenv("JMP_MOUNT_TLS_GRPC", "127.0.0.1:9")  # a device source (never dialled: no test needs it)
    pytester.makeconftest(
        """
        def pytest_collection_finish(session):
            (item,) = session.items
            logs = session.config.pluginmanager.get_plugin("jumpstarter_mount_device_logs")
            s = logs.sources(item)
            print("KEEP_ALL", logs.context.keep_all)
            print("LOGS", s.logs)
            print("COMMANDS", s.commands)
            print("WATCH", s.watch)
            print("NEEDS_CLIENT", "jmp_mount_client" in item.fixturenames)
        """
    )
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.jmp_mount(log=["/var/log/c"], watch=["/etc"])
        def test_sources():
            pass
        """
    )
    out = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--collect-only", "-s").stdout.str()
    assert "KEEP_ALL True" in out
    assert "LOGS ('/var/log/a', '/var/log/b', '/var/log/c')" in out
    assert "COMMANDS ('journalctl --since @{start}', 'dmesg')" in out
    assert "WATCH ('/data', '/with space', '/etc')" in out
    assert "NEEDS_CLIENT True" in out  # the marker's log needs the device
