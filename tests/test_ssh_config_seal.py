"""The user's ssh config opens no side door to the device: a real ssh agent and a real ~/.ssh/config.

ssh reads ``~/.ssh/config`` from the passwd entry's home, not ``$HOME``: the test writes that
file (restored on every path; ``~/.ssh`` removed again if it made it) with a block scoped to
a device on its own loopback address (``Host 127.0.0.23``), never ``Host *``, since other ssh
processes on this machine read the same file. The agent is started here and ended by PID.
Each side door is first shown open for a plain ssh (``ssh -G``, or a login with the agent),
so the test can fail.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import pwd
import signal
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from helpers import LoopbackDevice, keygen, leftovers, make_driver, wait_until
from jumpstarter_driver_ssh_mount import AuthenticationError
from jumpstarter_driver_ssh_mount.common.procfs import live_group_members, processes
from jumpstarter_driver_ssh_mount.ssh import sealing
from jumpstarter_driver_ssh_mount.ssh.sealing import SEALED_SSH_OPTIONS, allowed_config

DEVICE_ADDR = "127.0.0.23"  # this test's own: the config block below matches it alone


@contextlib.contextmanager
def user_ssh_config(text: str) -> Iterator[Path]:
    """``text`` appended to the user's ssh config (as ssh finds it) while the block runs; restored after.

    One test at a time (a lock on the home directory: xdist workers share the file).
    """
    home = Path(pwd.getpwuid(os.getuid()).pw_dir)
    ssh_dir, config = home / ".ssh", home / ".ssh" / "config"
    with _locked(home):
        made_dir = not ssh_dir.exists()
        if made_dir:
            ssh_dir.mkdir(mode=0o700)
        backup = config.read_bytes() if config.exists() else None
        try:
            config.write_bytes((backup or b"") + b"\n" + text.encode())
            config.chmod(0o600)
            yield config
        finally:
            if backup is None:
                config.unlink(missing_ok=True)
            else:
                config.write_bytes(backup)
            if made_dir:
                with contextlib.suppress(OSError):  # something else put a file there meanwhile: leave it
                    ssh_dir.rmdir()


@contextlib.contextmanager
def _locked(directory: Path) -> Iterator[None]:
    fd = os.open(directory, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


@contextlib.contextmanager
def ssh_agent(socket_path: Path, key: Path) -> Iterator[str]:
    """A real ssh-agent holding ``key``, on ``socket_path``; ended by PID afterwards."""
    agent = subprocess.Popen(["ssh-agent", "-D", "-a", str(socket_path)], stdout=subprocess.DEVNULL)
    try:
        wait_until(socket_path.exists, 10, "the agent's socket")
        env = {**os.environ, "SSH_AUTH_SOCK": str(socket_path)}
        subprocess.run(["ssh-add", "-q", str(key)], env=env, check=True, capture_output=True)
        yield str(socket_path)
    finally:
        agent.send_signal(signal.SIGTERM)
        agent.wait(10)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


@pytest.fixture
def side_doors(tmp_path: Path) -> Iterator[dict]:
    """A device on DEVICE_ADDR, an agent holding the device's login key, and a config opening every door."""
    device = LoopbackDevice(tmp_path / "dev", host=DEVICE_ADDR).setup()
    control = tmp_path / "control"
    control.mkdir()
    doors = {
        "device": device,
        "control": control,
        "local_command": tmp_path / "local-command-ran",
        "proxy_command": tmp_path / "proxy-command-ran",
        "remote_forward": free_port(),
    }
    block = (
        f"Host {DEVICE_ADDR}\n"
        "    ForwardAgent yes\n"
        "    ForwardX11 yes\n"
        f"    RemoteForward 127.0.0.1:{doors['remote_forward']} 127.0.0.1:9\n"
        "    PermitLocalCommand yes\n"
        f"    LocalCommand touch {doors['local_command']}\n"
        "    ControlMaster auto\n"
        f"    ControlPath {control}/cm-%C\n"
        f"    ProxyCommand sh -c 'touch {doors['proxy_command']}; exit 1'\n"
        "    RemoteCommand echo hijacked\n"
        "    RequestTTY force\n"
        "    SendEnv JMP_SEAL_SECRET\n"
        "    HostName 127.0.0.99\n"
        "    Port 1\n"
    )
    device.start()
    try:
        with (
            user_ssh_config(block),
            ssh_agent(tmp_path / "agent.sock", device.client_key) as agent,
            pytest.MonkeyPatch.context() as patch,
        ):
            patch.setenv("SSH_AUTH_SOCK", agent)
            patch.setenv("JMP_SEAL_SECRET", "not for the device")  # SendEnv below would send it
            yield doors
    finally:
        device.stop()


def plain_ssh_sees(host: str) -> dict[str, str]:
    """What a plain ``ssh`` to ``host`` would use (``ssh -G``: the config read, no connection)."""
    out = subprocess.run(["ssh", "-G", host], capture_output=True, text=True, check=True).stdout
    return dict(line.split(" ", 1) for line in out.splitlines() if " " in line)


