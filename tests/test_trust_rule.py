"""Whose host keys are trusted, and ssh option errors: the one rule, against real sshd devices.

Your own known-hosts options change which keys are trusted, never whether; nothing is written
to your files; an exporter vouching for no key never gets an unchecked direct connection; an
option ssh refuses is a usage error naming it; ssh's own reason comes first. "No login" is read
from the device's sshd log ("Accepted publickey" is logged for every login).
"""

from __future__ import annotations

import os
import pwd
from collections.abc import Iterator
from pathlib import Path

import pytest

from helpers import LoopbackDevice, Suite, keygen, leftovers, make_driver, target
from jumpstarter_driver_ssh_mount import AuthenticationError, HostKeyError, InvalidOptionError, start_mount
from jumpstarter_driver_ssh_mount.ssh.hostkeypolicy import HostKeyTrust, host_key_options
from jumpstarter_driver_ssh_mount.ssh.optioncheck import check_ssh_options
from jumpstarter_driver_ssh_mount.ssh.sealing import for_sshfs, sealed_environment
from jumpstarter_driver_ssh_mount.ssh.sshoptions import merge_options

LOGIN = "Accepted publickey"
ALIAS = "my-board"


# -- the rule, without a device -------------------------------------------------------
def test_which_keys_never_whether() -> None:
    for option in ("UserKnownHostsFile=/k", "GlobalKnownHostsFile=/g", "HostKeyAlias=b", "KnownHostsCommand=/c %H"):
        trust = HostKeyTrust.decide([option])
        assert trust.source == "yours" and trust.verified, option
        options = host_key_options([option])
        assert options == ["StrictHostKeyChecking=yes", "UpdateHostKeys=no", "CheckHostIP=no"], option
    assert HostKeyTrust.decide(["reconnect", "StrictHostKeyChecking=yes"]).source == "exporter"
    relaxed = HostKeyTrust.decide(["stricthostkeychecking=accept-new", "UserKnownHostsFile=/k"])
    assert (relaxed.verified, relaxed.why) == (False, "your StrictHostKeyChecking=accept-new")
    # relaxed: ssh adds new keys to the first file, /dev/null, and still reads yours
    assert (
        host_key_options(["StrictHostKeyChecking=no", "UserKnownHostsFile=/k"])[0] == "UserKnownHostsFile=/dev/null /k"
    )
    assert host_key_options(["HostKeyAlias=b"], insecure=True)[:2] == [
        "UserKnownHostsFile=/dev/null ~/.ssh/known_hosts ~/.ssh/known_hosts2",
        "StrictHostKeyChecking=no",
    ]
    for options in (["UserKnownHostsFile=/k"], ["StrictHostKeyChecking=no", "HostKeyAlias=x"], []):
        once = [*host_key_options(options), *options]
        assert host_key_options(once) == [], options  # the core applies it again: nothing added


def test_whose_keys_in_words() -> None:
    mine = HostKeyTrust.decide(["UserKnownHostsFile=/home/me/kh", f"HostKeyAlias={ALIAS}"])
    assert mine.outcome == f"host key verified against your known-hosts file /home/me/kh, under HostKeyAlias {ALIAS}"
    assert mine.planned.startswith("host key checked against your known-hosts file /home/me/kh")
    assert HostKeyTrust.decide(["GlobalKnownHostsFile=/g"]).whose == (
        "your known-hosts files (~/.ssh/known_hosts, or your ssh config's) and /g"
    )
    assert HostKeyTrust.decide([]).planned == "host key checked against what the exporter vouches for"
    assert HostKeyTrust.decide([], insecure=True).outcome == "host key NOT verified (--insecure)"
    assert "verified against" not in HostKeyTrust.exporter_vouches_for_none().outcome


@pytest.mark.parametrize("option", ["UpdateHostKeys=yes", "CheckHostIP=yes", "updatehostkeys=ask"])
def test_writing_known_hosts_is_refused(option: str) -> None:
    with pytest.raises(InvalidOptionError, match="never written to a known-hosts file"):
        host_key_options([option])
    if option[0].isupper():  # what ssh gets (sshfs refuses a lower-case spelling itself)
        with pytest.raises(InvalidOptionError, match="never written"):
            check_ssh_options([option])


@pytest.mark.parametrize(
    ("option", "reason"),
    [
        ("ServerAliveInterval=abc", "invalid time value"),
        ("NoSuchOption=1", "Bad configuration option: nosuchoption"),
        ("StrictHostKeyChecking=maybe", 'unsupported option "maybe"'),
    ],
)
def test_ssh_option_errors_name_the_option(option: str, reason: str) -> None:
    with pytest.raises(InvalidOptionError) as refused:
        check_ssh_options(["reconnect", "ServerAliveCountMax=3", option, "ConnectTimeout=5"])
    assert str(refused.value) == f"ssh refuses the option {option!r} ({reason}); fix or drop it"
    check_ssh_options(["reconnect", "dir_cache=no", "ServerAliveInterval=7"])  # sshfs's own are not ssh's


