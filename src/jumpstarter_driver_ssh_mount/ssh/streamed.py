"""A device shell script over ssh, fed on stdin, its output read to a bound: ``run_script``.

Bulk device-file work (``devicefiles.bulkfs``) sends one script for many files and reads one
stream back. The script goes to ``sh -s`` on stdin (no command-line length limit on the device);
the output is read up to ``max_bytes`` and then ssh is ended (``truncated``), so a device that
floods costs at most that; ``timeout`` bounds the whole exchange. ssh runs in its own session,
so ending it ends what it started here.
"""

from __future__ import annotations

import contextlib
import os
import selectors
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import IO

from jumpstarter_driver_ssh_mount.ssh.sealing import sealed_environment

#: The command the device's login shell runs: a POSIX shell reading the script from stdin.
SCRIPT_COMMAND = "exec sh -s"
#: Bytes of stderr kept (for a message).
STDERR_KEPT = 4096
#: Seconds a killed ssh gets to exit after SIGTERM, before SIGKILL.
KILL_GRACE = 2.0


@dataclass(frozen=True)
class ScriptResult:
    """What a script printed (``stdout``, at most the bound), its exit status (None: ended by us) and stderr."""

    returncode: int | None
    stdout: bytes
    stderr: str
    truncated: bool = False  # more came than the bound: ssh was ended there
    timed_out: bool = False


def run_script(
    argv: Sequence[str], script: bytes, *, timeout: float, max_bytes: int, env: Mapping[str, str] | None = None
) -> ScriptResult:
    """Run ``argv`` (an ssh argv for ``SCRIPT_COMMAND``), write ``script`` to it, read its output to ``max_bytes``.

    ``env`` adds to the sealed environment (a relay dialer's ``SHELL``).
    """
    process = subprocess.Popen(
        list(argv),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
        env={**sealed_environment(), **(env or {})},
    )
    try:
        return _exchange(process, script, time.monotonic() + timeout, max_bytes)
    finally:
        _end(process)


def _exchange(process: subprocess.Popen[bytes], script: bytes, deadline: float, max_bytes: int) -> ScriptResult:
    assert process.stdin is not None and process.stdout is not None and process.stderr is not None
    out, err = bytearray(), bytearray()
    pending = memoryview(script)
    with selectors.DefaultSelector() as selector:
        os.set_blocking(process.stdin.fileno(), False)
        selector.register(process.stdin, selectors.EVENT_WRITE)
        selector.register(process.stdout, selectors.EVENT_READ)
        selector.register(process.stderr, selectors.EVENT_READ)
        open_reads = 2
        if not pending:
            selector.unregister(process.stdin)
            process.stdin.close()
        while open_reads:
            left = deadline - time.monotonic()
            if left <= 0:
                return ScriptResult(None, bytes(out[:max_bytes]), _text(err), timed_out=True)
            for key, _ in selector.select(left):
                if key.fileobj is process.stdin:
                    pending = _feed(selector, process.stdin, pending)
                    continue
                chunk = os.read(key.fd, 1 << 16)
                if not chunk:
                    selector.unregister(key.fileobj)
                    open_reads -= 1
                elif key.fileobj is process.stdout:
                    out += chunk
                    if len(out) > max_bytes:
                        return ScriptResult(None, bytes(out[:max_bytes]), _text(err), truncated=True)
                elif len(err) < STDERR_KEPT:
                    err += chunk
    try:
        code: int | None = process.wait(timeout=max(deadline - time.monotonic(), 0.1))
    except subprocess.TimeoutExpired:
        code = None
    return ScriptResult(code, bytes(out), _text(err), timed_out=code is None)


def _feed(selector: selectors.BaseSelector, stdin: IO[bytes], pending: memoryview) -> memoryview:
    """Write what ``stdin`` takes now of ``pending``; close it once all is written (or ssh is gone)."""
    try:
        pending = pending[os.write(stdin.fileno(), pending[: 1 << 16]) :]
    except OSError:  # BrokenPipeError included: ssh ended, its output says why
        pending = pending[:0]
    if not pending:
        selector.unregister(stdin)
        with contextlib.suppress(OSError):
            stdin.close()
    return pending


def _text(err: bytearray) -> str:
    return bytes(err[:STDERR_KEPT]).decode(errors="replace").strip()


def _end(process: subprocess.Popen[bytes]) -> None:
    """End ssh and its session if it still runs (SIGTERM, then SIGKILL); close the pipes."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        if process.poll() is not None:
            break
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, sig)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=KILL_GRACE)
    for pipe in (process.stdin, process.stdout, process.stderr):
        if pipe is not None:
            with contextlib.suppress(OSError):
                pipe.close()