def test_the_config_opens_the_doors_for_plain_ssh(side_doors: dict) -> None:
    """The control: the same config and agent really open these doors for a plain ssh."""
    device: LoopbackDevice = side_doors["device"]
    seen = plain_ssh_sees(DEVICE_ADDR)
    assert (seen["forwardagent"], seen["controlmaster"], seen["permitlocalcommand"]) == ("yes", "auto", "yes")
    assert seen["remotecommand"] == "echo hijacked" and "touch" in seen["proxycommand"]
    assert "remoteforward" in seen and (seen["hostname"], seen["port"]) == ("127.0.0.99", "1")
    plain = [
        "ssh", "-F", "none", "-p", str(device.port), "-l", device.user, "-o", "BatchMode=yes",
        "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "ForwardAgent=yes",
        DEVICE_ADDR, "echo $SSH_AUTH_SOCK",
    ]  # fmt: skip
    forwarded = subprocess.run(plain, capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL)
    assert forwarded.returncode == 0 and forwarded.stdout.strip(), (
        forwarded.stderr
    )  # the agent logs in, and reaches the device


def test_device_run_gets_no_side_door(side_doors: dict) -> None:
    from jumpstarter.common.utils import serve

    device: LoopbackDevice = side_doors["device"]
    control: Path = side_doors["control"]
    with serve(make_driver(device)) as client:
        result = client.run(
            f"echo agent=$SSH_AUTH_SOCK; ls -A {control}; tty || true;"
            f" bash -c 'exec 3<>/dev/tcp/127.0.0.1/{side_doors['remote_forward']}' 2>/dev/null && echo forwarded; true",
            transport="direct",
            check=True,
        )
    assert result.transport == "direct"
    assert result.stdout == "agent=\nnot a tty\n", result.stdout  # no agent, no master socket, no tty, no forward
    assert "hijacked" not in result.stdout
    assert not side_doors["local_command"].exists() and not side_doors["proxy_command"].exists()
    assert list(control.iterdir()) == []


def assert_only_the_driver_key_logs_in(device: LoopbackDevice, tmp_path: Path) -> None:
    """A driver whose key the device refuses gets no login for a command or a mount, whatever else ssh could offer."""
    from jumpstarter.common.utils import serve

    wrong = keygen(tmp_path / "not_the_login_key").read_text()
    with serve(make_driver(device, identity=wrong)) as client:
        result = client.run("true", transport="direct")
        assert result.returncode == 255 and "Permission denied (publickey)" in result.stderr
        mountpoint = tmp_path / "mnt"
        with pytest.raises(AuthenticationError, match=r"Permission denied \(publickey\)"):
            client.mounted(mountpoint, remote_path=device.remote(), transport="direct")
    assert leftovers(mountpoint, dir_should_exist=False) == []


def test_only_the_driver_identity_is_offered(side_doors: dict, tmp_path: Path) -> None:
    """The agent holds the device's login key; the driver's key is another: no login."""
    assert_only_the_driver_key_logs_in(side_doors["device"], tmp_path)


def test_the_mount_gets_no_side_door(side_doors: dict, mountpoint: Path) -> None:
    from jumpstarter.common.utils import serve

    device: LoopbackDevice = side_doors["device"]
    control: Path = side_doors["control"]
    with (
        serve(make_driver(device)) as client,
        client.mounted(mountpoint, remote_path=device.remote(), transport="direct") as m,
    ):
        assert (m / "etc/os-release").read_text().startswith("NAME=")  # no ProxyCommand, no RemoteCommand
        group = set(live_group_members(m.pid))  # sshfs double-forks its ssh inside its own session
        ssh = [p for p in processes() if p.pid in group and Path(p.argv()[0]).name == "ssh"]
        assert len(ssh) == 1, ssh
        argv = ssh[0].argv()
        assert {"-a", "-x", "IdentityAgent=none", "ControlPath=none", "PermitLocalCommand=no"} <= {
            a.removeprefix("-o") for a in argv
        }
        environ = Path(f"/proc/{ssh[0].pid}/environ").read_bytes().split(b"\0")
        assert not any(v.startswith((b"SSH_AUTH_SOCK=", b"JMP_SEAL_SECRET=")) for v in environ)
        assert list(control.iterdir()) == []
        assert not listening(side_doors["remote_forward"])
    assert not side_doors["local_command"].exists() and not side_doors["proxy_command"].exists()
    assert leftovers(mountpoint, dir_should_exist=True) == []


class EnvAcceptingDevice(LoopbackDevice):
    """A device whose sshd accepts ``FOO`` from the client (so a sent ``SetEnv`` would show)."""

    def _config(self) -> Path:
        path = super()._config()
        path.write_text(path.read_text() + "AcceptEnv FOO\n")
        return path