def test_the_seal_as_options() -> None:
    merged = merge_options(("ProxyCommand=none", "ForwardAgent=no"), ["ProxyJump=bastion", "ForwardAgent=yes"])
    assert merged == [
        "ProxyJump=bastion",
        "ForwardAgent=yes",
    ]  # explicit options win; ProxyJump fills ProxyCommand's slot
    sshfs = for_sshfs(["ForwardAgent=no", "RemoteCommand=none", "KnownHostsCommand=none", "reconnect"])
    assert sshfs == ["reconnect", "ssh_command=ssh -o RemoteCommand=none -o KnownHostsCommand=none"]
    assert for_sshfs(["RemoteCommand=none", "ssh_command=myssh"]) == ["ssh_command=myssh"]
    env = sealed_environment({"PATH": "/bin", "SSH_AUTH_SOCK": "/a", "LC_ALL": "C", "AWS_SECRET": "s", "HOME": "/h"})
    assert env == {"PATH": "/bin", "LC_ALL": "C", "HOME": "/h"}


# -- against a device of this test ------------------------------------------------------
@pytest.fixture
def dev(tmp_path: Path) -> Iterator[LoopbackDevice]:
    """A device of this test alone: its log is read."""
    device = LoopbackDevice(tmp_path / "dev").setup().start()
    yield device
    device.stop()


@pytest.fixture
def c(dev: LoopbackDevice):
    """A client for ``dev``, served in-process."""
    from jumpstarter.common.utils import serve

    with serve(make_driver(dev)) as client:
        yield client


def logins(device: LoopbackDevice) -> int:
    return (device.base / "sshd.log").read_text().count(LOGIN)


def key_line(device: LoopbackDevice) -> str:
    return " ".join((device.base / "host_key.pub").read_text().split()[:2])


def home_known_hosts() -> Path:
    """The known-hosts file ssh reads by default: in the passwd entry's home, not $HOME."""
    return Path(pwd.getpwuid(os.getuid()).pw_dir) / ".ssh" / "known_hosts"


@pytest.mark.parametrize("content", [None, ""], ids=["missing", "empty"])
@pytest.mark.parametrize("transport", ["auto", "forward"])
def test_own_known_hosts_without_the_key_is_refused(
    dev: LoopbackDevice, c, mountpoint: Path, tmp_path: Path, content: str | None, transport: str
) -> None:
    mine = tmp_path / "my_known_hosts"
    if content is not None:
        mine.write_text(content)
    before, home = logins(dev), home_known_hosts().exists()
    with pytest.raises(HostKeyError) as refused:
        c.mounted(mountpoint, remote_path=dev.remote(), transport=transport, extra_args=[f"UserKnownHostsFile={mine}"])
    message = str(refused.value)
    assert f"refused against your known-hosts file {mine} (" in message and "no login was attempted" in message
    assert "Host key verification failed" in message or "No ED25519 host key is known" in message
    if transport == "forward":
        assert "the port forward's port changes on every mount, so pin the device's key under a HostKeyAlias" in message
    with pytest.raises(HostKeyError, match=f"refused against your known-hosts file {mine}"):
        c.run("true", transport=transport, options=[f"UserKnownHostsFile={mine}"])
    assert logins(dev) == before
    assert (mine.read_text() if mine.exists() else None) == content  # not created, not appended to
    assert home_known_hosts().exists() == home
    assert leftovers(mountpoint, dir_should_exist=True) == []


@pytest.mark.parametrize("transport", ["auto", "forward"])
def test_own_known_hosts_with_the_key_under_an_alias(
    dev: LoopbackDevice, c, mountpoint: Path, tmp_path: Path, transport: str
) -> None:
    mine = tmp_path / "my_known_hosts"
    mine.write_text(f"{ALIAS} {key_line(dev)}\n")
    mine.chmod(0o644)
    stat_before = mine.stat()
    options = [f"UserKnownHostsFile={mine}", f"HostKeyAlias={ALIAS}"]
    with c.mounted(mountpoint, remote_path=dev.remote(), transport=transport, extra_args=options) as m:
        assert m.transport == ("direct" if transport == "auto" else "forward")
        whose = f"host key verified against your known-hosts file {mine}, under HostKeyAlias {ALIAS}"
        assert (m.transport_note or "").endswith(whose)
        assert "StrictHostKeyChecking=yes" in m.argv and "UpdateHostKeys=no" in m.argv
        assert not any(a.startswith("UserKnownHostsFile=/tmp/jmp-mount-known-hosts") for a in m.argv)
        assert (m / "etc/os-release").exists()
    result = c.run("echo on-device", transport=transport, options=options, check=True)
    assert result.stdout == "on-device\n"
    after = mine.stat()
    assert (after.st_mtime_ns, after.st_size, after.st_mode) == (
        stat_before.st_mtime_ns,
        stat_before.st_size,
        stat_before.st_mode,
    )
    assert leftovers(mountpoint, dir_should_exist=True) == []


