"""The pytest plugin, run as a user would (pytester subprocesses) against the real sshd device."""

from __future__ import annotations

import signal
import subprocess
import textwrap
from pathlib import Path

import pytest

from helpers import (
    COUNTING_CONFTEST,
    SLEEPING_TEST,
    LoopbackDevice,
    StandaloneExporter,
    Suite,
    env_with_jmp,
    keygen,
    make_driver,
    sshfs_mounts,
    start_pytest,
    summary_outcomes,
    wait_until,
)


def test_remote_fs_session_scope_reads_device(suite: Suite) -> None:
    suite.pytester.makepyfile(
        test_device="""
        import os
        from pathlib import Path

        def test_messages(remote_fs):
            assert (remote_fs / "messages").read_text().startswith("boot: line 1")

        def test_same_mount(remote_fs, remote_path):
            assert remote_path == remote_fs.mountpoint
            assert sorted(os.listdir(remote_path)) == ["app", "messages"]

        def test_write_reaches_device(remote_path):
            (remote_path / "app" / "from-test.log").write_text("written by pytest")
            device = Path(os.environ["DEVICE_ROOT"], "var/log/app/from-test.log")
            assert device.read_text() == "written by pytest"
            device.unlink()
        """
    )
    result = suite.run("-v", remote="/var/log")
    result.assert_outcomes(passed=3)
    assert len(suite.events("ready")) == 1  # one session mount for all three tests
    assert len(suite.events("teardown")) == 1
    assert suite.events("ready")[0]["remote"] == suite.device.remote("/var/log")
    result.stdout.fnmatch_lines(["jumpstarter mount: device: exporter config *; remote: *var/log; scope: session"])
    suite.assert_clean()


@pytest.mark.parametrize(("scope", "mounts"), [("function", 3), ("module", 2), ("session", 1)])
def test_scopes(suite: Suite, scope: str, mounts: int) -> None:
    suite.pytester.makepyfile(
        test_a="def test_1(remote_fs): pass\ndef test_2(remote_fs): pass\n",
        test_b="def test_3(remote_fs): pass\n",
    )
    suite.run(f"--jmp-mount-scope={scope}").assert_outcomes(passed=3)
    assert len(suite.events("ready")) == mounts
    assert len(suite.events("teardown")) == mounts
    suite.assert_clean()


def test_marker_gives_own_mount(suite: Suite) -> None:
    suite.pytester.makepyfile(
        test_marker=f"""
        import pytest
        from pytest_jumpstarter_mount.manager import item_mounts_key

        @pytest.mark.jmp_mount(remote={suite.device.remote("/etc")!r}, options=["cache=no"])
        def test_etc(remote_path, remote_fs):
            assert (remote_path / "os-release").exists()
            assert remote_path != remote_fs.mountpoint
            cmdline = open(f"/proc/{{remote_fs.pid}}/cmdline", "rb").read().split(b"\\0")
            assert b"cache=no" not in cmdline  # only the marked mount got it

        @pytest.mark.jmp_mount(remote={suite.device.remote("/var/log")!r}, options=["cache=no"])
        def test_options_on_real_command_line(remote_path, request):
            (mount,) = request.node.stash[item_mounts_key]
            cmdline = open(f"/proc/{{mount.pid}}/cmdline", "rb").read().split(b"\\0")
            assert mount.remote_path.endswith("/var/log")
            assert b"cache=no" in cmdline and b"reconnect" in cmdline

        def test_unmarked(remote_path):
            assert (remote_path / "etc" / "os-release").exists()
        """
    )
    suite.run("--jmp-mount-option=reconnect").assert_outcomes(passed=3)
    ready = suite.events("ready")
    assert len(ready) == 3  # the session mount, and one per marked test
    assert sorted(e["remote"] for e in ready) == sorted(
        [suite.device.remote("/"), suite.device.remote("/etc"), suite.device.remote("/var/log")]
    )
    suite.assert_clean()


