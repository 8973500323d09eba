"""The plugin's transport and host key settings: ``--jmp-mount-transport``, the marker's
``transport=``, ``--jmp-mount-insecure``, and a wrong ``host_key`` in the exporter config,
run as a user would (pytester subprocesses against the loopback sshd)."""

from __future__ import annotations

import pytest

from helpers import Suite, keygen

LOGIN = "Accepted publickey"


def logins(suite: Suite) -> int:
    """How many logins the device's sshd has accepted so far."""
    return (suite.device.base / "sshd.log").read_text().count(LOGIN)


def test_transport_option_marker_header_and_report(suite: Suite) -> None:
    suite.pytester.makepyfile(
        test_tr="""
        import pytest

        def test_forward(remote_fs):
            assert remote_fs.transport == "forward" and not remote_fs.direct
            assert "via port forward" in repr(remote_fs)

        @pytest.mark.jmp_mount(transport="direct")
        def test_marker_direct(remote_path, request):
            from pytest_jumpstarter_mount.manager import manager_key

            (mount,) = request.config.stash[manager_key].used_mounts(request.node)
            assert mount.transport == "direct" and mount.mountpoint == remote_path

        @pytest.mark.jmp_mount(transport="auto")
        def test_fails_to_show_the_section(remote_path):
            assert False, "on purpose"
        """
    )
    result = suite.run("--jmp-mount-transport=forward")
    result.assert_outcomes(passed=2, failed=1)
    result.stdout.fnmatch_lines(
        [
            "jumpstarter mount: transport: forward; host key checked against what the exporter vouches for",
            "*- jumpstarter mount -*",
            "mountpoint:*",
            "remote:*(direct)",
            "transport:     direct (*answered with the vouched host key; "
            "host key verified against what the exporter vouches for)",
        ]
    )
    suite.assert_clean()


def test_transport_from_env_and_ini_and_direct_alias(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytester.makeini("[pytest]\njmp_mount_transport = forward\njmp_mount_insecure = true\n")
    pytester.makepyfile(
        test_s="""
        from pytest_jumpstarter_mount.manager import manager_key

        def test_settings(request):
            s = request.config.stash[manager_key].settings
            print("TRANSPORT", s.transport, "INSECURE", s.insecure)
        """
    )
    monkeypatch.delenv("JUMPSTARTER_HOST", raising=False)
    cases = [
        ({}, [], "forward"),  # the ini
        ({"JMP_MOUNT_TRANSPORT": "direct"}, [], "direct"),  # the environment over the ini
        ({}, ["--jmp-mount-direct"], "direct"),  # the command line's alias over the ini
        ({"JMP_MOUNT_DIRECT": "1"}, ["--jmp-mount-transport=auto"], "auto"),  # the command line over the env
    ]
    for env, args, expected in cases:
        with monkeypatch.context() as m:
            for key, value in env.items():
                m.setenv(key, value)
            result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-s", *args)
        result.assert_outcomes(passed=1)
        result.stdout.fnmatch_lines([f"*TRANSPORT {expected} INSECURE True"])


@pytest.mark.parametrize(
    ("args", "marker", "message"),
    [
        (
            ["--jmp-mount-transport=carrier-pigeon"],
            "",
            "--jmp-mount-transport must be one of auto, direct, forward, relay",
        ),
        (
            ["--jmp-mount-direct", "--jmp-mount-transport=forward"],
            "",
            "--jmp-mount-direct means --jmp-mount-transport=direct, but --jmp-mount-transport=forward is given",
        ),
        ([], "transport='ipoac'", "transport must be one of 'auto', 'direct', 'forward', 'relay', got 'ipoac'"),
        ([], "transport='auto', direct=True", "direct=True means transport='direct', but transport='auto'"),
    ],
    ids=["bad-option", "direct-vs-transport", "bad-marker", "marker-conflict"],
)
def test_transport_usage_errors(pytester: pytest.Pytester, args: list[str], marker: str, message: str) -> None:
    decorator = f"@pytest.mark.jmp_mount({marker})\n" if marker else ""
    pytester.makepyfile(test_u=f"import pytest\n\n{decorator}def test_u(remote_path):\n    pass\n")
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", *args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert message in result.stderr.str()


def test_insecure_mounts_unverified_and_warns_once(suite: Suite) -> None:
    suite.pytester.makepyfile(
        test_ins="""
        import pytest

        @pytest.mark.parametrize("n", range(4))
        def test_unverified(remote_fs, n):
            assert "StrictHostKeyChecking=no" in remote_fs.argv
            assert not any(a.startswith("HostKeyAlias=") for a in remote_fs.argv)
        """
    )
    result = suite.run("--jmp-mount-insecure", "-n", "2", "--jmp-mount-scope=function")
    result.assert_outcomes(passed=4)
    out = result.stdout.str()
    assert out.count("InsecureMountWarning: --jmp-mount-insecure: the device's host key is not verified") == 1, out
    result.stdout.fnmatch_lines(["jumpstarter mount: transport: auto; host key NOT verified (--jmp-mount-insecure)"])
    suite.assert_clean()


def test_wrong_configured_host_key_errors_before_login(suite: Suite) -> None:
    config = suite.pytester.path / "exporter.yaml"
    wrong = keygen(suite.pytester.path / "not_the_device").with_suffix(".pub").read_text().strip()
    config.write_text(config.read_text() + f'    config:\n      host_key: "{wrong}"\n')
    suite.pytester.makepyfile(test_hk="def test_hk(remote_fs):\n    pass\n")
    before = logins(suite)
    result = suite.run()
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(
        [
            "host key mismatch at *: it offered SHA256:*, the exporter vouches for "
            "SHA256:* (the configured host_key); no login was attempted; if the device was reflashed*"
            "(jumpstarter mount of *)"
        ]
    )
    assert "Traceback" not in result.stdout.str()
    assert logins(suite) == before
    suite.assert_clean()