@pytest.fixture
def config_extras(tmp_path: Path) -> Iterator[dict]:
    """A device on DEVICE_ADDR that also accepts a second key, and a config naming that key, a SetEnv and tuning."""
    device = EnvAcceptingDevice(tmp_path / "dev", host=DEVICE_ADDR).setup()
    config_key = keygen(tmp_path / "config_key")
    with open(device.base / "authorized_keys", "a") as keys:
        keys.write(Path(f"{config_key}.pub").read_text())
    block = (
        f"Host {DEVICE_ADDR}\n"
        f"    IdentityFile {config_key}\n"
        "    SetEnv FOO=bar\n"
        "    ServerAliveInterval 7\n"
        "    Compression yes\n"
        "    User someone-else\n"
    )
    sealing._ssh_config.cache_clear()  # read once per process: this test's config, not an earlier one
    device.start()
    try:
        with user_ssh_config(block):
            yield {"device": device, "config_key": config_key}
    finally:
        device.stop()
        sealing._ssh_config.cache_clear()


def old_seal_ssh(device: LoopbackDevice, identity: Path, command: str) -> subprocess.CompletedProcess[str]:
    """A plain ssh with every ``-o`` seal but reading the user's config (the seal before the allowlist)."""
    argv = [
        "ssh",
        "-T",
        "-p",
        str(device.port),
        "-l",
        device.user,
        "-o",
        "BatchMode=yes",
        "-o",
        f"IdentityFile={identity}",
    ]
    argv += ["-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null"]
    for option in SEALED_SSH_OPTIONS:
        argv += ["-o", option]
    return subprocess.run(
        [*argv, DEVICE_ADDR, command], capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL
    )


def test_the_config_key_and_setenv_get_through_the_options_alone(config_extras: dict, tmp_path: Path) -> None:
    """The control: ``-o`` options cannot take back a config's IdentityFile or SetEnv; the device takes both."""
    wrong = keygen(tmp_path / "wrong")
    result = old_seal_ssh(config_extras["device"], wrong, "echo FOO=$FOO")
    assert result.returncode == 0 and result.stdout == "FOO=bar\n", result.stderr


def test_the_allowlist_keeps_tuning_only(config_extras: dict) -> None:
    text = allowed_config(DEVICE_ADDR, config_extras["device"].port)
    lines = dict(line.split(" ", 1) for line in text.splitlines())
    assert lines == {"serveraliveinterval": "7", "compression": "yes", "user": "someone-else"}, text
    with_user = allowed_config(DEVICE_ADDR, config_extras["device"].port, config_extras["device"].user)
    assert sorted(with_user.splitlines()) == ["compression yes", "serveraliveinterval 7"]  # the driver's user wins
    assert allowed_config("127.0.0.24", 22) == ""  # no block for it: nothing differs from ssh's defaults


def test_without_ssh_the_allowlist_is_empty(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    sealing._ssh_config.cache_clear()
    monkeypatch.setenv("PATH", str(tmp_path))  # no ssh to read the config with
    try:
        assert allowed_config(DEVICE_ADDR, 22) == ""
    finally:
        sealing._ssh_config.cache_clear()


def test_a_config_ssh_refuses_is_an_error_naming_the_line(tmp_path: Path) -> None:
    """As a plain ssh would refuse it; the bad line is included only for DEVICE_ADDR (other ssh here unaffected)."""
    from jumpstarter_driver_ssh_mount import InvalidOptionError

    bad = tmp_path / "bad.conf"
    bad.write_text("NoSuchSetting yes\n")
    sealing._ssh_config.cache_clear()
    refused = pytest.raises(InvalidOptionError, match=r"^ssh refuses your ssh config \(.*line 1: Bad configuration")
    with user_ssh_config(f"Host {DEVICE_ADDR}\n    Include {bad}\n"), refused:
        allowed_config(DEVICE_ADDR, 22)
    sealing._ssh_config.cache_clear()


def test_a_config_identity_is_never_offered(config_extras: dict, tmp_path: Path) -> None:
    """The device accepts the config's IdentityFile key, not the driver's: no login, no mount."""
    assert_only_the_driver_key_logs_in(config_extras["device"], tmp_path)


def test_a_config_setenv_never_reaches_the_device(config_extras: dict, mountpoint: Path) -> None:
    """device_run gets no FOO; the mount's ssh reads the allowlisted file, which keeps the tuning only."""
    from jumpstarter.common.utils import serve

    device: LoopbackDevice = config_extras["device"]
    with serve(make_driver(device)) as client:
        assert client.run("echo FOO=$FOO", transport="direct", check=True).stdout == "FOO=\n"
        with client.mounted(mountpoint, remote_path=device.remote(), transport="direct") as m:
            group = set(live_group_members(m.pid))
            ssh = [p for p in processes() if p.pid in group and Path(p.argv()[0]).name == "ssh"]
            assert len(ssh) == 1, ssh
            argv = ssh[0].argv()
            config = argv[argv.index("-F") + 1] if "-F" in argv else next(a[2:] for a in argv if a.startswith("-F"))
            assert sorted(Path(config).read_text().splitlines()) == ["compression yes", "serveraliveinterval 7"]
    assert leftovers(mountpoint, dir_should_exist=True) == []
