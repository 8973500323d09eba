"""Turning what sshfs and ssh print into one typed, one-line error."""

from __future__ import annotations

from .command import TRANSPORT_LABELS, SshfsTarget
from .errors import (
    AuthenticationError,
    ConnectError,
    FuseUnavailableError,
    HostKeyError,
    InvalidOptionError,
    MountError,
    RemotePathError,
    install_hint,
)

ALLOW_OTHER_REFUSED = "allow_other only allowed if"


def last_line(stderr: str) -> str:
    """The last non-empty line, stripped (sshfs puts the cause last)."""
    lines = [line.strip() for line in stderr.replace("\r", "\n").splitlines() if line.strip()]
    return lines[-1] if lines else ""


def first_line(stderr: str) -> str:
    """The first non-empty line, stripped (ssh puts the cause first)."""
    lines = [line.strip() for line in stderr.replace("\r", "\n").splitlines() if line.strip()]
    return lines[0] if lines else ""


def diagnose(stderr: str, returncode: int | None, target: SshfsTarget, *, transport: str) -> MountError:
    """The error for an sshfs that exited before the filesystem appeared.

    ``transport`` says how the device was reached (``"direct"`` or ``"forward"``).
    """
    where = f"{target.spec.rsplit(':', 1)[0]} port {target.port} ({TRANSPORT_LABELS.get(transport, transport)})"
    text = stderr.lower()
    remote = target.remote_path
    if "remote host identification has changed" in text or ("host key for" in text and "has changed" in text):
        return HostKeyError(
            f"the host key of {where} does not match the one pinned in the known-hosts file; if the device "
            "was re-provisioned, pin its new key, otherwise do not trust it"
        )
    if "host key verification failed" in text:
        return HostKeyError(
            f"the host key of {where} is not in the known-hosts file; add it there "
            "(ssh-keyscan) or drop StrictHostKeyChecking=yes"
        )
    if "permission denied (" in text or "too many authentication failures" in text:
        return AuthenticationError(
            f"{where} refused the identity ({first_line(stderr)}); check the SSH driver's "
            "default_username and ssh_identity/ssh_identity_file"
        )
    if "connection refused" in text:
        return ConnectError(f"connection refused by {where}; is sshd running and listening on that port?")
    if "connection timed out" in text or "no route to host" in text or "could not resolve" in text:
        return ConnectError(f"cannot reach {where}: {first_line(stderr)}; check the device's address and network")
    if "unknown option" in text:
        return InvalidOptionError(f"sshfs refused an option: {last_line(stderr)}; fix or drop that -o option")
    if ALLOW_OTHER_REFUSED in text:
        return FuseUnavailableError(
            f"FUSE refused allow_other: {last_line(stderr)}; add user_allow_other to /etc/fuse.conf"
        )
    if (
        "/dev/fuse" in text
        or "fuse: device not found" in text
        or "mount failed" in text
        or ("fusermount" in text and "not found" in text)
    ):
        return FuseUnavailableError(
            f"FUSE is not available: {last_line(stderr)}; load the fuse module and make /dev/fuse "
            f"usable ({install_hint('fuse')})"
        )
    if text.rstrip().endswith("no such file or directory") and remote in stderr:
        return RemotePathError(f"remote path {remote} does not exist on {where}; choose an existing directory")
    if text.rstrip().endswith("not a directory") and remote in stderr:
        return RemotePathError(f"remote path {remote} on {where} is not a directory; mount a directory")
    if (
        "connection reset" in text
        or "connection closed" in text
        or "kex_exchange_identification" in text
        or "remote host has disconnected" in text
    ):
        return ConnectError(
            f"the SSH connection to {where} was closed before login ({first_line(stderr)}); "
            "is sshd running on the device and reachable from the exporter?"
        )
    detail = last_line(stderr) or "no message"
    return MountError(f"sshfs exited with code {returncode} before mounting: {detail}")
