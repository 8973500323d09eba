"""``j mount`` inside ``jmp shell --exporter-config``: real processes, real signals."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from helpers import (
    JMP,
    LoopbackDevice,
    closed_port,
    descendants,
    env_with_jmp,
    exporter_config,
    folder_owner_pid,
    known_hosts_folders_now,
    leftovers,
    private_tmpdir,
    sshfs_mounts,
    target,
    wait_until,
)
from jumpstarter_driver_ssh_mount import CACHE_MODES, TRANSPORTS, build_argv
from jumpstarter_driver_ssh_mount.sshfs.mountinfo import mounts_at


def j_pid(shell: subprocess.Popen) -> int:
    """The `j` process under `jmp shell`."""
    for pid in descendants(shell.pid):
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if any(a.endswith(b"/j") or a == b"j" for a in argv[:2]) and b"mount" in argv:
            return pid
    raise AssertionError("no j process found")


@pytest.fixture
def exporter_yaml(device: LoopbackDevice, tmp_path: Path) -> Path:
    return exporter_config(device, tmp_path / "exporter.yaml")


def j_mount(exporter_yaml: Path, *args: str, stdin: int = subprocess.DEVNULL, **env: str) -> subprocess.Popen:
    return subprocess.Popen(
        # jmp shell --exporter-config does not pass on its command's exit code: sh prints j's
        [
            JMP,
            "shell",
            "--exporter-config",
            str(exporter_yaml),
            "--",
            "sh",
            "-c",
            'j mount "$@"; echo "j-exit=$?"',
            "sh",
            *args,
        ],
        stdin=stdin,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group, like a terminal job
        env=env_with_jmp(**env),
    )


def wait_mounted(shell: subprocess.Popen) -> str:
    """Read j's first line: "Mounted ..." once the mount is ready (empty if j failed)."""
    assert shell.stdout is not None
    line = shell.stdout.readline()
    assert line.startswith("Mounted "), (line, shell.poll())
    return line


@contextlib.contextmanager
def reaped(shell: subprocess.Popen) -> Iterator[subprocess.Popen]:
    """``shell``, and on the way out its whole process group killed if it is still running."""
    try:
        yield shell
    finally:
        if shell.poll() is None:
            os.killpg(shell.pid, signal.SIGKILL)
            shell.wait()


def finish(proc: subprocess.Popen, timeout: float = 30) -> tuple[int | None, str, str]:
    """(j's exit code, or None if sh did not report it; stdout without that line; stderr)."""
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        raise AssertionError(f"j did not finish in {timeout}s; stdout: {out!r}; stderr: {err[-2000:]!r}") from None
    match = re.search(r"^j-exit=(\d+)$", out, re.M)
    out = re.sub(r"^j-exit=\d+\n?", "", out, flags=re.M)
    return (int(match.group(1)) if match else None), out, err


@pytest.mark.parametrize("direct", [False, True], ids=["port-forward", "direct"])
def test_foreground_mount_then_ctrl_c(
    device: LoopbackDevice, exporter_yaml: Path, mountpoint: Path, direct: bool
) -> None:
    args = [str(mountpoint), "-r", device.remote("/var/log"), "--foreground", *(["--direct"] if direct else [])]
    shell = j_mount(exporter_yaml, *args)
    with reaped(shell):
        first = wait_mounted(shell)
        assert (mountpoint / "messages").read_text() == (device.root / "var/log/messages").read_text()
        os.killpg(shell.pid, signal.SIGINT)  # Ctrl+C in the terminal reaches the whole job
        _, out, err = finish(shell)  # jmp shell also ends on SIGINT, so sh may not report j's code
    # jmp shell itself answers the group's SIGINT ("Cancelled by user", exit 1); j's part is in out
    assert first.startswith(f"Mounted {device.user}@") and f"on {mountpoint}" in first
    assert f"Unmounted {mountpoint}" in out
    assert "Traceback" not in err
    assert leftovers(mountpoint, dir_should_exist=True) == []


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
@pytest.mark.parametrize("direct", [False, True], ids=["port-forward", "direct"])
def test_signal_to_j_alone_cleans_up(
    device: LoopbackDevice, exporter_yaml: Path, mountpoint: Path, sig: signal.Signals, direct: bool
) -> None:
    args = [str(mountpoint), "-r", device.remote("/"), "--foreground", *(["--direct"] if direct else [])]
    shell = j_mount(exporter_yaml, *args)
    with reaped(shell):
        wait_mounted(shell)
        os.kill(j_pid(shell), sig)
        code, out, err = finish(shell, timeout=20)
    assert code == 0, err
    assert f"Unmounted {mountpoint}" in out, (out, err)
    assert leftovers(mountpoint, dir_should_exist=True) == []


