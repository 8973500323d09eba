"""``SftpFiles``: the device's files over SFTP, with the same device-file methods as a FUSE ``Mount``.

``start_sftp`` logs in over a route the client opened (its host, port and ssh options; a relay's
connection as ``sock``) and returns ``SftpFiles``. It owns, and releases in reverse order on
``unmount`` (or leaving ``with``), and on every failure path: the SFTP session and its loop thread,
and whatever the caller handed over in ``resources`` (a port forward, the known-hosts file, the
relay). The private key is imported in memory; nothing is written on the test host.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import CancelledError
from contextlib import ExitStack

from jumpstarter_driver_ssh_mount.common.choices import transport_label
from jumpstarter_driver_ssh_mount.common.defaults import DEFAULT_MOUNT_TIMEOUT
from jumpstarter_driver_ssh_mount.devicefiles.files import DeviceFiles
from jumpstarter_driver_ssh_mount.sftp.devicepath import DevicePath
from jumpstarter_driver_ssh_mount.sftp.session import Redial, SftpSession, open_session
from jumpstarter_driver_ssh_mount.sftp.sftpfs import SftpFS
from jumpstarter_driver_ssh_mount.sftp.sshsettings import ssh_settings
from jumpstarter_driver_ssh_mount.ssh.hostkeypolicy import host_key_options
from jumpstarter_driver_ssh_mount.ssh.keyhook import KeyHook
from jumpstarter_driver_ssh_mount.ssh.target import SshfsTarget

logger = logging.getLogger("jumpstarter_driver_ssh_mount")


class SftpFiles(DeviceFiles):
    """The device directory ``remote_path`` over one SFTP session. Let go of it with ``unmount()`` or ``with``.

    ``root`` (what the ``remote_path`` fixture hands out) and ``files / "x"`` are ``DevicePath``
    objects: pathlib's file API, asking the device each time. Device-file chores (``snapshot``,
    ``preserve``, ``restore_preserved``, ``wait_for``, ``collect``) come from ``DeviceFiles``. It outlives
    a device reboot: the first call after the device answers again logs in again (``SftpSession.revive``).
    """

    def __init__(
        self, *, target: SshfsTarget, session: SftpSession, resources: ExitStack, transport: str, ignored: list[str]
    ) -> None:
        super().__init__()
        self._target = target
        self._session = session
        self._resources = resources
        self._lock = threading.Lock()
        self._closed = False
        self._fs = SftpFS(session, target.remote_path, self._describe(), down=self._down)
        self.transport = transport
        #: Why this transport was chosen, and whose keys verified the host key (set by the client; None here)
        self.transport_note: str | None = None
        #: What went otherwise than asked: a fallback taken, options that mean nothing over SFTP...
        self.warnings: list[str] = []
        if ignored:
            self.warnings.append(f"files via sftp: these sshfs options do not apply and were ignored: {ignored}")

    def _down(self) -> str | None:
        """Why the device does not answer, as the exporter sees it (``reachable``, set by the client); None: it does."""
        return self.reachable() if self.reachable is not None else None

    def _describe(self) -> str:
        return f"sftp {self._target.spec.rsplit(':', 1)[0]} port {self._target.port}"

    @property
    def fs(self) -> SftpFS:
        """The device's files as the chores reach them."""
        return self._fs

    @property
    def backend(self) -> str:
        """``"sftp"``: the files are reached over SFTP, no FUSE."""
        return "sftp"

    @property
    def where(self) -> str:
        """``sftp user@host port N``, for messages."""
        return self._fs.where

    @property
    def target(self) -> SshfsTarget:
        """Where the session connects: host, port, user and the device directory."""
        return self._target

    @property
    def root(self) -> DevicePath:
        """``remote_path`` as a ``DevicePath`` (what the ``remote_path`` fixture hands out)."""
        return DevicePath(self._fs, self.remote_path)

    @property
    def mountpoint(self) -> DevicePath:
        """Nothing is mounted over SFTP: the same as ``root``, a ``DevicePath`` (no local directory)."""
        return self.root

    def local_path(self, device_path: str | os.PathLike[str] = "") -> DevicePath:
        """Over SFTP there is no local path: the ``DevicePath`` of ``device_path`` (same rule as ``Mount``)."""
        return DevicePath(self._fs, self.device_path(device_path))

    def __truediv__(self, device_path: str) -> DevicePath:
        """``files / "messages"``: the ``DevicePath`` of a device path (absolute, or below ``remote_path``)."""
        return self.local_path(device_path)

    @property
    def direct(self) -> bool:
        """True when the session connects straight to the device's address."""
        return self.transport == "direct"

    def is_mounted(self) -> bool:
        """True until ``unmount``, also while the device reboots (the next call logs in again)."""
        return not self._closed and self._session.alive

    def __repr__(self) -> str:
        state = "open" if self.is_mounted() else "closed"
        return f"<SftpFiles {self._target.spec} via {transport_label(self.transport)}, {state}>"

    def unmount(self, lazy: bool = False) -> None:
        """Put back what is preserved, close the session, release everything held. Idempotent; ``lazy`` is moot."""
        self._restore_before_unmount()
        with self._lock:
            if self._closed:
                return
            self._closed = True
            started = time.monotonic()
            try:
                self._session.close()
            finally:
                try:
                    self._resources.close()
                except CancelledError:  # a port forward whose event loop is shutting down
                    logger.debug("releasing %s's resources was cancelled", self.where)
                except Exception as exc:
                    logger.warning("releasing %s's resources failed: %r", self.where, exc)
                    self.warnings.append(f"releasing {self.where}'s resources failed: {exc!r}")
            logger.info("closed %s in %.3fs", self.where, time.monotonic() - started)

    def __enter__(self) -> SftpFiles:
        return self

    def __exit__(self, *exc: object) -> None:
        self.unmount()


def start_sftp(
    target: SshfsTarget,
    *,
    identity: str | None = None,
    options: Sequence[str] = (),
    timeout: float = DEFAULT_MOUNT_TIMEOUT,
    resources: ExitStack | None = None,
    transport: str = "direct",
    sock: socket.socket | None = None,
    dial: Callable[[], socket.socket] | None = None,
    hook: KeyHook | None = None,
) -> SftpFiles:
    """Open an SFTP session to ``target`` and return as soon as ``remote_path`` is there.

    ``identity`` is private key text, imported in memory. ``options`` are the route's ssh options
    (``sshsettings`` reads them; host keys as ``hostkeypolicy`` says). ``sock`` is a connection
    already made (the exporter's relay, its token sent). ``resources`` is an ExitStack the files
    take over and close after the session, on success and on failure. After the device dropped the
    session (a reboot), the next call logs in again the same way: ``dial`` makes a new ``sock`` (the
    relay, its token sent again), and ``hook`` (the route's ``KeyHook``) decides on a host key the
    known-hosts file lacks (a reflash: what the exporter vouches for now).
    """
    with ExitStack() as undo:
        if resources is not None:
            undo.callback(resources.close)
        if sock is not None:
            undo.callback(sock.close)
        options = [*host_key_options(options), *options]
        settings = ssh_settings(target.host, target.port or 22, target.user, identity, options)
        redial = Redial(target, settings, transport, dial, hook)
        session = open_session(target, settings, timeout, transport, sock, redial)
        undo.callback(session.close)
        owned = undo.pop_all()
    files = SftpFiles(target=target, session=session, resources=owned, transport=transport, ignored=settings.ignored)
    return files
