"""Turning what sshfs and ssh print into one typed, one-line error, ssh's own reason first.

sshfs writes its own lines around ssh's (a symlink-option warning first, ``read: Connection
reset by peer`` last); ``reason`` is ssh's line, the first that is not sshfs's noise.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property

from jumpstarter_driver_ssh_mount.common.choices import transport_label
from jumpstarter_driver_ssh_mount.common.errors import (
    AuthenticationError,
    ConnectError,
    FuseUnavailableError,
    HostKeyError,
    InvalidOptionError,
    MountError,
    RemotePathError,
    install_hint,
)
from jumpstarter_driver_ssh_mount.ssh.target import SshfsTarget
from jumpstarter_driver_ssh_mount.sshfs.symlinks import is_noise

ALLOW_OTHER_REFUSED = "allow_other only allowed if"


def last_line(stderr: str) -> str:
    """The last non-empty line, stripped (sshfs puts the cause last)."""
    lines = [line.strip() for line in stderr.replace("\r", "\n").splitlines() if line.strip()]
    return lines[-1] if lines else ""


def first_line(stderr: str) -> str:
    """The first non-empty line that is not sshfs's noise, stripped (ssh puts the cause first)."""
    lines = [line.strip() for line in stderr.replace("\r", "\n").splitlines() if line.strip() and not is_noise(line)]
    return lines[0] if lines else ""


def ssh_reason(stderr: str) -> str:
    """ssh's own reason: its first line that says something (not sshfs's noise, not a row of ``@``)."""
    for line in stderr.replace("\r", "\n").splitlines():
        text = line.strip().strip("@").strip()
        if text and not is_noise(line):
            return text
    return ""


def _host_key_error(message: str, exited: _Exit, *, changed: bool) -> HostKeyError:
    error = HostKeyError(message)
    error.where, error.reason, error.changed = exited.where, ssh_reason(exited.stderr), changed
    return error


@dataclass(frozen=True)
class _Exit:
    """What an sshfs that exited early left to go on."""

    stderr: str
    where: str  # "user@host port N (transport)"
    remote: str

    @cached_property
    def text(self) -> str:
        """stderr, lower-cased."""
        return self.stderr.lower()

    def says(self, *phrases: str) -> bool:
        """True when stderr (lower-cased) holds any of ``phrases``."""
        return any(phrase in self.text for phrase in phrases)

    def says_all(self, *phrases: str) -> bool:
        """True when stderr (lower-cased) holds every one of ``phrases``."""
        return all(phrase in self.text for phrase in phrases)

    def config_error(self) -> bool:
        """True when ssh refused its options or config file before connecting."""
        return self.says("command-line line 0", "command-line: line 0", "bad configuration option") or (
            self.says_all("terminating", "bad configuration option")
        )

    def ends_about_remote(self, phrase: str) -> bool:
        """True when stderr ends with ``phrase`` and names the remote path (sshfs's last word on it)."""
        return self.text.rstrip().endswith(phrase) and self.remote in self.stderr


#: (does it match, the error it means), tried in order; the first match wins.
_RULES: tuple[tuple[Callable[[_Exit], bool], Callable[[_Exit], MountError]], ...] = (
    (
        lambda e: e.config_error(),
        lambda e: InvalidOptionError(
            f"ssh refused its options before connecting ({first_line(e.stderr)}); fix or drop that option "
            "(an -o option, or a line in the ssh config file named)"
        ),
    ),
    (
        lambda e: e.says("remote host identification has changed") or e.says_all("host key for", "has changed"),
        lambda e: _host_key_error(
            f"the host key of {e.where} does not match the one pinned in the known-hosts file; if the device "
            "was re-provisioned, pin its new key, otherwise do not trust it",
            e,
            changed=True,
        ),
    ),
    (
        lambda e: e.says("host key verification failed"),
        lambda e: _host_key_error(
            f"the host key of {e.where} is not in the known-hosts file ({ssh_reason(e.stderr)}); add it there "
            "(ssh-keyscan), or check the exporter's keys instead (drop your own known-hosts options)",
            e,
            changed=False,
        ),
    ),
    (
        lambda e: e.says("permission denied (", "too many authentication failures"),
        lambda e: AuthenticationError(
            f"{e.where} refused the identity ({first_line(e.stderr)}); check the SSH driver's "
            "default_username and ssh_identity/ssh_identity_file"
        ),
    ),
    (
        lambda e: e.says("connection refused"),
        lambda e: ConnectError(f"connection refused by {e.where}; is sshd running and listening on that port?"),
    ),
    (
        lambda e: e.says("connection timed out", "no route to host", "could not resolve"),
        lambda e: ConnectError(
            f"cannot reach {e.where}: {first_line(e.stderr)}; check the device's address and network"
        ),
    ),
    (
        lambda e: e.says("unknown option"),
        lambda e: InvalidOptionError(f"sshfs refused an option: {last_line(e.stderr)}; fix or drop that -o option"),
    ),
    (
        lambda e: e.says(ALLOW_OTHER_REFUSED),
        lambda e: FuseUnavailableError(
            f"FUSE refused allow_other: {last_line(e.stderr)}; add user_allow_other to /etc/fuse.conf"
        ),
    ),
    (
        lambda e: (
            e.says("/dev/fuse", "fuse: device not found", "mount failed") or e.says_all("fusermount", "not found")
        ),
        lambda e: FuseUnavailableError(
            f"FUSE is not available: {last_line(e.stderr)}; load the fuse module and make /dev/fuse "
            f"usable ({install_hint('fuse')})"
        ),
    ),
    (
        lambda e: e.ends_about_remote("no such file or directory"),
        lambda e: RemotePathError(f"remote path {e.remote} does not exist on {e.where}; choose an existing directory"),
    ),
    (
        lambda e: e.ends_about_remote("not a directory"),
        lambda e: RemotePathError(f"remote path {e.remote} on {e.where} is not a directory; mount a directory"),
    ),
    (
        lambda e: e.says(
            "connection reset", "connection closed", "kex_exchange_identification", "remote host has disconnected"
        ),
        lambda e: ConnectError(
            f"the SSH connection to {e.where} was closed before login ({first_line(e.stderr)}); "
            "is sshd running on the device and reachable from the exporter?"
        ),
    ),
)


def diagnose(stderr: str, returncode: int | None, target: SshfsTarget, *, transport: str) -> MountError:
    """The error for an sshfs that exited before the filesystem appeared.

    ``transport`` says how the device was reached (``"direct"``, ``"forward"`` or ``"relay"``).
    """
    where = f"{target.spec.rsplit(':', 1)[0]} port {target.port} ({transport_label(transport)})"
    exited = _Exit(stderr, where, target.remote_path)
    for matches, error in _RULES:
        if matches(exited):
            return error(exited)
    return MountError(f"sshfs exited with code {returncode} before mounting: {first_line(stderr) or 'no message'}")