def test_options_hook_and_direct(suite: Suite) -> None:
    suite.pytester.makeconftest(
        COUNTING_CONFTEST
        + """
def pytest_jmp_mount_options(config, remote_path, options):
    options.append("ServerAliveInterval=7")
"""
    )
    suite.pytester.makepyfile(
        test_opts="""
        def test_cmdline(remote_fs):
            assert remote_fs.direct
            cmdline = open(f"/proc/{remote_fs.pid}/cmdline", "rb").read().split(b"\\0")
            assert b"ServerAliveInterval=7" in cmdline
        """
    )
    suite.run("--jmp-mount-direct").assert_outcomes(passed=1)
    suite.assert_clean()


def test_failure_report_section_and_cleanup(suite: Suite) -> None:
    suite.pytester.makepyfile(
        test_fail="""
        import pytest

        def test_fails(remote_fs):
            assert (remote_fs / "etc/os-release").read_text() == "something else"

        @pytest.fixture
        def broken(remote_fs):
            raise RuntimeError("setup broke")

        def test_setup_error(broken):
            pass
        """
    )
    result = suite.run()
    result.assert_outcomes(failed=1, errors=1)
    result.stdout.fnmatch_lines(["*- jumpstarter mount -*", "mountpoint:*", "remote:*", "still mounted: yes*"])
    assert "PRIVATE KEY" not in result.stdout.str() + result.stderr.str()
    assert len(suite.events("teardown")) == 1
    suite.assert_clean()


def test_exitfirst_and_keyboard_interrupt_clean_up(suite: Suite) -> None:
    suite.pytester.makepyfile(
        test_x="""
        def test_a(remote_fs):
            assert False

        def test_b(remote_fs):
            pass
        """,
        test_y="""
        def test_interrupt(remote_path):
            raise KeyboardInterrupt
        """,
    )
    suite.run("-x", "test_x.py").assert_outcomes(failed=1)
    suite.assert_clean()
    result = suite.run("test_y.py", "--jmp-mount-scope=function")
    assert result.ret == pytest.ExitCode.INTERRUPTED
    assert len(suite.events("teardown")) == 2
    suite.assert_clean()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP])
def test_sigterm_and_sighup_tear_down(suite: Suite, sig: signal.Signals) -> None:
    suite.pytester.makepyfile(test_sleep=SLEEPING_TEST)
    ready = suite.pytester.path / "ready"
    proc = start_pytest(suite, ready=ready)
    try:
        wait_until(lambda: ready.exists() or proc.poll() is not None, 60, "the mount")
        mountpoint = ready.read_text()
        assert sshfs_mounts(mountpoint) == [mountpoint]
        proc.send_signal(sig)
        out, _ = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == pytest.ExitCode.INTERRUPTED, out
    assert len(suite.events("teardown")) == 1, out
    suite.assert_clean()


def test_xdist_workers_have_their_own_mounts(suite: Suite) -> None:
    suite.pytester.makepyfile(
        test_par="""
        import os, pytest

        @pytest.mark.parametrize("n", range(6))
        def test_n(remote_fs, n, worker_id):
            assert worker_id in str(remote_fs.mountpoint)
            assert (remote_fs / "etc/os-release").exists()
        """
    )
    suite.run("-n", "2").assert_outcomes(passed=6)
    mountpoints = {e["mountpoint"] for e in suite.events("ready")}
    assert len(mountpoints) == 2
    assert {Path(m).parent.name.rsplit("-", 1)[1] for m in mountpoints} == {"gw0", "gw1"}
    suite.assert_clean()


