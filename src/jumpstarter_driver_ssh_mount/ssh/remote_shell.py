"""One long-lived ``sh`` on the device over one ``ssh`` session: ``RemoteShell``.

A reading of the device's logs and files at every test boundary would cost a new ssh
connection each (key exchange, login: hundreds of milliseconds); through a shell that stays
open it costs one round trip. Scripts go to the shell's stdin, each one a single compound
command (``{ ...; } </dev/null``) so that nothing it runs can read the scripts after it;
each reply ends with a marker line the caller chooses. Every wait is bounded in time and
every reply in size: a device that stops answering or floods ends the shell (``ShellGone``),
never the test run.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from contextlib import ExitStack

from jumpstarter_driver_ssh_mount.common.childprocess import die_with_parent_prefix
from jumpstarter_driver_ssh_mount.ssh.sealing import sealed_environment

#: Seconds ssh gets to exit after its stdin closes, then after SIGTERM, before SIGKILL.
CLOSE_GRACE = 2.0


class ShellGone(Exception):
    """The shell cannot be used (any more): ssh exited, timed out, or the reply was too long.

    ``returncode`` and ``stderr`` are ssh's when it exited (for diagnosis), else None and "".
    """

    def __init__(self, reason: str, returncode: int | None = None, stderr: str = "") -> None:
        super().__init__(reason)
        self.returncode = returncode
        self.stderr = stderr


class RemoteShell:
    """``argv`` (an ``ssh ... HOST 'exec sh'``) started with pipes; ``resources`` closed with it.

    Started in its own session and, on Linux, with a parent-death signal: it never outlives
    this process (and it ends anyway when its stdin, our pipe, closes).
    """

    def __init__(
        self, argv: Sequence[str], resources: ExitStack | None = None, env: Mapping[str, str] | None = None
    ) -> None:
        self._resources = resources or ExitStack()
        self._buffer = b""
        #: What went otherwise than asked on the way there (a fallback to the port forward)
        self.warnings: list[str] = []
        self.process = subprocess.Popen(
            [*die_with_parent_prefix(), *argv],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
            env={**sealed_environment(), **(env or {})},
        )

    @property
    def alive(self) -> bool:
        """True while ssh runs."""
        return self.process.poll() is None

    def exchange(self, script: bytes, end: bytes, *, timeout: float, max_bytes: int) -> bytes:
        """Send ``script``; what the shell printed up to and including ``end``.

        :raises ShellGone: ssh exited, ``timeout`` seconds passed or more than ``max_bytes``
            came without ``end`` (then the shell is closed: its stream is no longer in step).
        """
        try:
            assert self.process.stdin is not None
            self.process.stdin.write(script)
            self.process.stdin.flush()
        except (BrokenPipeError, OSError):
            raise self._gone("the connection to the device is closed") from None
        try:
            return self._read_until(end, time.monotonic() + timeout, max_bytes, timeout)
        except ShellGone:
            self.close()
            raise

    def _read_until(self, end: bytes, deadline: float, max_bytes: int, timeout: float) -> bytes:
        assert self.process.stdout is not None
        fd = self.process.stdout.fileno()
        readable = select.poll()  # poll, not select: no limit on the descriptor's number
        readable.register(fd, select.POLLIN)
        while True:
            found = self._buffer.find(end)
            if found >= 0:
                reply, self._buffer = self._buffer[: found + len(end)], self._buffer[found + len(end) :]
                return reply
            if len(self._buffer) > max_bytes:
                raise ShellGone(f"the device sent more than {max_bytes} bytes for one reading")
            left = deadline - time.monotonic()
            if left <= 0 or not readable.poll(left * 1000):
                raise ShellGone(f"the device did not answer within {timeout:g}s")
            chunk = os.read(fd, 1 << 16)
            if not chunk:
                raise self._gone("the connection to the device closed")
            self._buffer += chunk

    def _gone(self, reason: str) -> ShellGone:
        """ShellGone with ssh's exit status and stderr (ssh is ended first)."""
        self.close()
        stderr = b""
        if self.process.stderr is not None:
            with contextlib.suppress(OSError, ValueError):
                stderr = self.process.stderr.read() or b""
        return ShellGone(reason, self.process.returncode, stderr.decode(errors="replace").strip()[-2000:])

    def close(self) -> None:
        """End the shell (EOF, then SIGTERM, then SIGKILL) and close the resources. Safe to call twice."""
        try:
            if self.process.stdin is not None and not self.process.stdin.closed:
                with contextlib.suppress(OSError):
                    self.process.stdin.close()
            for sig in (None, signal.SIGTERM, signal.SIGKILL):
                if sig is not None:
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(self.process.pid, sig)
                try:
                    self.process.wait(timeout=CLOSE_GRACE)
                    break
                except subprocess.TimeoutExpired:
                    continue
            if self.process.stdout is not None:
                self.process.stdout.close()
        finally:
            self._resources.close()
