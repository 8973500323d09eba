"""Opening one SFTP session to the device: login with the route's keys and options, errors named as for sshfs.

The errors are the mount core's (``HostKeyError``, ``AuthenticationError``, ``ConnectError``,
``RemotePathError``, ``MountTimeoutError``), so the client's routes (``auto``'s fallbacks, the
exporter's keys read again after a refusal) treat both backends alike.

A session outlives its connection: when the device drops it (a reboot, a reflash), ``revive`` logs
in again over the same route (the same address, port forward or relay and its token, the same key
and settings, each step bounded by ``ConnectTimeout``); a key the known-hosts file lacks is checked
by the route's ``KeyHook`` (``hostkeycheck``). While the device is down that fails at once with an
``OSError`` saying it is unreachable.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import socket
import stat
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import asyncssh

from jumpstarter_driver_ssh_mount.common.choices import transport_label
from jumpstarter_driver_ssh_mount.common.defaults import SFTP_CONNECT_TIMEOUT
from jumpstarter_driver_ssh_mount.common.errors import (
    AuthenticationError,
    ConnectError,
    HostKeyError,
    MountError,
    MountTimeoutError,
    RemotePathError,
)
from jumpstarter_driver_ssh_mount.sftp.hostkeycheck import hook_settings
from jumpstarter_driver_ssh_mount.sftp.loop import LoopThread
from jumpstarter_driver_ssh_mount.sftp.sshsettings import SshSettings
from jumpstarter_driver_ssh_mount.ssh.keyhook import KeyHook
from jumpstarter_driver_ssh_mount.ssh.target import SshfsTarget

logger = logging.getLogger("jumpstarter_driver_ssh_mount")
CLOSE_TIMEOUT = 5.0  # seconds closing a connection may take


@dataclass
class Redial:
    """How to log in again over the same route: a relay dialled again with its token (``dial``), else ``host:port``."""

    target: SshfsTarget
    settings: SshSettings
    transport: str
    dial: Callable[[], socket.socket] | None = None
    hook: KeyHook | None = None

    @property
    def timeout(self) -> float:
        """Each step of a new login is bounded by the route's ``ConnectTimeout``."""
        return float(self.settings.kwargs.get("connect_timeout") or SFTP_CONNECT_TIMEOUT)


@dataclass
class SftpSession:
    """A logged-in SSH connection and its SFTP client, on their own loop thread; ``revive`` logs in again."""

    loop: LoopThread
    connection: asyncssh.SSHClientConnection
    sftp: asyncssh.SFTPClient
    redial: Redial | None = None
    generation: int = 0  # how many times it logged in again
    closed: bool = False
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def connected(self) -> bool:
        """True while the connection is open."""
        return self.loop.running and not self.connection.is_closed()

    @property
    def alive(self) -> bool:
        """True until ``close``, the device down or not (the next call logs in again)."""
        return not self.closed and self.loop.running

    def abort(self) -> None:
        """Drop the connection now, without a goodbye (calls waiting on it fail as on a lost connection)."""
        if self.loop.running:
            self.loop.loop.call_soon_threadsafe(self.connection.abort)

    def revive(self, seen: int, path: str) -> None:
        """Log in again over the same route, in place of generation ``seen``'s lost connection (nothing to do
        if another call did already), each step bounded by ``ConnectTimeout``.

        :raises OSError: ``ENOTCONN`` saying the device is unreachable (or its host key refused, both fingerprints).
        """
        with self._lock:
            if self.closed or self.redial is None:
                raise OSError(errno.ENOTCONN, "the SFTP session is closed", path)
            if self.generation != seen:
                return
            redial = self.redial
            with contextlib.suppress(Exception):
                self.loop.run(_abort(self.connection), CLOSE_TIMEOUT)
            sock = None
            try:
                sock = redial.dial() if redial.dial is not None else None
                self.connection, self.sftp = _login(
                    self.loop, redial.target, redial.settings, redial.timeout, redial.transport, sock, redial.hook
                )
            except MountError as exc:
                if sock is not None:
                    sock.close()
                refused = redial.hook.refused if redial.hook is not None else None
                unreachable = f"the device is unreachable: {exc}"
                # a HostKeyError: it answers, with a key nobody vouches for (the hook's note: both fingerprints)
                reason = (refused or str(exc)) if isinstance(exc, HostKeyError) else unreachable
                raise OSError(errno.ENOTCONN, reason, path) from None
            self.generation += 1
            logger.info("logged in again to %s", where(redial.target, redial.transport))

    def close(self) -> None:
        """Close the SFTP client and the connection, then the loop. Safe to call more than once."""
        with self._lock:
            self.closed = True
            if self.loop.running:

                async def close() -> None:
                    self.sftp.exit()
                    self.connection.close()
                    await self.connection.wait_closed()

                with contextlib.suppress(Exception):
                    self.loop.run(close(), timeout=CLOSE_TIMEOUT)
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
    redial: Redial | None = None,
) -> SftpSession:
    """Log in to ``target`` (over ``sock`` when given: a relay's connection), start SFTP, check ``remote_path``.
    ``redial`` (its hook checks keys the file lacks) is how ``revive`` logs in again.

    :raises MountError: a subclass naming what failed, after closing what was opened.
    """
    loop = LoopThread()
    try:
        connection, sftp = _login(loop, target, settings, timeout, transport, sock, redial.hook if redial else None)
    except BaseException:
        loop.close()
        raise
    return SftpSession(loop, connection, sftp, redial)


def _login(
    loop: LoopThread,
    target: SshfsTarget,
    settings: SshSettings,
    timeout: float,
    transport: str,
    sock: socket.socket | None,
    hook: KeyHook | None,
) -> tuple[asyncssh.SSHClientConnection, asyncssh.SFTPClient]:
    """A logged-in connection and its SFTP client on ``loop``, ``remote_path`` checked; nothing left on failure."""
    place = where(target, transport)
    try:
        connection = loop.run(_connect(target, settings, sock, place, hook), timeout)
    except TimeoutError:
        raise MountTimeoutError(f"no SFTP session with {place} within {timeout:g}s") from None
    try:
        sftp = loop.run(_start_sftp(connection, place), timeout)
        loop.run(_check_remote(sftp, target.remote_path, place), timeout)
    except BaseException as exc:
        with contextlib.suppress(Exception):
            loop.run(_abort(connection), CLOSE_TIMEOUT)
        if isinstance(exc, TimeoutError):
            raise MountTimeoutError(f"no SFTP session with {place} within {timeout:g}s") from None
        raise
    return connection, sftp


async def _connect(
    target: SshfsTarget, settings: SshSettings, sock: socket.socket | None, place: str, hook: KeyHook | None
) -> asyncssh.SSHClientConnection:
    kwargs: dict[str, Any] = {**settings.kwargs, **hook_settings(hook)}
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