def test_no_device_source_fails_only_the_tests_that_mount(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("JUMPSTARTER_HOST", raising=False)
    pytester.makepyfile(
        test_mixed="""
        def test_plain():
            pass

        def test_needs_device(remote_fs):
            pass
        """
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(
        [
            "no Jumpstarter device configured; run inside `jmp shell` or pass --jmp-mount-exporter-config, "
            "--jmp-mount-tls-grpc or --jmp-mount-client"
        ]
    )
    assert result.stdout.str().count("jumpstarter mount: device: none configured") == 1  # the report header


def test_plugin_import_is_light(pytester: pytest.Pytester) -> None:
    """Loaded by every pytest run: it must not import Jumpstarter or gRPC unless a fixture needs them."""
    pytester.makepyfile(
        test_light="""
        import sys

        def test_nothing_heavy(request):
            assert request.config.pluginmanager.has_plugin("jumpstarter_mount")
            heavy = sorted(m for m in sys.modules if m.split(".")[0] in ("jumpstarter", "grpc", "anyio"))
            assert heavy == []
        """
    )
    pytester.runpytest_subprocess("-p", "no:cacheprovider", "-p", "no:anyio").assert_outcomes(passed=1)


def test_plugin_can_be_disabled(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_off="def test_off(request):\n    assert request.config.getoption('jmp_mount_remote', 'no') == 'no'\n"
    )
    pytester.runpytest_subprocess("-p", "no:jumpstarter_mount").assert_outcomes(passed=1)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--jmp-mount-scope=galaxy"], "--jmp-mount-scope must be one of"),
        (["--jmp-mount-timeout=-1"], "--jmp-mount-timeout must be a positive number"),
        (["--jmp-mount-timeout=soon"], "--jmp-mount-timeout must be a positive number"),
        (["--jmp-mount-remote=var/log"], "--jmp-mount-remote must be an absolute device path"),
        (["--jmp-mount-option=-oProxyCommand=x"], "not a flag"),
        (["--jmp-mount-client=lab"], "needs --jmp-mount-selector"),
    ],
)
def test_bad_option_values(pytester: pytest.Pytester, args: list[str], message: str) -> None:
    pytester.makepyfile(test_any="def test_any(): pass\n")
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", *args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert message in result.stderr.str()


@pytest.mark.parametrize(
    ("marker", "message"),
    [
        ("jmp_mount(remote='etc')", "remote must be an absolute device path"),
        ("jmp_mount(remote='/etc', colour='red')", "unknown argument(s) colour"),
        ("jmp_mount(options='cache=no')", "options must be a list of strings"),
        ("jmp_mount(direct='yes')", "direct must be True or False"),
        ("jmp_mount('/a', '/b')", "give one device path"),
    ],
)
def test_bad_marker_is_usage_error(pytester: pytest.Pytester, marker: str, message: str) -> None:
    pytester.makepyfile(test_m=f"import pytest\n\n@pytest.mark.{marker}\ndef test_m(remote_path):\n    pass\n")
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert message in result.stderr.str()


