"""pytest's conventions: ini paths, unknown ini keys, YAML errors, -v lines, per-run artifact folders."""

from __future__ import annotations

import time

import pytest

from helpers import Suite

SHOW_SETTINGS = """
from pytest_jumpstarter_mount.manager import manager_key

def test_settings(request):
    s = request.config.stash[manager_key].settings
    print("DIR", s.dir, "ARTIFACTS", s.artifacts, "CONFIG", s.exporter_config)
"""


def test_ini_paths_are_relative_to_the_ini_file(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    """Paths in the ini file resolve against its directory; from the CLI or env, against the current directory."""
    project = pytester.mkdir("project")
    (project / "pytest.ini").write_text(
        "[pytest]\njmp_mount_dir = mounts\njmp_mount_artifacts = out/art\njmp_mount_exporter_config = ../exp.yaml\n"
    )
    (project / "test_s.py").write_text(SHOW_SETTINGS)
    (pytester.path / "exp.yaml").write_text("")  # a configured exporter config must exist (a usage error otherwise)
    elsewhere = pytester.mkdir("elsewhere")
    monkeypatch.chdir(elsewhere)
    result = pytester.runpytest_subprocess(
        "-s", "-p", "no:cacheprovider", "-c", str(project / "pytest.ini"), str(project)
    )
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(
        [f"*DIR {project / 'mounts'} ARTIFACTS {project / 'out/art'} CONFIG {project / '../exp.yaml'}"]
    )

    monkeypatch.setenv("JMP_MOUNT_ARTIFACTS", "from-env")
    result = pytester.runpytest_subprocess(
        "-s", "-p", "no:cacheprovider", "-c", str(project / "pytest.ini"), "--jmp-mount-dir=from-cli", str(project)
    )
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*DIR from-cli ARTIFACTS from-env CONFIG *"])


def test_unknown_ini_key_names_the_closest(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\njmp_mount_remot = /var/log\n")
    pytester.makepyfile(test_any="def test_any(): pass\n")
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*unknown ini key 'jmp_mount_remot' in *.ini; did you mean 'jmp_mount_remote'?*"])


HEAD = "apiVersion: jumpstarter.dev/v1alpha1\nkind: ExporterConfig\nmetadata: {namespace: default, name: x}\n"
HEAD += 'endpoint: ""\n'


@pytest.mark.parametrize(
    ("config", "message"),
    [
        (
            "apiVersion: v1\nexport:\n  mount: [this is: not, {valid\n",
            "line 4, column 1: while parsing a flow mapping*",
        ),
        (f"{HEAD}export: 7\n", "line 5, column 9: export: *"),
        (f"{HEAD}export:\n  mount:\n    type: x.Y\n    children: 7\n", "line 8, column 15: export.mount.children: *"),
        (f"{HEAD}tls:\n  ca: 7\nexport: {{}}\n", "line 6, column 7: tls.ca: Input should be a valid string"),
        ("apiVersion: jumpstarter.dev/v1alpha1\nexport: {}\n", "line 1, column 1: metadata: Field required*"),
    ],
)
def test_exporter_yaml_errors_say_where(pytester: pytest.Pytester, config: str, message: str) -> None:
    path = pytester.path / "exporter.yaml"
    path.write_text(config)
    pytester.makepyfile(test_x="def test_x(remote_fs):\n    pass\n")
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", f"--jmp-mount-exporter-config={path}")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines([f"--jmp-mount-exporter-config {path} is not a valid exporter config: {message}"])
    assert "Traceback" not in result.stdout.str()


def test_verbose_shows_each_mount_and_unmount(suite: Suite) -> None:
    """-v: a line per mount and per unmount, with device path, transport and milliseconds; -q and default: none."""
    etc = suite.device.remote("/etc")
    suite.pytester.makepyfile(
        test_v=f"""
        import pytest

        def test_session_mount(remote_fs):
            pass

        @pytest.mark.jmp_mount(remote={etc!r}, direct=False)
        def test_own_mount(remote_path):
            pass
        """
    )
    logs = suite.device.remote("/var/log")
    result = suite.run("-v", remote="/var/log")
    result.assert_outcomes(passed=2)
    lines = [line for line in result.stdout.lines if line.startswith("jumpstarter mount: ") and " in " in line]
    assert len(lines) == 4, result.stdout.str()
    result.stdout.fnmatch_lines(
        [
            f"jumpstarter mount: mounted {logs} (direct) in * ms",
            f"jumpstarter mount: mounted {etc} (port forward) in * ms",
            f"jumpstarter mount: unmounted {etc} (port forward) in * ms",
            f"jumpstarter mount: unmounted {logs} (direct) in * ms",
        ]
    )
    for quiet in ([], ["-q"]):
        result = suite.run(*quiet, remote="/var/log")
        result.assert_outcomes(passed=2)
        assert "jumpstarter mount: mounted" not in result.stdout.str()
        assert "jumpstarter mount: unmounted" not in result.stdout.str()
    suite.assert_clean()


def test_artifacts_per_run_with_retention(suite: Suite) -> None:
    """Each run collects into a fresh folder that the summary names; only the newest N runs are kept."""
    logs = suite.device.remote("/var/log")
    suite.pytester.makepyfile(test_f="def test_fails(remote_fs):\n    assert False\n")
    base = suite.pytester.path / "jmp-artifacts"
    stranger = base / "kept-because-not-a-run"
    stranger.mkdir(parents=True)
    folders = []
    for _ in range(4):
        result = suite.run(f"--jmp-mount-collect={logs}/messages", "--jmp-mount-artifacts-retention=2")
        result.assert_outcomes(failed=1)
        folder = sorted(p for p in base.iterdir() if p != stranger)[-1]
        result.stdout.fnmatch_lines([f"jumpstarter mount: device files of failed tests in {folder}"])
        copied = folder / "test_f.py_test_fails" / logs.lstrip("/") / "messages"
        assert copied.read_text() == (suite.device.root / "var/log/messages").read_text()
        folders.append(folder)
        time.sleep(1.0)  # run folders are named by the second they start in
    assert len(set(folders)) == 4
    assert sorted(base.iterdir()) == sorted([stranger, *folders[-2:]])

    result = suite.run(f"--jmp-mount-collect={logs}/messages", "-n", "2")  # default retention: 3
    result.assert_outcomes(failed=1)
    newest = sorted(p for p in base.iterdir() if p != stranger)[-1]
    assert newest not in folders
    # the controller names its folder only if the worker collected into it
    result.stdout.fnmatch_lines([f"jumpstarter mount: device files of failed tests in {newest}"])
    assert len([p for p in base.iterdir() if p != stranger]) == 3
    suite.assert_clean()


def test_prune_never_removes_a_folder_with_a_mount(suite: Suite, client) -> None:
    """A run folder with a mountpoint in it is left alone (and the mounted device files stay)."""
    from pytest_jumpstarter_mount.runstate.artifactruns import prune

    base = suite.pytester.path / "jmp-artifacts"
    old, new = base / "20000101-000000-aaaaaa", base / "20000101-000001-bbbbbb"
    (old / "test_x").mkdir(parents=True)
    new.mkdir()
    with client.mounted(old / "test_x", remote_path=suite.device.remote("/var/log")) as mount:
        assert prune(base, keep=1) == []
        assert (mount / "messages").exists()
    assert prune(base, keep=1) == [old]
    assert sorted(base.iterdir()) == [new]