def test_sshfs_dying_is_reported(device: LoopbackDevice, exporter_yaml: Path, mountpoint: Path) -> None:
    shell = j_mount(exporter_yaml, str(mountpoint), "-r", device.remote("/"), "--foreground")
    with reaped(shell):
        wait_mounted(shell)
        sshfs = [p for p in descendants(shell.pid) if Path(f"/proc/{p}/comm").read_text().strip() == "sshfs"]
        assert len(sshfs) == 1
        os.kill(sshfs[0], signal.SIGKILL)
        code, out, err = finish(shell, timeout=20)
    assert code != 0
    assert "sshfs exited unexpectedly" in err
    assert "Unmounted" not in out
    wait_until(lambda: not leftovers(mountpoint, dir_should_exist=True), timeout=10, what="cleanup")


def test_bad_remote_path_is_one_line(device: LoopbackDevice, exporter_yaml: Path, mountpoint: Path) -> None:
    code, out, err = finish(j_mount(exporter_yaml, str(mountpoint), "-r", device.remote("/nope"), "--foreground"))
    assert code != 0
    assert "does not exist" in err
    assert "Traceback" not in err
    assert "Unmounted" not in out
    assert leftovers(mountpoint, dir_should_exist=True) == []


def test_sshd_down_is_one_line(device: LoopbackDevice, tmp_path: Path, mountpoint: Path) -> None:
    with closed_port() as port:
        down = LoopbackDevice(device.base, port=port)
        yaml = exporter_config(down, tmp_path / "down.yaml")  # same keys: down shares the base dir
        code, out, err = finish(j_mount(yaml, str(mountpoint), "--foreground"))
    assert code != 0
    assert "cannot reach the device's sshd" in err
    assert "Traceback" not in err, err[:3000]
    assert len(err) < 1000, err
    assert "Mounted" not in out and "Unmounted" not in out
    assert leftovers(mountpoint, dir_should_exist=True) == []