def test_option_precedence_cli_env_ini(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    pytester.makeini("[pytest]\njmp_mount_remote = /from-ini\njmp_mount_scope = module\n")
    pytester.makepyfile(
        test_p="""
        from pytest_jumpstarter_mount.manager import manager_key

        def test_settings(request):
            s = request.config.stash[manager_key].settings
            print("REMOTE", s.remote, "SCOPE", s.scope, "TIMEOUT", s.timeout)
        """
    )
    monkeypatch.setenv("JMP_MOUNT_SCOPE", "class")
    monkeypatch.setenv("JMP_MOUNT_TIMEOUT", "12.5")
    result = pytester.runpytest_subprocess("-s", "-p", "no:cacheprovider", "--jmp-mount-timeout=3")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*REMOTE /from-ini SCOPE class TIMEOUT 3.0"])


def test_fixtures_are_documented(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest_subprocess("--fixtures", "-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.OK, result.stderr.str()
    # pytest orders them by scope and by "file:line" as text: check each on its own
    for name, doc in (
        ("jmp_client", "root Jumpstarter client"),
        ("remote_fs", "mounted with sshfs"),
        ("remote_path", ""),
    ):
        result.stdout.fnmatch_lines([f"{name} *", f"*{doc}*"])


def test_unknown_driver_and_wrong_type(suite: Suite) -> None:
    suite.pytester.makepyfile(test_d="def test_d(remote_fs): pass\n")
    result = suite.run("--jmp-mount-driver=nope")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*--jmp-mount-driver 'nope': no driver 'nope' under the exporter's root (has: *"])
    result = suite.run("--jmp-mount-driver=ssh")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*--jmp-mount-driver 'ssh' is a SSHWrapperClient, not an SSHMount driver*"])
    suite.assert_clean()


def test_inside_jmp_shell(suite: Suite) -> None:
    """Source 1: JUMPSTARTER_HOST set by `jmp shell --exporter-config ... -- pytest ...`."""
    suite.pytester.makepyfile(
        test_shell="""
        import os

        def test_shell(remote_fs):
            assert os.environ["JUMPSTARTER_HOST"]
            assert (remote_fs / "etc/os-release").exists()
        """
    )
    cmd = suite.in_jmp_shell(
        "-p",
        "no:cacheprovider",
        f"--jmp-mount-dir={suite.mount_dir}",
        f"--jmp-mount-remote={suite.device.remote('/')}",
        "-v",
    )
    result = subprocess.run(
        cmd, cwd=suite.pytester.path, env=env_with_jmp(), capture_output=True, text=True, timeout=120
    )
    assert summary_outcomes(result.stdout) == {"passed": 1}, result.stdout + result.stderr
    assert "jumpstarter mount: device: jmp shell" in result.stdout
    suite.assert_clean()


def test_standalone_exporter_tls_grpc(suite: Suite, standalone_exporter: str) -> None:
    suite.pytester.makepyfile(
        test_tls="""
        def test_read(remote_fs):
            assert (remote_fs / "etc/os-release").read_text().startswith('NAME="Loopback Device"')

        def test_via_port_forward(remote_fs):
            assert not remote_fs.direct
        """
    )
    args = suite.args_without("--jmp-mount-exporter-config")
    result = suite.pytester.runpytest_subprocess(
        *args,
        f"--jmp-mount-tls-grpc={standalone_exporter}",
        "--jmp-mount-tls-grpc-insecure",
        "--jmp-mount-transport=forward",
        timeout=120,
    )
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines([f"jumpstarter mount: device: tls-grpc {standalone_exporter} (insecure)*"])
    suite.assert_clean()


def test_controller_lease_wiring(suite: Suite) -> None:
    """Source 4, mocked: no Jumpstarter controller can run here. A fake ClientConfigV1Alpha1
    records the lease request and serves the real device in-process."""
    suite.pytester.makeconftest(
        COUNTING_CONFTEST
        + textwrap.dedent(
            f"""
            import contextlib, json, os, sys
            sys.path.insert(0, {str(Path(__file__).parent)!r})
            import jumpstarter.config.client as client_config
            from helpers import LoopbackDevice, make_driver

            device = LoopbackDevice(__import__("pathlib").Path({str(suite.device.base)!r}), port={suite.device.port})

            class FakeLease:
                name = "lease-123"
                exporter_name = "board-7"

                @contextlib.contextmanager
                def connect(self):
                    from jumpstarter.common.utils import serve
                    from jumpstarter_driver_composite.driver import Composite
                    with serve(Composite(children={{"mount": make_driver(device)}})) as client:
                        yield client

            class FakeClientConfig:
                @classmethod
                def load(cls, alias):
                    cls.alias = alias
                    return cls()

                @contextlib.contextmanager
                def lease(self, selector=None, lease_name=None, duration=None, exporter_name=None):
                    log = lambda e: open(os.environ["MOUNT_LOG"], "a").write(json.dumps(e) + "\\n")
                    log({{"event": "lease", "alias": self.alias, "selector": selector,
                         "duration": duration.total_seconds()}})
                    try:
                        yield FakeLease()
                    finally:
                        log({{"event": "released"}})

            client_config.ClientConfigV1Alpha1 = FakeClientConfig
            """
        )
    )
    suite.pytester.makepyfile(test_lease="def test_lease(remote_fs):\n    assert (remote_fs / 'etc').is_dir()\n")
    args = suite.args_without("--jmp-mount-exporter-config")
    result = suite.pytester.runpytest_subprocess(
        *args, "--jmp-mount-client=lab", "--jmp-mount-selector=board=rpi4", "--jmp-mount-duration=1h30m", timeout=120
    )
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*jumpstarter mount: device: lease lease-123 on board-7 (client lab)*"])
    (lease,) = suite.events("lease")
    assert lease == {"event": "lease", "alias": "lab", "selector": "board=rpi4", "duration": 5400.0}
    assert len(suite.events("released")) == 1
    suite.assert_clean()


@pytest.mark.parametrize(
    ("config", "message"), [("export: [this is: not, {valid", "* is not a valid exporter config: *")]
)
def test_malformed_exporter_config(pytester: pytest.Pytester, config: str, message: str) -> None:
    """A missing one is a usage error before any test runs (test_usage_errors.py)."""
    path = pytester.path / "exporter.yaml"
    path.write_text(config)
    pytester.makepyfile(test_x="def test_x(remote_fs):\n    pass\n")
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", f"--jmp-mount-exporter-config={path}")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines([f"*{message}"])
    assert "Traceback" not in result.stdout.str()


def test_unwritable_mount_dir(suite: Suite) -> None:
    suite.pytester.makepyfile(test_x="def test_x(remote_fs):\n    pass\n")
    args = suite.args_without("--jmp-mount-dir")
    result = suite.pytester.runpytest_subprocess(*args, "--jmp-mount-dir=/dev/null/mounts", timeout=120)
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*cannot create mount directory /dev/null/mounts*pass a writable --jmp-mount-dir*"])


def test_host_key_pinning_end_to_end(suite: Suite, tmp_path: Path) -> None:
    """StrictHostKeyChecking=yes through the plugin: the pinned key mounts, another key is refused.

    The pinning recipe in docs/transports-and-trust.md: the port forward's local port changes every time, so the key is
    pinned under a HostKeyAlias rather than host:port.
    """
    kind, key = (suite.device.base / "host_key.pub").read_text().split()[:2]
    good = tmp_path / "known_hosts"
    good.write_text(f"board-7 {kind} {key}\n")
    kind, other = keygen(tmp_path / "impostor").with_suffix(".pub").read_text().split()[:2]
    bad = tmp_path / "known_hosts_bad"
    bad.write_text(f"board-7 {kind} {other}\n")
    suite.pytester.makepyfile(test_hk="def test_hk(remote_fs):\n    assert (remote_fs / 'etc').is_dir()\n")
    strict = ["--jmp-mount-option=StrictHostKeyChecking=yes", "--jmp-mount-option=HostKeyAlias=board-7"]
    suite.run(*strict, f"--jmp-mount-option=UserKnownHostsFile={good}").assert_outcomes(passed=1)
    result = suite.run(*strict, f"--jmp-mount-option=UserKnownHostsFile={bad}")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(
        [
            f"*host key of * does not match the one pinned in your known-hosts file {bad}, under HostKeyAlias "
            "board-7 (WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED!); no login was attempted; *"
        ]
    )
    assert bad.read_text() == f"board-7 {kind} {other}\n"  # never written
    suite.assert_clean()


def test_standalone_exporter_with_passphrase(suite: Suite) -> None:
    suite.pytester.makepyfile(test_pp="def test_pp(remote_fs):\n    assert (remote_fs / 'etc').is_dir()\n")
    args = suite.args_without("--jmp-mount-exporter-config")
    with StandaloneExporter(suite.pytester.path / "exporter.yaml", passphrase="open sesame") as exporter:
        tls = [f"--jmp-mount-tls-grpc={exporter.wait_ready().address}", "--jmp-mount-tls-grpc-insecure"]
        refused = suite.pytester.runpytest_subprocess(*args, *tls, timeout=120)
        refused.assert_outcomes(errors=1)  # no passphrase
        result = suite.pytester.runpytest_subprocess(*args, *tls, "--jmp-mount-passphrase=open sesame", timeout=120)
        result.assert_outcomes(passed=1)
    suite.assert_clean()


def test_nested_driver_path(device: LoopbackDevice) -> None:
    """--jmp-mount-driver board.mount: a dotted path into nested composites."""
    from jumpstarter.common.utils import serve
    from jumpstarter_driver_composite.driver import Composite

    from jumpstarter_driver_ssh_mount.client import SSHMountClient
    from pytest_jumpstarter_mount.sources.rootclient import DeviceSourceError, find_mount_driver

    with serve(Composite(children={"board": Composite(children={"mount": make_driver(device)})})) as root:
        assert isinstance(find_mount_driver(root, "board.mount"), SSHMountClient)
        with pytest.raises(DeviceSourceError, match="no driver 'mnt' under board"):
            find_mount_driver(root, "board.mnt")