def test_alias_alone_and_global_file_alone_stay_strict(
    dev: LoopbackDevice, c, mountpoint: Path, tmp_path: Path
) -> None:
    before, home = logins(dev), home_known_hosts().exists()
    with pytest.raises(HostKeyError) as refused:
        c.mounted(mountpoint, remote_path=dev.remote(), transport="forward", extra_args=[f"HostKeyAlias={ALIAS}"])
    assert f"known-hosts files (~/.ssh/known_hosts, or your ssh config's), under HostKeyAlias {ALIAS}" in str(
        refused.value
    )
    assert f"'{ALIAS} KEYTYPE BASE64'" in str(refused.value)
    empty = tmp_path / "global_known_hosts"
    empty.write_text("")
    with pytest.raises(HostKeyError, match=f"and {empty}"):
        c.mounted(mountpoint, remote_path=dev.remote(), transport="auto", extra_args=[f"GlobalKnownHostsFile={empty}"])
    assert logins(dev) == before and empty.read_text() == ""
    assert home_known_hosts().exists() == home
    pinned = tmp_path / "global_pinned"
    pinned.write_text(f"[{dev.host}]:{dev.port} {key_line(dev)}\n")
    with c.mounted(
        mountpoint, remote_path=dev.remote(), transport="direct", extra_args=[f"GlobalKnownHostsFile={pinned}"]
    ) as m:
        assert (m.transport_note or "").endswith(
            f"host key verified against your known-hosts files (~/.ssh/known_hosts, or your ssh config's) and {pinned}"
        )
        assert (m / "etc/os-release").exists()
    assert leftovers(mountpoint, dir_should_exist=True) == []


def test_option_typo_is_a_usage_error_before_connecting(dev: LoopbackDevice, c, mountpoint: Path) -> None:
    before = logins(dev)
    named = r"^ssh refuses the option 'ServerAliveInterval=abc' \(invalid time value\); fix or drop it$"
    with pytest.raises(InvalidOptionError, match=named):
        c.mounted(mountpoint, remote_path=dev.remote(), extra_args=["ServerAliveInterval=abc"])
    with pytest.raises(InvalidOptionError, match=named):
        c.run("true", options=["ServerAliveInterval=abc"])
    # the core alone (no check before): ssh's own reason, not "is sshd running"
    with pytest.raises(
        InvalidOptionError,
        match=r"^ssh refused its options before connecting \(command-line line 0: invalid time value",
    ) as core:
        start_mount(target(dev), mountpoint, identity=dev.identity(), options=["ServerAliveInterval=abc"])
    assert "sshd running" not in str(core.value)
    assert logins(dev) == before
    assert leftovers(mountpoint, dir_should_exist=True) == []


def test_wrong_identity_shows_ssh_reason(dev: LoopbackDevice, mountpoint: Path, tmp_path: Path) -> None:
    other = keygen(tmp_path / "other_key").read_text()
    with pytest.raises(AuthenticationError) as refused:
        start_mount(target(dev, "/var/log"), mountpoint, identity=other)  # a subdirectory: sshfs warns about symlinks
    assert ": Permission denied (publickey).)" in str(refused.value)
    assert "transform_symlinks" not in str(refused.value)
    assert leftovers(mountpoint, dir_should_exist=True) == []


def test_plugin_option_typo_is_a_usage_error(suite: Suite) -> None:
    suite.pytester.makepyfile(test_t="def test_t(remote_fs):\n    pass\n")
    result = suite.run("--jmp-mount-option=ServerAliveInterval=abc")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert (
        "--jmp-mount-option: ssh refuses the option 'ServerAliveInterval=abc' (invalid time value)"
        in result.stderr.str()
    )
    marked = suite.pytester.makepyfile(
        test_m="import pytest\n\n"
        "@pytest.mark.jmp_mount(options=['UpdateHostKeys=yes'])\n"
        "def test_m(remote_path):\n    pass\n"
    )
    result = suite.pytester.runpytest_subprocess(*suite.args(), str(marked))
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "UpdateHostKeys=yes: the device's host keys are never written" in result.stderr.str()


