"""Running sshfs as a child that cannot outlive us.

* Linux ``PR_SET_PDEATHSIG`` (via ``setpriv``): when this process dies, even by
  ``kill -9``, the kernel sends sshfs SIGTERM and sshfs unmounts on its way out. The
  signal is tied to the *thread* that forked the child, so every child is forked from
  one long-lived thread.
* Its own session (``start_new_session``): a Ctrl+C in the terminal reaches us, not
  sshfs, so teardown happens in order.
* stderr goes to an anonymous file (no pipe to fill, no reader thread); ``stderr_text``
  reads it at any time.
"""

from __future__ import annotations

import contextlib
import os
import queue
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future

from jumpstarter_driver_ssh_mount.common.procfs import child_pids, live_group_members, start_time

EXIT_GRACE = 5.0  # seconds sshfs gets to exit after its filesystem is unmounted
HELPER_GRACE = 2.0  # seconds ssh and fusermount3 get to exit after sshfs


def die_with_parent_prefix() -> list[str]:
    """A command prefix that makes the child get SIGTERM when this process dies.

    ``setpriv --pdeathsig`` (util-linux) sets ``PR_SET_PDEATHSIG`` and execs the command,
    which keeps ``fork``-time Python code (``preexec_fn``) out of a threaded process:
    with gRPC loaded, a ``preexec_fn`` child can crash before it ever runs sshfs.
    """
    setpriv = shutil.which("setpriv") if sys.platform.startswith("linux") else None
    return [setpriv, "--pdeathsig", "TERM", "--"] if setpriv else []


class _Spawner:
    """One daemon thread that forks every child, so PDEATHSIG fires only when the process dies."""

    def __init__(self) -> None:
        self._jobs: queue.SimpleQueue[tuple[Callable[[], subprocess.Popen[bytes]], Future]] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._pid = 0

    def _run(self) -> None:
        while True:
            job, future = self._jobs.get()
            if future.set_running_or_notify_cancel():
                try:
                    future.set_result(job())
                except BaseException as exc:  # handed to the caller
                    future.set_exception(exc)

    def spawn(self, job: Callable[[], subprocess.Popen[bytes]]) -> subprocess.Popen[bytes]:
        with self._lock:
            if self._thread is None or not self._thread.is_alive() or self._pid != os.getpid():
                self._jobs = queue.SimpleQueue()
                self._thread = threading.Thread(target=self._run, name="jmp-mount-spawner", daemon=True)
                self._thread.start()
                self._pid = os.getpid()
        future: Future[subprocess.Popen[bytes]] = Future()
        self._jobs.put((job, future))
        return future.result()


_SPAWNER = _Spawner()


def spawn_from_lasting_thread(start: Callable[[], subprocess.Popen[bytes]]) -> subprocess.Popen[bytes]:
    """Call ``start`` (it starts a child) on the one long-lived thread that forks every child.

    A child started with ``die_with_parent_prefix()`` then gets its signal when this process
    dies, never when the thread that asked for it ends.
    """
    return _SPAWNER.spawn(start)


