"""Opening one SFTP session to the device: login with the route's keys and options, errors named as for sshfs.

The errors are the mount core's (``HostKeyError``, ``AuthenticationError``, ``ConnectError``,
``RemotePathError``, ``MountTimeoutError``), so the client's routes (``auto``'s fallbacks, the
exporter's keys read again after a refusal) treat both backends alike.
"""

from __future__ import annotations

import contextlib
import os
import socket
import stat
from dataclasses import dataclass
from typing import Any

import asyncssh

from jumpstarter_driver_ssh_mount.common.choices import transport_label
from jumpstarter_driver_ssh_mount.common.errors import (
    AuthenticationError,
    ConnectError,
    HostKeyError,
    MountError,
    MountTimeoutError,
    RemotePathError,
)
from jumpstarter_driver_ssh_mount.sftp.loop import LoopThread
from jumpstarter_driver_ssh_mount.sftp.sshsettings import SshSettings
from jumpstarter_driver_ssh_mount.ssh.target import SshfsTarget


@dataclass
class SftpSession:
    """A logged-in SSH connection and its SFTP client, on their own loop thread."""

    loop: LoopThread
    connection: asyncssh.SSHClientConnection
    sftp: asyncssh.SFTPClient

    @property
    def connected(self) -> bool:
        """True while the connection is open."""
        return self.loop.running and not self.connection.is_closed()

    def close(self) -> None:
        """Close the SFTP client and the connection, then the loop. Safe to call more than once."""
        if self.loop.running:

            async def close() -> None:
                self.sftp.exit()
                self.connection.close()
                await self.connection.wait_closed()

            with contextlib.suppress(Exception):
                self.loop.run(close(), timeout=5.0)
        self.loop.close()


def where(target: SshfsTarget, transport: str) -> str:
    """``user@host port N (transport)``, as sshfs's errors name the device."""
    return f"{target.spec.rsplit(':', 1)[0]} port {target.port} ({transport_label(transport)})"


def open_session(
    target: SshfsTarget,
    settings: SshSettings,
    timeout: float,
    transport: str,
    sock: socket.socket | None = None,
) -> SftpSession:
    """Log in to ``target`` (over ``sock`` when given: a relay's connection), start SFTP, check ``remote_path``.

    :raises MountError: a subclass naming what failed, after closing what was opened.
    """
    loop = LoopThread()
    place = where(target, transport)
    try:
        connection = loop.run(_connect(target, settings, sock, place), timeout)
    except BaseException as exc:
        loop.close()
        if isinstance(exc, TimeoutError):
            raise MountTimeoutError(f"no SFTP session with {place} within {timeout:g}s") from None
        raise
    try:
        sftp = loop.run(_start_sftp(connection, place), timeout)
        session = SftpSession(loop, connection, sftp)
        loop.run(_check_remote(sftp, target.remote_path, place), timeout)
    except BaseException as exc:
        loop.run(_abort(connection), 5.0)
        loop.close()
        if isinstance(exc, TimeoutError):
            raise MountTimeoutError(f"no SFTP session with {place} within {timeout:g}s") from None
        raise
    return session


async def _connect(
    target: SshfsTarget, settings: SshSettings, sock: socket.socket | None, place: str
) -> asyncssh.SSHClientConnection:
    kwargs: dict[str, Any] = dict(settings.kwargs)
    try:
        return await asyncssh.connect(target.host, target.port, sock=sock, **kwargs)
    except asyncssh.HostKeyNotVerifiable as exc:
        raise _host_key_error(target, settings, place, exc) from None
    except asyncssh.PermissionDenied as exc:
        raise AuthenticationError(
            f"{place} refused the identity ({exc.reason}); check the SSH driver's default_username and "
            "ssh_identity/ssh_identity_file"
        ) from None
    except ConnectionRefusedError:
        raise ConnectError(f"connection refused by {place}; is sshd running and listening on that port?") from None
    except TimeoutError:
        raise ConnectError(
            f"cannot reach {place}: connection timed out; check the device's address and network"
        ) from None
    except (OSError, asyncssh.Error) as exc:
        reason = getattr(exc, "reason", None) or getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
        raise ConnectError(
            f"the SSH connection to {place} failed before login ({reason}); is sshd running on the device "
            "and reachable from the exporter?"
        ) from None


def _host_key_error(target: SshfsTarget, settings: SshSettings, place: str, exc: asyncssh.Error) -> HostKeyError:
    """As sshfs's: ``changed`` when the trusted keys name the device (another key), rather than nothing."""
    changed = False
    if settings.known is not None:
        name = settings.alias or target.host
        changed = bool(settings.known.match(name, "", None if settings.alias else target.port)[0])
    if changed:
        message = (
            f"the host key of {place} does not match the one pinned in the known-hosts file; if the device "
            "was re-provisioned, pin its new key, otherwise do not trust it"
        )
    else:
        message = (
            f"the host key of {place} is not in the known-hosts file ({exc.reason}); add it there "
            "(ssh-keyscan), or check the exporter's keys instead (drop your own known-hosts options)"
        )
    error = HostKeyError(message)
    error.where, error.reason, error.changed = place, str(exc.reason), changed
    return error


async def _start_sftp(connection: asyncssh.SSHClientConnection, place: str) -> asyncssh.SFTPClient:
    try:
        return await connection.start_sftp_client()
    except (OSError, asyncssh.Error) as exc:
        reason = getattr(exc, "reason", None) or str(exc) or type(exc).__name__
        raise ConnectError(
            f"{place} offers no SFTP ({reason}); the device's sshd needs its sftp subsystem (OpenSSH: "
            "Subsystem sftp; Dropbear: an sftp-server binary)"
        ) from None


async def _check_remote(sftp: asyncssh.SFTPClient, remote_path: str, place: str) -> None:
    try:
        attrs = await sftp.stat(os.fsencode(remote_path))
    except asyncssh.SFTPNoSuchFile:
        raise RemotePathError(
            f"remote path {remote_path} does not exist on {place}; choose an existing directory"
        ) from None
    except asyncssh.SFTPError as exc:
        raise MountError(f"cannot read remote path {remote_path} on {place}: {exc.reason}") from None
    if attrs.permissions is not None and not stat.S_ISDIR(attrs.permissions):
        raise RemotePathError(f"remote path {remote_path} on {place} is not a directory; mount a directory")


async def _abort(connection: asyncssh.SSHClientConnection) -> None:
    connection.close()
    await connection.wait_closed()