def test_umount_of_an_orphan(device: LoopbackDevice, exporter_yaml: Path, mountpoint: Path) -> None:
    plain = build_argv(
        target(device),
        str(mountpoint),
        [f"IdentityFile={device.client_key}", "StrictHostKeyChecking=no", "UserKnownHostsFile=/dev/null"],
    )
    orphan = subprocess.Popen(
        plain,
        stdin=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_until(lambda: mounts_at(mountpoint), what="the orphan mount")
        code, out, err = finish(j_mount(exporter_yaml, "--umount", str(mountpoint)))
        assert code == 0, err
        assert f"Unmounted {mountpoint}" in out
        assert orphan.wait(10) == 0
    finally:
        if orphan.poll() is None:
            orphan.terminate()
            orphan.wait()
    assert sshfs_mounts(mountpoint) == []


def test_umount_of_nothing_is_a_clear_error(exporter_yaml: Path, mountpoint: Path) -> None:
    code, out, err = finish(j_mount(exporter_yaml, "--umount", str(mountpoint)))
    assert code != 0
    assert f"{mountpoint} is not mounted; nothing to unmount" in err
    assert "lazy" not in err and "Invalid argument" not in err
    assert "Traceback" not in err
    assert "Unmounted" not in out
    code, out, err = finish(j_mount(exporter_yaml, "--umount", str(mountpoint / "missing")))
    assert code != 0 and f"{mountpoint}/missing does not exist; nothing to unmount" in err


def test_foreground_mount_unmounted_from_outside(device: LoopbackDevice, exporter_yaml: Path, mountpoint: Path) -> None:
    shell = j_mount(exporter_yaml, str(mountpoint), "-r", device.remote("/var/log"), "--foreground")
    with reaped(shell):
        wait_mounted(shell)
        subprocess.run(["fusermount3", "-u", str(mountpoint)], check=True, timeout=30)
        code, out, err = finish(shell, timeout=20)
    assert code == 0, err
    assert f"{mountpoint} was unmounted from outside (fusermount -u, umount); sshfs exited" in out
    assert "unexpectedly" not in err and "Traceback" not in err
    assert leftovers(mountpoint, dir_should_exist=True) == []


def test_subshell_mode(device: LoopbackDevice, exporter_yaml: Path, mountpoint: Path) -> None:
    """Default mode: a subshell runs while mounted; leaving it unmounts."""
    shell = j_mount(
        exporter_yaml, str(mountpoint), "-r", device.remote("/etc"), stdin=subprocess.PIPE, SHELL="/bin/bash"
    )
    commands = f'echo "prompt=$PS1"; cat {mountpoint}/os-release; exit\n'
    out, err = shell.communicate(commands, timeout=30)
    assert f"Mounted {device.user}@" in out
    assert "Type 'exit' to unmount and return." in out
    assert "prompt=[sshfs:" in out
    assert 'NAME="Loopback Device"' in out
    assert f"Unmounted {mountpoint}" in out
    assert re.search(r"^j-exit=0$", out, re.M), (out, err)
    assert leftovers(mountpoint, dir_should_exist=True) == []


def test_kill_9_of_j_mount_leaves_a_known_hosts_folder_the_next_j_mount_sweeps(
    device: LoopbackDevice, exporter_yaml: Path, mountpoint: Path
) -> None:
    """In a TMPDIR of its own: no other run's sweep (at its start) takes the killed j's folder first."""
    with private_tmpdir() as tmpdir:
        shell = j_mount(exporter_yaml, str(mountpoint), "-r", device.remote("/"), "--foreground", TMPDIR=str(tmpdir))
        with reaped(shell):
            wait_mounted(shell)
            killed = j_pid(shell)
            [folder] = [Path(f) for f in known_hosts_folders_now(tmpdir) if folder_owner_pid(f) == killed]
            os.kill(killed, signal.SIGKILL)
            wait_until(lambda: not leftovers(mountpoint, dir_should_exist=True), 10, "the mount to go away")
        assert (folder / "known_hosts").exists()  # kill -9 gives no chance to remove it

        again = j_mount(exporter_yaml, str(mountpoint), "-r", device.remote("/"), TMPDIR=str(tmpdir))  # exits at once
        code, out, err = finish(again)
        assert code == 0 and f"Unmounted {mountpoint}" in out, (out, err)
        assert not folder.exists()
    assert leftovers(mountpoint, dir_should_exist=True) == []


def sshfs_argv(shell: subprocess.Popen) -> list[str]:
    """The command line of the one sshfs under ``shell``."""
    (pid,) = [p for p in descendants(shell.pid) if Path(f"/proc/{p}/comm").read_text().strip() == "sshfs"]
    return Path(f"/proc/{pid}/cmdline").read_text().split("\0")


@pytest.mark.parametrize(
    ("flags", "via"),
    [([], "direct"), (["--transport", "forward"], "port forward"), (["--insecure"], "port forward")],
    ids=["auto", "forward", "insecure"],
)
def test_transport_and_insecure_flags(
    device: LoopbackDevice, exporter_yaml: Path, mountpoint: Path, flags: list[str], via: str
) -> None:
    shell = j_mount(exporter_yaml, str(mountpoint), "-r", device.remote("/"), "--foreground", *flags)
    assert shell.stdout is not None
    with reaped(shell):
        logged: list[str] = []  # j's log lines (the insecure warning) come before "Mounted ..."
        while not (first := shell.stdout.readline()).startswith("Mounted "):
            assert first, (logged, shell.poll())
            logged.append(first)
        argv = sshfs_argv(shell)
        assert (mountpoint / "etc/os-release").exists()
        os.kill(j_pid(shell), signal.SIGTERM)
        code, _, err = finish(shell, timeout=20)
    assert code == 0, err
    verified = "--insecure" not in flags
    whose = "host key verified against what the exporter vouches for" if verified else "host key NOT verified"
    assert f"on {mountpoint} via {via} (" in first and whose in first, first
    assert ("StrictHostKeyChecking=yes" in argv) == verified, argv
    assert ("StrictHostKeyChecking=no" in argv) == (not verified), argv
    warned = "insecure: the device's host key is not verified" in "".join(logged)
    assert warned == (not verified), logged
    assert leftovers(mountpoint, dir_should_exist=True) == []


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--direct", "--transport", "forward"], "--direct means --transport direct"),
        (["--transport", "carrier-pigeon"], "'carrier-pigeon' is not one of 'auto', 'direct', 'forward'"),
        (["-o", "ServerAliveInterval=abc"], "ssh refuses the option 'ServerAliveInterval=abc' (invalid time value)"),
    ],
    ids=["direct-vs-transport", "unknown", "ssh-option-typo"],
)
def test_transport_usage_errors(exporter_yaml: Path, mountpoint: Path, flags: list[str], message: str) -> None:
    code, out, err = finish(j_mount(exporter_yaml, str(mountpoint), "--foreground", *flags))
    assert code != 0, (out, err)
    assert message in err and "Try 'j mount --help' for help." in err  # a usage error
    assert "Mounted" not in out
    assert leftovers(mountpoint, dir_should_exist=True) == []


def test_help_lists_every_transport_and_cache_mode(exporter_yaml: Path) -> None:
    """`j mount --help` offers and explains each transport (relay included) and cache mode, from one table each."""
    code, out, err = finish(j_mount(exporter_yaml, "--help"))
    assert code == 0, err
    text = " ".join(out.split())  # click wraps the help text
    assert f"[{'|'.join(TRANSPORTS)}]" in text
    assert f"[{'|'.join(CACHE_MODES)}]" in text
    for name in (*TRANSPORTS, *CACHE_MODES):
        assert f"{name}: " in text, name
    assert "relay" in TRANSPORTS
