"""Running sshfs as a child that cannot outlive us.

* Linux ``PR_SET_PDEATHSIG``: when this process dies, even by ``kill -9``, the kernel
  sends sshfs SIGTERM and sshfs unmounts on its way out. The signal is tied to the
  *thread* that forked the child, so every child is forked from one long-lived thread.
* Its own session (``start_new_session``): a Ctrl+C in the terminal reaches us, not
  sshfs, so teardown happens in order.
* stderr goes to an anonymous file (no pipe to fill, no reader thread); ``stderr_text``
  reads it at any time.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import queue
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future

PR_SET_PDEATHSIG = 1


def _prctl() -> Callable[..., int] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    except OSError:
        return None
    return libc.prctl


_PRCTL = _prctl()


def _die_with(parent_pid: int) -> Callable[[], None] | None:
    """A ``preexec_fn`` that asks the kernel to SIGTERM the child when we die."""
    prctl = _PRCTL
    if prctl is None:
        return None

    def preexec() -> None:
        prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
        if os.getppid() != parent_pid:  # we died between fork and prctl
            os._exit(1)

    return preexec


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


class ChildProcess:
    """A started child with captured stderr and a pollable exit notification."""

    def __init__(self, argv: Sequence[str], *, env: dict[str, str] | None = None) -> None:
        self.argv = list(argv)
        self._stderr = tempfile.TemporaryFile(prefix="jmp-mount-stderr-")
        parent = os.getpid()
        try:
            self.popen = _SPAWNER.spawn(
                lambda: subprocess.Popen(
                    self.argv,
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL,
                    stderr=self._stderr,
                    env=env,
                    start_new_session=True,
                    preexec_fn=_die_with(parent),
                )
            )
        except BaseException:
            self._stderr.close()
            raise
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
