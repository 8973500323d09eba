"""Waiting inside the client's event loop, so that its cancellation (Ctrl+C in ``j``) ends the wait."""

from __future__ import annotations

import math

import anyio

CANCEL_CHECK_INTERVAL = 0.25  # seconds


async def wait_readable_unless_cancelled(fd: int) -> bool:
    """True once ``fd`` is readable; False if this task's scope is (or gets) cancelled.

    Re-checks the effective deadline because a task spawned into a task group whose parent
    scope was cancelled just before is not always cancelled by anyio itself.
    """
    while anyio.current_effective_deadline() != -math.inf:
        with anyio.move_on_after(CANCEL_CHECK_INTERVAL):
            await anyio.wait_readable(fd)
            return True
    return False
