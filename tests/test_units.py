"""Pure functions of the core: argv, options, unmount commands, prompts. No processes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from jumpstarter_driver_ssh_mount import InvalidOptionError, SshfsTarget, build_argv, merge_options
from jumpstarter_driver_ssh_mount.client import parse_tcp_address
from jumpstarter_driver_ssh_mount.interactive import subshell_command, tagged_prompt
from jumpstarter_driver_ssh_mount.ssh.sealing import SEALED_SSH_OPTIONS
from jumpstarter_driver_ssh_mount.sshfs.command import cache_options, default_options, without_option
from jumpstarter_driver_ssh_mount.sshfs.mountinfo import parse_mountinfo
from jumpstarter_driver_ssh_mount.sshfs.symlinks import has_contain_symlinks, is_noise, symlink_options
from jumpstarter_driver_ssh_mount.sshfs.unmount import unmount_command


def test_argv_shape() -> None:
    argv = build_argv(SshfsTarget("10.0.0.5", 2222, "root", "/var/log"), "/mnt/x", ["reconnect", "cache=no"])
    assert argv == [
        "sshfs",
        "root@10.0.0.5:/var/log",
        "/mnt/x",
        "-f",
        "-p",
        "2222",
        "-o",
        "reconnect",
        "-o",
        "cache=no",
    ]


def test_argv_ipv6_port_22_no_user() -> None:
    argv = build_argv(SshfsTarget("fe80::1", 22, "", "/"), "/m", [])
    assert argv == ["sshfs", "[fe80::1]:/", "/m", "-f", "-p", "22"]  # always: never a config's Port


def test_defaults_and_identity() -> None:
    assert default_options("/proc/1/fd/3") == [
        *SEALED_SSH_OPTIONS,
        "LogLevel=ERROR",
        "BatchMode=yes",
        "reconnect",
        "ServerAliveInterval=5",
        "ServerAliveCountMax=3",
        "ConnectTimeout=10",
        "dir_cache=no",
        "attr_timeout=0.5",
        "entry_timeout=0.5",
        "IdentityFile=/proc/1/fd/3",
    ]
    assert not any(o.startswith("IdentityFile") for o in default_options(None))


def test_cache_modes() -> None:
    assert cache_options("fresh") == ["dir_cache=no", "attr_timeout=0.5", "entry_timeout=0.5"]
    assert cache_options("fast") == []
    assert "dir_cache=no" not in default_options(None, cache="fast")
    with pytest.raises(InvalidOptionError, match="fresh, fast"):
        cache_options("slow")
    # a user option still wins over the cache mode's
    assert "dir_cache=yes" in merge_options(default_options(None), ["dir_cache=yes"])
    assert "dir_cache=no" not in merge_options(default_options(None), ["dir_cache=yes"])


def test_symlink_options() -> None:
    assert symlink_options("/") == ["follow_symlinks"]
    assert symlink_options("/data") == (["transform_symlinks"] if has_contain_symlinks() else ["follow_symlinks"])
    assert symlink_options("/data", "/nonexistent/sshfs") == ["follow_symlinks"]  # unknown sshfs: the device resolves
    assert is_noise("warning: transform_symlinks with contain_symlinks may reject transformed links containing '..'")
    assert not is_noise("read: Connection reset by peer")


def test_user_option_replaces_default_case_insensitively() -> None:
    merged = merge_options(["StrictHostKeyChecking=no", "LogLevel=ERROR"], ["stricthostkeychecking=yes"])
    assert merged == ["LogLevel=ERROR", "stricthostkeychecking=yes"]


def test_comma_joined_user_options_replace_each_key() -> None:
    merged = merge_options(["LogLevel=ERROR", "BatchMode=yes"], ["reconnect,LogLevel=DEBUG"])
    assert merged == ["BatchMode=yes", "reconnect,LogLevel=DEBUG"]


@pytest.mark.parametrize("bad", ["-f", " -oProxyCommand=x", "", "   ", "a\nb", "a\0b"])
def test_bad_options(bad: str) -> None:
    with pytest.raises(InvalidOptionError):
        merge_options([], [bad])


def test_without_option() -> None:
    assert without_option(["allow_other", "reconnect,allow_other", "x=1"], "allow_other") == ["reconnect", "x=1"]


def test_unmount_commands(monkeypatch: pytest.MonkeyPatch) -> None:
    from jumpstarter_driver_ssh_mount.sshfs import unmount

    monkeypatch.setattr(unmount.shutil, "which", lambda name: f"/usr/bin/{name}" if name == "fusermount3" else None)
    assert unmount_command("/m") == ["/usr/bin/fusermount3", "-u", "/m"]
    assert unmount_command("/m", lazy=True) == ["/usr/bin/fusermount3", "-u", "-z", "/m"]
    monkeypatch.setattr(unmount.shutil, "which", lambda name: "/bin/fusermount" if name == "fusermount" else None)
    assert unmount_command("/m") == ["/bin/fusermount", "-u", "/m"]


def test_unmount_commands_without_fusermount(monkeypatch: pytest.MonkeyPatch) -> None:
    """Mocked: macOS (no fusermount, umount -f) cannot run here."""
    from jumpstarter_driver_ssh_mount.sshfs import unmount

    monkeypatch.setattr(unmount.shutil, "which", lambda name: None)
    assert unmount_command("/m", platform="linux") == ["umount", "/m"]
    assert unmount_command("/m", lazy=True, platform="linux") == ["umount", "-l", "/m"]
    assert unmount_command("/m", lazy=True, platform="darwin") == ["umount", "-f", "/m"]


def test_parse_tcp_address() -> None:
    assert parse_tcp_address("tcp://192.168.1.100:22") == ("192.168.1.100", 22)
    assert parse_tcp_address("tcp://[fe80::1]:2222") == ("fe80::1", 2222)
    for bad in ("192.168.1.1:22", "tcp://host", "udp://h:1"):
        with pytest.raises(ValueError):
            parse_tcp_address(bad)


def test_mountinfo_parsing_unescapes_spaces() -> None:
    line = "45 27 0:41 / /tmp/with\\040space rw,nosuid - fuse.sshfs root@h:/ rw,user_id=0\n"
    (entry,) = parse_mountinfo(line)
    assert entry.mountpoint == "/tmp/with space"
    assert entry.fstype == "fuse.sshfs" and entry.source == "root@h:/"


@pytest.mark.parametrize(
    ("shell", "argv"),
    [
        ("/bin/bash", ["/bin/bash", "--norc", "--noprofile", "-i"]),
        ("/usr/bin/zsh", ["/usr/bin/zsh", "--no-rcs", "-i"]),
        ("/bin/dash", ["/bin/dash", "-i"]),
    ],
)
def test_subshell_prompts(shell: str, argv: list[str]) -> None:
    got, env = subshell_command(shell, "/var/log", {"PS1": "$ "})
    assert got == argv
    assert env["PS1"] == "[sshfs:/var/log] $ "


def test_subshell_fish_wraps_prompt() -> None:
    argv, _ = subshell_command("/usr/bin/fish", "/", {})
    assert argv[:2] == ["/usr/bin/fish", "--init-command"] and "(mount)" in argv[2]


def test_jumpstarter_prompt_gets_tag_before_arrow() -> None:
    assert tagged_prompt("\\W ⚡local ➤ ", "/") == "\\W ⚡local (mount)➤ "


def test_core_imports_no_jumpstarter() -> None:
    """The layering rule: sshfs process handling knows nothing of Jumpstarter."""
    code = (
        "import sys, jumpstarter_driver_ssh_mount.sshfs, jumpstarter_driver_ssh_mount.interactive;"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('jumpstarter', 'grpc', 'anyio'));"
        "print(bad); sys.exit(1 if bad else 0)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_one_mounted_below_check(tmp_path: Path) -> None:
    """``/proc`` is a mountpoint, ``/`` has mounts below it; a fresh directory has none (nor its symlink)."""
    from jumpstarter_driver_ssh_mount.sshfs.mountinfo import anything_mounted_under

    (tmp_path / "link").symlink_to("/proc")
    assert anything_mounted_under("/proc") and anything_mounted_under("/")
    assert anything_mounted_under(tmp_path / "link")  # resolved: what it points at counts
    assert not anything_mounted_under(tmp_path)
