"""An SFTP call on a connection the device silently left: ask the exporter, and give up at once if it is down.

A device that powers off usually closes its TCP connections, and the session notices at once. Not
always: through Jumpstarter's port forward the end of the device's connection does not always reach
this side, and the call would wait for the keep-alives (``ServerAliveInterval`` times ``ServerAliveCountMax``).
So a call that has no answer after ``SFTP_STALL_CHECK[0]`` s asks ``down`` (the exporter's check that
the device's sshd answers, at most 3 s), then every ``SFTP_STALL_CHECK[1]`` s; when the device does not
answer, the connection is aborted: the call fails as on a lost connection, and the session logs in again
(at once refused while the device is down). A slow call to a device that answers just goes on.
"""

from __future__ import annotations

import asyncio
import errno
import logging
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from jumpstarter_driver_ssh_mount.common.defaults import SFTP_STALL_CHECK
from jumpstarter_driver_ssh_mount.sftp.loop import LoopThread

T = TypeVar("T")
logger = logging.getLogger("jumpstarter_driver_ssh_mount")
ABORT_GRACE = 5.0  # seconds the call may take to fail once its connection is aborted


def run_watched(
    loop: LoopThread,
    coro: Coroutine[Any, Any, T],
    down: Callable[[], str | None] | None,
    abort: Callable[[], None],
    checks: tuple[float, float] = SFTP_STALL_CHECK,
) -> T:
    """``loop.run(coro)``, asking ``down()`` while it waits (see the module docstring); ``abort()`` when it says why."""
    if down is None or loop.is_current():
        return loop.run(coro)
    future = asyncio.run_coroutine_threadsafe(coro, loop.loop)
    wait = checks[0]
    try:
        while True:
            try:
                return future.result(wait)
            except TimeoutError:
                wait = checks[1]
            problem = down()
            if problem:
                logger.info("an SFTP call waits on a device that does not answer (%s): connection aborted", problem)
                abort()
                try:
                    return future.result(ABORT_GRACE)
                except TimeoutError:
                    raise OSError(errno.ENOTCONN, f"the device is unreachable: {problem}") from None
    except BaseException:  # Ctrl+C, or no end even after the abort: the call goes on no further
        future.cancel()
        raise
