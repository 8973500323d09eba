"""The non-blocking mount: ``start_mount`` returns a ready ``Mount``; ``unmount`` undoes it all.

A ``Mount`` owns, and releases in reverse order: the sshfs process, the identity
material, whatever the caller handed over in ``resources`` (e.g. a port forward), and
the mountpoint directory if it made it. Every failure path releases the same things.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import CancelledError
from contextlib import ExitStack
from pathlib import Path

from jumpstarter_driver_ssh_mount.common.childprocess import EXIT_GRACE, HELPER_GRACE, ChildProcess, UnmountIfWeDie
from jumpstarter_driver_ssh_mount.common.choices import transport_label
from jumpstarter_driver_ssh_mount.common.defaults import DEFAULT_MOUNT_TIMEOUT
from jumpstarter_driver_ssh_mount.common.errors import (
    FuseUnavailableError,
    SshfsNotFoundError,
    install_hint,
)
from jumpstarter_driver_ssh_mount.devicefiles.devicepaths import local_path
from jumpstarter_driver_ssh_mount.devicefiles.files import DeviceFiles
from jumpstarter_driver_ssh_mount.devicefiles.localfs import LocalDirFS
from jumpstarter_driver_ssh_mount.ssh.hostkeypolicy import host_key_options
from jumpstarter_driver_ssh_mount.ssh.identity import IdentityFile
from jumpstarter_driver_ssh_mount.ssh.optionkeys import option_key, option_parts
from jumpstarter_driver_ssh_mount.ssh.sealing import for_sshfs, sealed_config
from jumpstarter_driver_ssh_mount.ssh.sshoptions import merge_options
from jumpstarter_driver_ssh_mount.ssh.target import SshfsTarget
from jumpstarter_driver_ssh_mount.sshfs.command import default_options, validate_cache, validate_remote_path
from jumpstarter_driver_ssh_mount.sshfs.mountinfo import mounts_at
from jumpstarter_driver_ssh_mount.sshfs.mountpoint import Mountpoint
from jumpstarter_driver_ssh_mount.sshfs.ready import spawn_ready
from jumpstarter_driver_ssh_mount.sshfs.symlinks import is_noise, symlink_options
from jumpstarter_driver_ssh_mount.sshfs.unmount import detach, unmount_command

logger = logging.getLogger("jumpstarter_driver_ssh_mount")

FUSE_DEVICE = "/dev/fuse"
LAZY_EXIT_GRACE = 1.0  # after a lazy detach, for the last users of the filesystem to let go


class Mount(DeviceFiles):
    """A mounted device filesystem. Unmount it with ``unmount()`` or by leaving ``with``.

    Device-file chores (``snapshot``, ``preserve``, ``restore_preserved``, ``wait_for``,
    ``collect``) come from ``DeviceFiles``, on the mounted directory (``LocalDirFS``).
    """

    def __init__(
        self,
        *,
        target: SshfsTarget,
        mountpoint: Mountpoint,
        process: ChildProcess,
        resources: ExitStack,
        transport: str,
        options: Sequence[str],
    ) -> None:
        super().__init__()
        self._target = target
        self._mountpoint = mountpoint
        self._process = process
        self._resources = resources
        self._lock = threading.Lock()
        self._closed = False
        self._fs = LocalDirFS(mountpoint.path, target.remote_path)
        self.transport = transport
        #: Why this transport was chosen, and whose keys verified the host key (set by the client; None here)
        self.transport_note: str | None = None
        self.options: tuple[str, ...] = tuple(options)
        #: What went otherwise than asked (also logged): a fallback taken, a busy mount detached lazily...
        self.warnings: list[str] = []

    # -- what it is ---------------------------------------------------------------
    @property
    def mountpoint(self) -> Path:
        """The local directory the device's ``remote_path`` is mounted on."""
        return self._mountpoint.path

    @property
    def root(self) -> Path:
        """Where ``remote_path`` is seen: the mountpoint (what the ``remote_path`` fixture hands out)."""
        return self._mountpoint.path

    @property
    def fs(self) -> LocalDirFS:
        """The mounted directory as the device-file chores reach it."""
        return self._fs

    @property
    def where(self) -> str:
        """The mountpoint, for messages."""
        return str(self._mountpoint.path)

    @property
    def backend(self) -> str:
        """``"sshfs"``: the files are a FUSE mount."""
        return "sshfs"

    @property
    def target(self) -> SshfsTarget:
        """Where sshfs connects: host, port, user and the device directory."""
        return self._target

    @property
    def host(self) -> str:
        """The host sshfs connects to (the device, or the local end of the port forward)."""
        return self._target.host

    @property
    def port(self) -> int:
        """The port sshfs connects to."""
        return self._target.port

    @property
    def user(self) -> str:
        """The SSH user name ("" for ssh's default)."""
        return self._target.user

    @property
    def direct(self) -> bool:
        """True when sshfs connects straight to the device's address (``transport == "direct"``)."""
        return self.transport == "direct"

    @property
    def pid(self) -> int:
        """The sshfs process id."""
        return self._process.pid

    @property
    def argv(self) -> list[str]:
        """The sshfs command line (holds the identity's path, never the key)."""
        return list(self._process.argv)

    def __repr__(self) -> str:
        via = transport_label(self.transport)
        state = "mounted" if self.is_mounted() else "unmounted"
        return f"<Mount {self._target.spec} on {self.mountpoint} via {via}, {state}>"

    # -- using it -----------------------------------------------------------------
    def is_mounted(self) -> bool:
        """True while the filesystem is in the mount table and sshfs serves it."""
        return not self._closed and self._process.poll() is None and bool(mounts_at(self.mountpoint))

    def local_path(self, device_path: str | os.PathLike[str] = "") -> Path:
        """Where ``device_path`` is visible locally.

        An absolute ``device_path`` is a device path; a relative one is relative to
        ``remote_path``. A path the mount does not cover (another directory, ``..`` leaving
        it) raises ``OutsideMountError`` (a ValueError) naming the mount that would cover it.
        """
        return local_path(self.mountpoint, self.remote_path, device_path)

    def __truediv__(self, device_path: str) -> Path:
        """``mount / "messages"`` is ``mount.local_path("messages")``; ``mount / "/var/log/messages"`` too."""
        return self.local_path(device_path)

    def stderr_tail(self, lines: int = 20) -> list[str]:
        """The last lines sshfs (and ssh) wrote to stderr, without its symlink-option warning."""
        text = self._process.stderr_text()
        return [line for line in text.replace("\r", "").splitlines() if line.strip() and not is_noise(line)][-lines:]

    def exit_fileno(self) -> int | None:
        """A file descriptor that becomes readable when sshfs exits (Linux pidfd), or None."""
        return self._process.pidfd

    def wait(self, timeout: float | None = None) -> int:
        """Block until sshfs exits (it should not, until unmounted); returns its exit code.

        Signals interrupt the wait as usual (Ctrl+C raises KeyboardInterrupt).
        Raises ``subprocess.TimeoutExpired`` after ``timeout`` seconds.
        """
        return self._process.wait(timeout)

    # -- ending it ----------------------------------------------------------------
    def unmount(self, lazy: bool = False) -> None:
        """Unmount and release everything this mount holds. Idempotent.

        A busy filesystem (open files, a process's cwd inside) is detached lazily with a
        warning naming who keeps it busy. Raises ``UnmountError`` only if the filesystem is
        still mounted after sshfs was stopped; everything else is released regardless.
        """
        self._restore_before_unmount()
        with self._lock:
            if self._closed:
                return
            started = time.monotonic()
            self._closed = True
            grace = 0.0  # if detaching itself fails, stop sshfs at once: on SIGTERM it unmounts itself
            try:
                error, detached_lazily = detach(str(self.mountpoint), lazy, self.warnings)
                grace = LAZY_EXIT_GRACE if detached_lazily else EXIT_GRACE
            finally:
                self._release(grace)
            if error is not None and mounts_at(self.mountpoint):
                raise error
            logger.info("unmounted %s in %.3fs", self.mountpoint, time.monotonic() - started)

    def _release(self, grace: float) -> None:
        """Let sshfs exit (stop it after ``grace``), then release helpers, resources, directories."""
        try:
            try:
                self._process.wait(grace)
            except subprocess.TimeoutExpired:
                if grace:
                    logger.warning("sshfs (pid %d) still running %gs after unmount; stopping it", self.pid, grace)
                    self.warnings.append(f"sshfs (pid {self.pid}) still ran {grace:g}s after unmount; stopped it")
                self._process.stop()
            self._process.wait_helpers(HELPER_GRACE)
        finally:
            self._process.close()
            try:
                self._resources.close()
            except CancelledError:  # a port forward whose event loop is shutting down
                logger.debug("releasing %s's resources was cancelled", self.mountpoint)
            except Exception as exc:
                logger.warning("releasing %s's resources failed: %r", self.mountpoint, exc)
                self.warnings.append(f"releasing {self.mountpoint}'s resources failed: {exc!r}")
            finally:
                self._mountpoint.release()

    def __enter__(self) -> Mount:
        return self

    def __exit__(self, *exc: object) -> None:
        self.unmount()


