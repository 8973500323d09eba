"""The non-blocking mount: ``start_mount`` returns a ready ``Mount``; ``unmount`` undoes it all.

A ``Mount`` owns, and releases in reverse order: the sshfs process, the identity
material, whatever the caller handed over in ``resources`` (e.g. a port forward), and
the mountpoint directory if it made it. Every failure path releases the same things.
"""

from __future__ import annotations

import logging
import os
import posixpath
import re
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from concurrent.futures import CancelledError
from contextlib import ExitStack
from pathlib import Path

from .command import (
    TRANSPORT_LABELS,
    SshfsTarget,
    build_argv,
    default_options,
    merge_options,
    option_key,
    validate_remote_path,
    without_option,
)
from .devicefiles import (
    COLLECT_MAX_BYTES,
    COLLECT_TIMEOUT,
    SNAPSHOT_MAX_BYTES,
    Collection,
    Snapshot,
    collect,
    run_bounded,
    wait_for,
)
from .diagnose import ALLOW_OTHER_REFUSED, diagnose, last_line
from .errors import (
    FuseUnavailableError,
    MountError,
    MountTimeoutError,
    RestoreError,
    SshfsNotFoundError,
    UnmountError,
    install_hint,
)
from .identity import IdentityFile
from .mountinfo import MountTableWatcher, mounts_at
from .mountpoint import Mountpoint
from .process import ChildProcess, UnmountIfWeDie
from .unmount import holders, is_busy, run_unmount, unmount_command

logger = logging.getLogger("jumpstarter_driver_ssh_mount")

FUSE_DEVICE = "/dev/fuse"
EXIT_GRACE = 5.0  # seconds sshfs gets to exit after its filesystem is unmounted
LAZY_EXIT_GRACE = 1.0  # after a lazy detach, for the last users of the filesystem to let go
HELPER_GRACE = 2.0  # seconds ssh and fusermount3 get to exit after sshfs
DEFAULT_MOUNT_TIMEOUT = 30.0  # seconds a mount may take to become ready