class ChildProcess:
    """A started child with captured stderr and a pollable exit notification."""

    def __init__(self, argv: Sequence[str], *, env: dict[str, str] | None = None) -> None:
        self.argv = list(argv)
        self._stderr = tempfile.TemporaryFile(prefix="jmp-mount-stderr-")  # noqa: SIM115 - closed in close()
        try:
            self.popen = _SPAWNER.spawn(
                lambda: subprocess.Popen(
                    [*die_with_parent_prefix(), *self.argv],
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL,
                    stderr=self._stderr,
                    env=env,
                    start_new_session=True,
                )
            )
        except BaseException:
            self._stderr.close()
            raise
        self._noted: dict[int, int] = {}
        self.pidfd: int | None = None
        if hasattr(os, "pidfd_open"):
            try:
                self.pidfd = os.pidfd_open(self.popen.pid)
            except OSError:
                self.pidfd = None

    @property
    def pid(self) -> int:
        return self.popen.pid

    def poll(self) -> int | None:
        """The exit code, or None while it runs."""
        return self.popen.poll()

    def wait(self, timeout: float | None = None) -> int:
        """Wait for exit; raises ``subprocess.TimeoutExpired`` after ``timeout``."""
        return self.popen.wait(timeout)

    def stop(self, grace: float = 5.0) -> int:
        """SIGTERM, then SIGKILL after ``grace`` seconds; returns the exit code."""
        if self.popen.poll() is None:
            self.popen.terminate()
            try:
                return self.popen.wait(grace)
            except subprocess.TimeoutExpired:
                self.popen.kill()
        return self.popen.wait()

    def note_children(self) -> None:
        """Remember the child's own children now (fusermount3 with auto_unmount calls setsid,
        so after sshfs exits only this note ties it to us)."""
        for pid in child_pids(self.popen.pid):
            started = start_time(pid)
            if started is not None:
                self._noted[pid] = started

    def helpers(self) -> list[int]:
        """Live processes sshfs started (ssh, fusermount3).

        sshfs double-forks ssh, which stays in the session we created for sshfs; the
        auto_unmount fusermount3 starts a session of its own and is found by ``note_children``.
        """
        found = {pid for pid in live_group_members(self.popen.pid) if pid != self.popen.pid}
        found |= {pid for pid, started in self._noted.items() if start_time(pid) == started}
        return sorted(found)

    def wait_helpers(self, timeout: float) -> None:
        """Wait for the helpers to finish on their own; SIGTERM, then SIGKILL, stragglers by PID."""
        deadline = time.monotonic() + timeout
        while (left := self.helpers()) and time.monotonic() < deadline:
            time.sleep(0.005)
        for sig in (signal.SIGTERM, signal.SIGKILL):
            if not left:
                return
            for pid in left:
                with contextlib.suppress(ProcessLookupError, PermissionError):  # setuid fusermount3
                    os.kill(pid, sig)
            deadline = time.monotonic() + 1.0
            while (left := self.helpers()) and time.monotonic() < deadline:
                time.sleep(0.005)

    def stderr_text(self, limit: int = 64 * 1024) -> str:
        """What the child wrote to stderr so far (the last ``limit`` bytes)."""
        try:
            fd = self._stderr.fileno()
            size = os.fstat(fd).st_size
            return os.pread(fd, limit, max(0, size - limit)).decode(errors="replace")
        except (OSError, ValueError):
            return ""

    def close(self) -> None:
        """Release the pidfd and the stderr file (the process must have exited)."""
        if self.pidfd is not None:
            os.close(self.pidfd)
            self.pidfd = None
        self._stderr.close()


class UnmountIfWeDie:
    """A helper process that lazily unmounts a mountpoint if this process dies first.

    PDEATHSIG makes sshfs unmount on its way out, but not on every path: when the port
    forward dies with us, sshfs can exit on the lost connection and leave a dead mount.
    The helper blocks reading a pipe only we can write: our death closes it and it runs
    ``unmount_argv``; ``disarm`` (after a normal unmount) tells it to exit doing nothing.
    It lives in its own session, so a Ctrl+C to our process group does not reach it.
    """

    def __init__(self, unmount_argv: Sequence[str]) -> None:
        read_end, self._write_end = os.pipe()
        try:
            self._process = subprocess.Popen(
                ["sh", "-c", 'read word; [ "$word" = disarm ] || exec "$@" >/dev/null 2>&1', "sh", *unmount_argv],
                stdin=read_end,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
            )
        except BaseException:
            os.close(self._write_end)
            raise
        finally:
            os.close(read_end)

    def disarm(self) -> None:
        """Let the helper exit without unmounting, and reap it. Idempotent."""
        if self._write_end < 0:
            return
        with contextlib.suppress(OSError):
            os.write(self._write_end, b"disarm\n")
        os.close(self._write_end)
        self._write_end = -1
        try:
            self._process.wait(5)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
