"""Running one shell command on the device with ``ssh``, bounded in time: ``run_command``.

The command line is built like the mounts' (the same sealed ssh options, host-key rule
and identity file), and ``ssh`` runs in its own session, so a timeout ends it and everything
it started on this host. A command that ignores its closed connection may keep running on
the device: ssh without a terminal cannot signal it there.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from collections.abc import Mapping, Sequence

from jumpstarter_driver_ssh_mount.ssh.commandresult import CommandResult, DeviceCommandTimeout
from jumpstarter_driver_ssh_mount.ssh.hostkeypolicy import host_key_options
from jumpstarter_driver_ssh_mount.ssh.sealing import sealed_environment
from jumpstarter_driver_ssh_mount.ssh.sshoptions import DEFAULT_SSH_OPTIONS, merge_options
from jumpstarter_driver_ssh_mount.ssh.target import SshfsTarget

#: Seconds a killed ssh gets to exit after SIGTERM, before SIGKILL.
KILL_GRACE = 2.0
#: ssh options every command gets unless the caller passes the same key.
COMMAND_SSH_OPTIONS: tuple[str, ...] = (*DEFAULT_SSH_OPTIONS, "ConnectTimeout=10")


def ssh_argv(
    target: SshfsTarget,
    command: str | None,
    *,
    identity_path: str | None = None,
    options: Sequence[str] = (),
    config_path: str | None = None,
) -> list[str]:
    """The ``ssh`` argv running ``command`` (one shell command line) on ``target``; ``-N`` for None (no command).

    Default options first (the seal against the user's ssh config), each replaced by an option
    in ``options`` with the same key; host key options as ``hostkeypolicy.host_key_options`` says.
    ``config_path``: the ssh config ssh reads instead of the user's (``sealing.sealed_config``).
    """
    merged = merge_options(COMMAND_SSH_OPTIONS, [*host_key_options(options), *options])
    if identity_path:
        merged.append(f"IdentityFile={identity_path}")
    argv = ["ssh", "-T", *(["-N"] if command is None else []), "-p", str(target.port or 22)]
    argv += ["-F", config_path] if config_path else []
    if target.user:
        argv += ["-l", target.user]
    for option in merged:
        argv += ["-o", option]
    return [*argv, "--", target.host, *([] if command is None else [command])]


def run_command(
    argv: Sequence[str],
    command: str,
    *,
    timeout: float,
    check: bool = False,
    env: Mapping[str, str] | None = None,
    stated: float | None = None,
) -> CommandResult:
    """Run ``argv`` (from ``ssh_argv``) with no input; wait at most ``timeout`` seconds.

    ``env`` adds to the sealed environment (the relay dialer's ``SHELL``); ``stated`` is the timeout the
    caller was given, for the error (``timeout`` may be what is left of it).

    :raises DeviceCommandTimeout: it ran longer (ssh and what it started here are killed).
    :raises DeviceCommandError: ``check`` and it exited non-zero.
    """
    process = subprocess.Popen(
        list(argv),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        errors="replace",
        start_new_session=True,
        env={**sealed_environment(), **(env or {})},
    )
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        stdout, stderr = _kill(process)
        result = CommandResult(command, process.returncode, stdout, stderr)
        raise DeviceCommandTimeout(result, f"did not finish within {stated or timeout:g}s (ssh was killed)") from None
    except BaseException:  # Ctrl+C: do not leave ssh behind
        _kill(process)
        raise
    result = CommandResult(command, process.returncode, stdout, stderr)
    return result.check() if check else result


def _kill(process: subprocess.Popen[str]) -> tuple[str, str]:
    """End ``process`` and its session (SIGTERM, then SIGKILL); what it wrote."""
    for sig, grace in ((signal.SIGTERM, KILL_GRACE), (signal.SIGKILL, None)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, sig)
        try:
            return process.communicate(timeout=grace)
        except subprocess.TimeoutExpired:
            continue
    return "", ""  # not reached: communicate() without a timeout returns