def test_plugin_header_and_report_say_whose_keys(suite: Suite, tmp_path: Path) -> None:
    mine = tmp_path / "my_known_hosts"
    mine.write_text(f"{ALIAS} {key_line(suite.device)}\n")
    suite.pytester.makepyfile(
        test_h="""
        def test_h(remote_fs, device_run):
            assert device_run("echo ok").stdout == "ok\\n"
            assert False, "on purpose: the report shows the transport note"
        """
    )
    result = suite.run(f"--jmp-mount-option=UserKnownHostsFile={mine}", f"--jmp-mount-option=HostKeyAlias={ALIAS}")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            f"jumpstarter mount: transport: auto; host key checked against your known-hosts file {mine}, "
            f"under HostKeyAlias {ALIAS}",
            f"transport:     direct (*answered; host key verified against your known-hosts file {mine}, "
            f"under HostKeyAlias {ALIAS})",
        ]
    )
    assert "vouches for" not in result.stdout.str()
    suite.assert_clean()


def test_relaxed_checking_of_your_own_never_writes(dev: LoopbackDevice, c, mountpoint: Path, tmp_path: Path) -> None:
    """Your StrictHostKeyChecking=accept-new with your file: mounted unverified (said so), the file untouched."""
    mine = tmp_path / "my_known_hosts"
    mine.write_text("")
    options = ["StrictHostKeyChecking=accept-new", f"UserKnownHostsFile={mine}"]
    with c.mounted(mountpoint, remote_path=dev.remote(), extra_args=options) as m:
        assert m.transport == "forward"  # auto: never the device's address unchecked
        assert m.transport_note == "host key NOT verified (your StrictHostKeyChecking=accept-new)"
        assert f"UserKnownHostsFile=/dev/null {mine}" in m.argv
        assert (m / "etc/os-release").exists()
    assert c.run("echo ok", options=options).stdout == "ok\n"
    assert mine.read_text() == ""
    assert leftovers(mountpoint, dir_should_exist=True) == []


def test_ssh_reason_first_in_diagnosis() -> None:
    """What sshfs printed around ssh's line (its symlink warning, its lost connection) does not hide ssh's reason."""
    from jumpstarter_driver_ssh_mount import SshfsTarget
    from jumpstarter_driver_ssh_mount.sshfs.diagnose import diagnose

    where = SshfsTarget("10.0.0.5", 22, "root", "/var/log")
    config = (
        "/root/.ssh/config: line 3: Bad configuration option: forwardagnet\n"
        "/root/.ssh/config: terminating, 1 bad configuration options\n"
        "read: Connection reset by peer\n"
    )
    error = diagnose(config, 1, where, transport="direct")
    assert isinstance(error, InvalidOptionError) and "sshd running" not in str(error)
    assert "(/root/.ssh/config: line 3: Bad configuration option: forwardagnet)" in str(error)
    changed = "@@@@@@@\n@ WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED! @\n@@@@@@@\nHost key verification failed.\n"
    error = diagnose(changed, 1, where, transport="direct")
    assert isinstance(error, HostKeyError) and error.changed
    assert error.reason == "WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED!"


OLDER_MOUNT = '''
import dataclasses

from jumpstarter_driver_ssh_mount.driver import SSHMount


@dataclasses.dataclass(kw_only=True)
class OlderSSHMount(SSHMount):
    """An SSHMount from before host keys were vouched for: its exporter offers no host_keys."""

    host_keys = None
'''


def test_plugin_with_an_older_exporter_fails_closed(suite: Suite) -> None:
    """Simulated by a subclass in the exporter config, as no older release of the driver is installed here."""
    config = suite.pytester.path / "exporter.yaml"
    config.write_text(config.read_text().replace("jumpstarter_driver_ssh_mount.driver.SSHMount", "older.OlderSSHMount"))
    suite.pytester.makepyfile(
        older=OLDER_MOUNT, test_old="def test_old(remote_fs):\n    assert (remote_fs / 'etc').is_dir()\n"
    )
    result = suite.run()
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(
        [
            "jumpstarter mount: transport: auto; host key checked against what the exporter vouches for",
            "*JumpstarterMountWarning: jumpstarter mount of *: host key NOT verified (the exporter's SSHMount does "
            "not vouch for host keys (an older version)); update jumpstarter-driver-ssh-mount on the exporter",
        ]
    )
    assert "verified against" not in result.stdout.str()
    result = suite.run("--jmp-mount-transport=direct")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*transport 'direct' refused: the exporter's SSHMount does not vouch for host keys*"])
    suite.assert_clean()
