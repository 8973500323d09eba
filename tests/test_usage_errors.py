"""Say it once, say it early: what is wrong with the run itself stops it before any test runs,
and what every device test would repeat is said once in the header and in one line per test."""

from __future__ import annotations

import pytest

from helpers import Suite, summary_outcomes

UNHONOURED = (
    "test_board.py::test_etc: @pytest.mark.jmp_mount(remote='/etc') needs the remote_path fixture: "
    "the marker's own mount is handed to remote_path only (remote_fs is the session's mount of "
    "--jmp-mount-remote); add remote_path to the test's arguments"
)
NO_DEVICE_LINE = (
    "no Jumpstarter device configured; run inside `jmp shell` or pass --jmp-mount-exporter-config, "
    "--jmp-mount-tls-grpc or --jmp-mount-client"
)
NO_DEVICE_HEADER = (
    "jumpstarter mount: device: none configured; the tests that use it error: run inside `jmp shell`, or pass "
    "--jmp-mount-exporter-config PATH, --jmp-mount-tls-grpc HOST:PORT, or --jmp-mount-client ALIAS with "
    "--jmp-mount-selector/--jmp-mount-lease"
)
BOARD = """
import pytest

def test_log(remote_fs):
    assert (remote_fs / "var/log/messages").exists()

@pytest.mark.jmp_mount(remote="/etc")
def test_etc(remote_fs):
    assert (remote_fs / "os-release").exists()
"""


# -- a marker the test's fixtures cannot honour ------------------------------------------------
@pytest.mark.parametrize("workers", [[], ["-n", "2"]], ids=["one process", "xdist"])
def test_a_marker_only_remote_path_can_honour_stops_the_run(suite: Suite, workers: list[str]) -> None:
    suite.pytester.makepyfile(test_board=BOARD, test_other="def test_other(remote_fs):\n    pass\n")
    result = suite.run(*workers)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert summary_outcomes(result.stdout.str()).get("passed", 0) == 0
    assert suite.events("ready") == []  # no test ran: nothing was mounted
    if workers:  # a worker cannot stop the run itself: its collection error, then the controller stops
        assert result.stdout.lines.count(UNHONOURED) == 1, result.stdout.str()
        result.stdout.fnmatch_lines(["*jumpstarter mount: no test run: a @pytest.mark.jmp_mount problem (see ERRORS)*"])
    else:
        assert result.stderr.lines[0] == f"ERROR: {UNHONOURED}"
    suite.assert_clean()


def test_a_marker_on_a_module_spares_its_tests_without_a_device(suite: Suite) -> None:
    """``pytestmark`` reaches every test of the module: one without any device fixture is left alone."""
    etc = suite.device.remote("/etc")
    suite.pytester.makepyfile(
        test_board=f"""
        import pytest

        pytestmark = pytest.mark.jmp_mount(remote="{etc}")

        def test_plain():
            pass

        def test_etc(remote_path):
            assert (remote_path / "os-release").exists()
        """
    )
    suite.run().assert_outcomes(passed=2)
    assert [e["remote"] for e in suite.events("ready")] == [etc]
    suite.assert_clean()


@pytest.mark.parametrize("workers", [[], ["-n", "2"]], ids=["one process", "xdist"])
def test_bad_marker_arguments_are_said_under_xdist_too(pytester: pytest.Pytester, workers: list[str]) -> None:
    pytester.makepyfile(
        test_m="import pytest\n\n@pytest.mark.jmp_mount(colour='red')\ndef test_m(remote_path):\n    pass\n"
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", *workers)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    line = "test_m.py::test_m: @pytest.mark.jmp_mount: unknown argument(s) colour; use remote, options, transport, "
    assert line in (result.stdout.str() if workers else result.stderr.str())
    assert "INTERNALERROR" not in result.stdout.str() + result.stderr.str()


# -- no device configured: once in the header, one line per test ---------------------------------
@pytest.mark.parametrize("workers", [[], ["-n", "2"]], ids=["one process", "xdist"])
def test_no_device_is_said_once_then_one_line_per_test(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, workers: list[str]
) -> None:
    monkeypatch.delenv("JUMPSTARTER_HOST", raising=False)
    pytester.makepyfile(
        test_board="""
        def test_a(remote_fs):
            pass

        def test_b(remote_path):
            pass

        def test_c(device_run):
            pass

        def test_d(jmp_client):
            pass

        def test_plain():
            pass
        """
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", *workers)
    result.assert_outcomes(passed=1, errors=4)
    lines = result.stdout.lines
    assert lines.count(NO_DEVICE_HEADER) == 1
    assert lines.count(NO_DEVICE_LINE) == 4  # each error's whole text: one line, the same for every test
    assert "see first error" not in result.stdout.str()


# -- a missing or unreadable exporter config ---------------------------------------------------
@pytest.mark.parametrize("given", ["cli", "env", "ini"])
def test_a_missing_exporter_config_is_a_usage_error(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, given: str
) -> None:
    monkeypatch.delenv("JUMPSTARTER_HOST", raising=False)
    pytester.makepyfile(test_x="def test_x(remote_fs):\n    pass\n\ndef test_plain():\n    pass\n")
    missing = pytester.path / "missing.yaml"
    args = ["-p", "no:cacheprovider"]
    where = ""
    if given == "cli":
        args.append(f"--jmp-mount-exporter-config={missing}")
    elif given == "env":
        monkeypatch.setenv("JMP_MOUNT_EXPORTER_CONFIG", str(missing))
        where = " (from JMP_MOUNT_EXPORTER_CONFIG)"
    else:
        ini = pytester.makeini("[pytest]\njmp_mount_exporter_config = missing.yaml\n")
        where = f" (from jmp_mount_exporter_config in {ini})"
    for workers in ([], ["-n", "2"]):
        result = pytester.runpytest_subprocess(*args, *workers)
        assert result.ret == pytest.ExitCode.USAGE_ERROR
        assert (
            result.stderr.lines[0]
            == f"ERROR: --jmp-mount-exporter-config {missing}{where}: no such file; check the path"
        )
        assert summary_outcomes(result.stdout.str()) == {}  # no test ran


def test_an_unreadable_exporter_config_is_a_usage_error(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_x="def test_x(remote_fs):\n    pass\n")
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", f"--jmp-mount-exporter-config={pytester.path}")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert (
        result.stderr.lines[0] == f"ERROR: --jmp-mount-exporter-config {pytester.path}: is a directory; check the path"
    )
