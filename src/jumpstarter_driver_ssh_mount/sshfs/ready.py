"""Knowing when a started sshfs is mounted and usable, and cleaning up when it is not.

``spawn_ready`` starts sshfs and returns once the device's filesystem answers, or raises
the typed error that says why it did not (see ``diagnose``).
"""

from __future__ import annotations

import logging
import os
import subprocess
import threading
import time
from collections.abc import Mapping
from pathlib import Path

from jumpstarter_driver_ssh_mount.common.childprocess import EXIT_GRACE, HELPER_GRACE, ChildProcess
from jumpstarter_driver_ssh_mount.common.choices import transport_label
from jumpstarter_driver_ssh_mount.common.errors import MountError, MountTimeoutError
from jumpstarter_driver_ssh_mount.ssh.optionkeys import option_key, option_parts
from jumpstarter_driver_ssh_mount.ssh.sealing import sealed_environment
from jumpstarter_driver_ssh_mount.ssh.target import SshfsTarget
from jumpstarter_driver_ssh_mount.sshfs.command import build_argv, without_option
from jumpstarter_driver_ssh_mount.sshfs.diagnose import ALLOW_OTHER_REFUSED, diagnose, last_line
from jumpstarter_driver_ssh_mount.sshfs.mountinfo import MountTableWatcher, mounts_at
from jumpstarter_driver_ssh_mount.sshfs.unmount import run_unmount

logger = logging.getLogger("jumpstarter_driver_ssh_mount")


class ExitedEarly(Exception):
    """sshfs exited (or is about to) before its filesystem became usable."""

    def __init__(self, returncode: int) -> None:
        super().__init__(f"sshfs exited with code {returncode}")
        self.returncode = returncode


def spawn_ready(
    target: SshfsTarget,
    mountpoint: Path,
    options: list[str],
    timeout: float,
    transport: str,
    executable: str,
    warnings: list[str] | None = None,
    env: Mapping[str, str] | None = None,
    config_path: str | None = None,
) -> tuple[ChildProcess, list[str]]:
    """Start sshfs and wait for its filesystem; retry once without a refused ``allow_other``.

    Returns the process and the options it runs with; a fallback taken is added to ``warnings``.
    ``env``: variables set for sshfs and its ssh, over the sealed environment (``sealing``);
    ``config_path``: the ssh config its ssh reads (``sealing.sealed_config``).
    """
    via = transport_label(transport)
    started = time.monotonic()
    deadline = started + timeout
    while True:
        argv = build_argv(target, str(mountpoint), options, executable=executable, config_path=config_path)
        process = ChildProcess(argv, env={**sealed_environment(), **env} if env else sealed_environment())
        try:
            wait_until_mounted(process, mountpoint, deadline, timeout)
        except ExitedEarly as exited:
            process.stop()  # normally gone already
            stderr = process.stderr_text()
            clear_failed_mount(process, mountpoint)
            if ALLOW_OTHER_REFUSED in stderr and any(option_key(o) == "allow_other" for o in option_parts(options)):
                logger.warning("FUSE refused allow_other (%s); mounting without it", last_line(stderr))
                if warnings is not None:
                    warnings.append(f"FUSE refused allow_other ({last_line(stderr)}); mounted without it")
                options = without_option(options, "allow_other")
                continue
            raise diagnose(stderr, exited.returncode, target, transport=transport) from None
        except BaseException:
            process.stop()
            clear_failed_mount(process, mountpoint)
            raise
        logger.info("mounted %s on %s via %s in %.3fs", target.spec, mountpoint, via, time.monotonic() - started)
        return process, options


def clear_failed_mount(process: ChildProcess, mountpoint: Path) -> None:
    """After sshfs exited without a usable mount: no helper, no mount table entry left."""
    process.wait_helpers(HELPER_GRACE)  # ssh (and an auto_unmount fusermount3, if asked for)
    if mounts_at(mountpoint):
        run_unmount(str(mountpoint), lazy=True)
    process.close()


def wait_until_mounted(process: ChildProcess, mountpoint: Path, deadline: float, timeout: float) -> None:
    """Return once the mount is in the table *and* its root answers a ``stat``.

    sshfs 3 mounts first and connects afterwards; FUSE holds requests until the SSH
    session is up, so the first ``stat`` of the root returns exactly when the device's
    filesystem is usable (or fails when sshfs gives up). The stat runs in a helper
    thread so that an early sshfs exit or the deadline can end the wait. Raises
    ``ExitedEarly``, ``MountTimeoutError`` or ``MountError``.
    """
    probe: RootProbe | None = None
    with MountTableWatcher() as watcher:
        if process.pidfd is not None:
            watcher.watch_fd(process.pidfd)
        try:
            while True:
                if probe is None and any(e.fstype.startswith("fuse") for e in mounts_at(mountpoint)):
                    process.note_children()  # e.g. an auto_unmount fusermount3, while it is still ours
                    probe = RootProbe(mountpoint)
                    watcher.watch_fd(probe.fileno())
                if probe is not None and probe.done() and _probe_succeeded(probe, process, mountpoint, deadline):
                    return
                returncode = process.poll()
                if returncode is not None:
                    raise ExitedEarly(returncode)
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise _timeout_error(process, mountpoint, timeout)
                watcher.wait(remaining)
        finally:
            if probe is not None:
                probe.close()


def _probe_succeeded(probe: RootProbe, process: ChildProcess, mountpoint: Path, deadline: float) -> bool:
    """True when the finished probe reached the mounted root; otherwise sshfs must be exiting.

    Returns False once sshfs has exited (the caller reports its exit); raises ``ExitedEarly``
    or ``MountError`` when it does not exit in time.
    """
    if probe.error is None and probe.crossed_into_mount:
        return True
    grace = max(0.0, min(EXIT_GRACE, deadline - time.monotonic()))
    if probe.error is None:  # sshfs gave up and unmounted before the stat: it will exit
        process.wait(grace)
        returncode = process.poll()
        raise ExitedEarly(returncode if returncode is not None else -1)
    try:  # the root fails when sshfs gives up: let it exit and say why
        process.wait(grace)
    except subprocess.TimeoutExpired:
        raise MountError(
            f"{mountpoint} was mounted but its root cannot be read ({probe.error.strerror}); "
            "check the remote path's permissions on the device"
        ) from None
    return False


def _timeout_error(process: ChildProcess, mountpoint: Path, timeout: float) -> MountTimeoutError:
    stderr = last_line(process.stderr_text())
    detail = f"; sshfs said: {stderr}" if stderr else ""
    return MountTimeoutError(
        f"{mountpoint} was not ready within {timeout:g}s{detail}; check that the device answers, or raise the timeout"
    )


class RootProbe:
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
        """The read end of the pipe; readable once the stat has returned."""
        return self._read

    def done(self) -> bool:
        """True once the stat has returned (``error`` and ``crossed_into_mount`` are final)."""
        return self._finished.is_set()

    def close(self) -> None:
        """Close the waiter's end (the thread closes its own when the stat returns)."""
        os.close(self._read)