class Mount:
    """A mounted device filesystem. Unmount it with ``unmount()`` or by leaving ``with``."""

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
        self._target = target
        self._mountpoint = mountpoint
        self._process = process
        self._resources = resources
        self._lock = threading.Lock()
        self._closed = False
        self.transport = transport
        self.transport_note: str | None = None  # why this transport was chosen, when the caller chose one
        self.options: tuple[str, ...] = tuple(options)
        self._preserved: list[Snapshot] = []
        self._preserved_lock = threading.Lock()

    # -- what it is ---------------------------------------------------------------
    @property
    def mountpoint(self) -> Path:
        """The local directory the device's ``remote_path`` is mounted on."""
        return self._mountpoint.path

    @property
    def target(self) -> SshfsTarget:
        """Where sshfs connects: host, port, user and the device directory."""
        return self._target

    @property
    def remote_path(self) -> str:
        """The device directory that is mounted."""
        return self._target.remote_path

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
        via = TRANSPORT_LABELS.get(self.transport, self.transport)
        state = "mounted" if self.is_mounted() else "unmounted"
        return f"<Mount {self._target.spec} on {self.mountpoint} via {via}, {state}>"

    # -- using it -----------------------------------------------------------------
    def is_mounted(self) -> bool:
        """True while the filesystem is in the mount table and sshfs serves it."""
        return not self._closed and self._process.poll() is None and bool(mounts_at(self.mountpoint))

    def local_path(self, device_path: str | os.PathLike[str] = "") -> Path:
        """Where ``device_path`` is visible locally.

        ``device_path`` is absolute on the device (inside ``remote_path``) or relative to
        ``remote_path``. Paths that leave the mount (``..``, another directory) raise ValueError.
        """
        path = os.fspath(device_path)
        root = posixpath.normpath(self.remote_path)
        full = posixpath.normpath(posixpath.join(root, path)) if path else root
        if root == "/":
            relative = full.lstrip("/")
        elif full == root or full.startswith(root + "/"):
            relative = full[len(root) :].lstrip("/")
        else:
            raise ValueError(f"{path!r} is outside the mounted device path {self.remote_path}")
        if relative.split("/")[0] == "..":
            raise ValueError(f"{path!r} escapes the mounted device path {self.remote_path}")
        return self.mountpoint / relative if relative else self.mountpoint

    def __truediv__(self, device_path: str) -> Path:
        """``mount / "etc/os-release"`` is ``mount.local_path("etc/os-release")``."""
        return self.local_path(device_path)

    def stderr_tail(self, lines: int = 20) -> list[str]:
        """The last lines sshfs (and ssh) wrote to stderr."""
        text = self._process.stderr_text()
        return [line for line in text.replace("\r", "").splitlines() if line.strip()][-lines:]

    def exit_fileno(self) -> int | None:
        """A file descriptor that becomes readable when sshfs exits (Linux pidfd), or None."""
        return self._process.pidfd

    def wait(self, timeout: float | None = None) -> int:
        """Block until sshfs exits (it should not, until unmounted); returns its exit code.

        Signals interrupt the wait as usual (Ctrl+C raises KeyboardInterrupt).
        Raises ``subprocess.TimeoutExpired`` after ``timeout`` seconds.
        """
        return self._process.wait(timeout)

    # -- device-file chores --------------------------------------------------------
    def snapshot(self, *device_paths: str, max_bytes: int = SNAPSHOT_MAX_BYTES) -> Snapshot:
        """Save these device files (content, mode, or their absence); ``.restore()`` puts them back."""
        return Snapshot.take(self.local_path, device_paths, max_bytes=max_bytes)

    def preserve(self, *device_paths: str) -> None:
        """Snapshot these device files now; ``restore_preserved()`` puts them back.

        The pytest plugin restores after each test, pass or fail; otherwise they are
        restored just before ``unmount``.
        """
        snap = self.snapshot(*device_paths)
        with self._preserved_lock:
            self._preserved.append(snap)

    def restore_preserved(self) -> None:
        """Put back every preserved file (latest first). Raises RestoreError naming failures."""
        with self._preserved_lock:
            snaps, self._preserved = self._preserved, []
        problems = []
        for snap in reversed(snaps):
            try:
                snap.restore()
            except RestoreError as exc:
                problems.append(str(exc))
        if problems:
            raise RestoreError("; ".join(problems))

    def wait_for(
        self,
        device_path: str,
        *,
        exists: bool = True,
        contains: str | re.Pattern[str] | None = None,
        timeout: float = DEFAULT_MOUNT_TIMEOUT,
        interval: float = 0.1,
    ) -> str | None:
        """Wait until a device file exists (or not) and, if given, contains a string or regex.

        Returns the file's text when ``contains`` is given. Raises WaitTimeoutError showing
        the last content seen.
        """
        return wait_for(
            self.local_path(device_path),
            device_path,
            exists=exists,
            contains=contains,
            timeout=timeout,
            interval=interval,
        )

    def collect(
        self,
        device_globs: Sequence[str],
        dest: str | os.PathLike[str],
        *,
        max_bytes: int = COLLECT_MAX_BYTES,
        timeout: float = COLLECT_TIMEOUT,
    ) -> Collection:
        """Copy device files matching absolute globs into ``dest``, keeping their device paths.

        Bounded by ``max_bytes`` in all and ``timeout``; never follows symlinks; what is
        skipped is listed in the result's ``notes``.
        """
        result = Collection()
        deadline = time.monotonic() + timeout

        def work() -> None:
            for device_glob in device_globs:
                collect(
                    self.mountpoint,
                    self.local_path,
                    device_glob,
                    Path(dest),
                    result,
                    max_bytes=max_bytes,
                    deadline=deadline,
                )

        if not run_bounded(work, timeout + 1.0):
            result.notes.append(f"collection did not finish within {timeout:g}s (device not answering?)")
        return result

    # -- ending it ----------------------------------------------------------------
    def unmount(self, lazy: bool = False) -> None:
        """Unmount and release everything this mount holds. Idempotent.

        A busy filesystem (open files, a process's cwd inside) is detached lazily with a
        warning naming who keeps it busy. Raises ``UnmountError`` only if the filesystem is
        still mounted after sshfs was stopped; everything else is released regardless.
        """
        if self._preserved and self.is_mounted():
            try:
                self.restore_preserved()
            except RestoreError as exc:
                logger.warning("before unmounting %s: %s", self.mountpoint, exc)
        with self._lock:
            if self._closed:
                return
            started = time.monotonic()
            self._closed = True
            grace = 0.0  # if detaching itself fails, stop sshfs at once: on SIGTERM it unmounts itself
            try:
                error, detached_lazily = self._detach(lazy)
                grace = LAZY_EXIT_GRACE if detached_lazily else EXIT_GRACE
            finally:
                self._release(grace)
            if error is not None and mounts_at(self.mountpoint):
                raise error
            logger.info("unmounted %s in %.3fs", self.mountpoint, time.monotonic() - started)

    def _detach(self, lazy: bool) -> tuple[UnmountError | None, bool]:
        """Unmount; returns (error if still mounted, whether it was detached lazily)."""
        path = str(self.mountpoint)
        if not mounts_at(path):
            return None, False
        result = run_unmount(path, lazy=lazy)
        if result.returncode == 0 or not mounts_at(path):
            return None, lazy
        if is_busy(result) and not lazy:
            busy = ", ".join(holders(path)) or "unknown processes"
            logger.warning("%s is busy (used by %s); detaching it lazily", path, busy)
            result = run_unmount(path, lazy=True)
            if result.returncode == 0 or not mounts_at(path):
                return None, True
        return UnmountError(f"cannot unmount {path}: {last_line(result.stderr)}; try a lazy unmount (-l)"), lazy

    def _release(self, grace: float) -> None:
        """Let sshfs exit (stop it after ``grace``), then release helpers, resources, directories."""
        try:
            try:
                self._process.wait(grace)
            except subprocess.TimeoutExpired:
                if grace:
                    logger.warning("sshfs (pid %d) still running %gs after unmount; stopping it", self.pid, grace)
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
) -> Mount:
    """Mount ``target`` and return as soon as the filesystem is there.

    ``mountpoint=None`` makes a private 0700 directory (in ``mount_dir`` or the temp dir)
    that ``unmount`` removes again. ``identity`` is private key text, handed to ssh
    without touching the disk where the platform allows. ``options`` become ``-o``
    options; each replaces a default with the same key. ``resources`` is an ExitStack
    the mount takes over and closes after sshfs is gone, on success and on failure.
    ``transport`` says how ``target`` reaches the device ("direct" or "forward"), for messages.
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
        merge_options((), options)  # validate before anything is created
        place = Mountpoint.prepare(mountpoint, parent=mount_dir)
        undo.callback(place.release)
        undo.callback(UnmountIfWeDie(unmount_command(str(place.path), lazy=True)).disarm)
        identity_path = None
        if identity and "identityfile" not in {option_key(o) for o in _parts(options)}:
            identity_path = undo.enter_context(IdentityFile(identity)).path
        merged = merge_options(default_options(identity_path), options)
        process, merged = _spawn_ready(target, place.path, merged, timeout, transport, executable)
        owned = undo.pop_all()
    return Mount(
        target=target,
        mountpoint=place,
        process=process,
        resources=owned,
        transport=transport,
        options=merged,
    )


def _spawn_ready(
    target: SshfsTarget,
    mountpoint: Path,
    options: list[str],
    timeout: float,
    transport: str,
    executable: str,
) -> tuple[ChildProcess, list[str]]:
    """Start sshfs and wait for its filesystem; retry once without a refused ``allow_other``.

    Returns the process and the options it runs with.
    """
    via = TRANSPORT_LABELS.get(transport, transport)
    started = time.monotonic()
    deadline = started + timeout
    while True:
        process = ChildProcess(build_argv(target, str(mountpoint), options, executable=executable))
        try:
            _wait_until_mounted(process, mountpoint, deadline, timeout)
        except _ExitedEarly as exited:
            process.stop()  # normally gone already
            stderr = process.stderr_text()
            _clear_failed_mount(process, mountpoint)
            if ALLOW_OTHER_REFUSED in stderr and any(option_key(o) == "allow_other" for o in _parts(options)):
                logger.warning("FUSE refused allow_other (%s); mounting without it", last_line(stderr))
                options = without_option(options, "allow_other")
                continue
            raise diagnose(stderr, exited.returncode, target, transport=transport) from None
        except BaseException:
            process.stop()
            _clear_failed_mount(process, mountpoint)
            raise
        logger.info("mounted %s on %s via %s in %.3fs", target.spec, mountpoint, via, time.monotonic() - started)
        return process, options


def _clear_failed_mount(process: ChildProcess, mountpoint: Path) -> None:
    """After sshfs exited without a usable mount: no helper, no mount table entry left."""
    process.wait_helpers(HELPER_GRACE)  # ssh (and an auto_unmount fusermount3, if asked for)
    if mounts_at(mountpoint):
        run_unmount(str(mountpoint), lazy=True)
    process.close()


class _ExitedEarly(Exception):
    def __init__(self, returncode: int) -> None:
        self.returncode = returncode


def _parts(options: Sequence[str]) -> list[str]:
    return [part for option in options for part in option.split(",")]


def _wait_until_mounted(process: ChildProcess, mountpoint: Path, deadline: float, timeout: float) -> None:
    """Return once the mount is in the table *and* its root answers a ``stat``.

    sshfs 3 mounts first and connects afterwards; FUSE holds requests until the SSH
    session is up, so the first ``stat`` of the root returns exactly when the device's
    filesystem is usable (or fails when sshfs gives up). The stat runs in a helper
    thread so that an early sshfs exit or the deadline can end the wait.
    """
    probe: _RootProbe | None = None
    with MountTableWatcher() as watcher:
        if process.pidfd is not None:
            watcher.watch_fd(process.pidfd)
        try:
            while True:
                if probe is None and any(e.fstype.startswith("fuse") for e in mounts_at(mountpoint)):
                    process.note_children()  # e.g. an auto_unmount fusermount3, while it is still ours
                    probe = _RootProbe(mountpoint)
                    watcher.watch_fd(probe.fileno())
                if probe is not None and probe.done():
                    if probe.error is None and probe.crossed_into_mount:
                        return
                    if probe.error is None:  # sshfs gave up and unmounted before the stat: it will exit
                        process.wait(max(0.0, min(EXIT_GRACE, deadline - time.monotonic())))
                        raise _ExitedEarly(process.poll() if process.poll() is not None else -1)
                    try:  # the root fails when sshfs gives up: let it exit and say why
                        process.wait(max(0.0, min(EXIT_GRACE, deadline - time.monotonic())))
                    except subprocess.TimeoutExpired:
                        raise MountError(
                            f"{mountpoint} was mounted but its root cannot be read ({probe.error.strerror}); "
                            "check the remote path's permissions on the device"
                        ) from None
                returncode = process.poll()
                if returncode is not None:
                    raise _ExitedEarly(returncode)
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    stderr = last_line(process.stderr_text())
                    detail = f"; sshfs said: {stderr}" if stderr else ""
                    raise MountTimeoutError(
                        f"{mountpoint} was not ready within {timeout:g}s{detail}; "
                        "check that the device answers, or raise the timeout"
                    )
                watcher.wait(remaining)
        finally:
            if probe is not None:
                probe.close()


class _RootProbe:
    """``stat`` the mount's root in a thread; its pipe becomes readable when done."""

    def __init__(self, mountpoint: Path) -> None:
        self.error: OSError | None = None
        self.crossed_into_mount = False  # the stat answered from another filesystem than the parent's
        self._finished = threading.Event()
        self._read, self._write = os.pipe()
        threading.Thread(target=self._run, args=(mountpoint,), name="jmp-mount-probe", daemon=True).start()

    def _run(self, mountpoint: Path) -> None:
        try:
            # sshfs may give up and unmount between the mount-table event and this stat; then the
            # stat answers from the plain directory underneath, which is not "ready"
            self.crossed_into_mount = os.stat(mountpoint).st_dev != os.stat(mountpoint.parent).st_dev
        except OSError as exc:
            self.error = exc
        self._finished.set()
        try:
            os.write(self._write, b"x")
        except OSError:
            pass  # the waiter already gave up and closed its end
        finally:
            os.close(self._write)

    def fileno(self) -> int:
        return self._read

    def done(self) -> bool:
        return self._finished.is_set()

    def close(self) -> None:
        """Close the waiter's end (the thread closes its own when the stat returns)."""
        os.close(self._read)