def start_mount(
    target: SshfsTarget,
    mountpoint: str | os.PathLike[str] | None = None,
    *,
    identity: str | None = None,
    options: Sequence[str] = (),
    timeout: float = DEFAULT_MOUNT_TIMEOUT,
    resources: ExitStack | None = None,
    transport: str = "direct",
    mount_dir: str | os.PathLike[str] | None = None,
    cache: str = "fresh",
    env: Mapping[str, str] | None = None,
) -> Mount:
    """Mount ``target`` and return as soon as the filesystem is there.

    ``mountpoint=None`` makes a private 0700 directory (in ``mount_dir`` or the temp dir)
    that ``unmount`` removes again. ``identity`` is private key text, handed to ssh
    without touching the disk where the platform allows. ``options`` become ``-o``
    options; each replaces a default with the same key. ``resources`` is an ExitStack
    the mount takes over and closes after sshfs is gone, on success and on failure.
    ``transport`` says how ``target`` reaches the device ("direct", "forward", "relay"), for messages.
    ``cache``: "fresh" (device changes show within 0.5 s) or "fast" (sshfs's caching).
    Host keys: as ``hostkeypolicy`` reads ``options`` (none: unchecked); ssh is ``sealing``-sealed, ``env`` added.
    """
    with ExitStack() as undo:  # everything acquired here is released if mounting fails
        if resources is not None:
            undo.callback(resources.close)  # closed, not handed our exception (async adapters wrap it)
        executable = shutil.which("sshfs")
        if executable is None:
            raise SshfsNotFoundError()
        if sys.platform.startswith("linux") and not os.path.exists(FUSE_DEVICE):
            raise FuseUnavailableError(
                f"FUSE is not available: {FUSE_DEVICE} does not exist; load the fuse module (modprobe fuse) "
                f"or, in a container, pass the device through (--device /dev/fuse); {install_hint('fuse')}"
            )
        validate_remote_path(target.remote_path)
        validate_cache(cache)
        options = [*host_key_options(options), *merge_options((), options)]  # validated before anything is made
        place = Mountpoint.prepare(mountpoint, parent=mount_dir)
        undo.callback(place.release)
        undo.callback(UnmountIfWeDie(unmount_command(str(place.path), lazy=True)).disarm)
        identity_path = None
        if identity and "identityfile" not in {option_key(o) for o in option_parts(options)}:
            identity_path = undo.enter_context(IdentityFile(identity)).path
        links = symlink_options(target.remote_path, executable)
        defaults = default_options(identity_path, cache=cache, symlinks=links, remote_path=target.remote_path)
        merged = for_sshfs(merge_options(defaults, options))
        config = undo.enter_context(sealed_config(target.host, target.port or 22, target.user)).path
        notes: list[str] = []
        process, merged = spawn_ready(target, place.path, merged, timeout, transport, executable, notes, env, config)
        owned = undo.pop_all()
    mount = Mount(
        target=target, mountpoint=place, process=process, resources=owned, transport=transport, options=merged
    )
    mount.warnings += notes
    return mount
