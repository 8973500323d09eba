"""One asyncio event loop in a thread of its own, for one SFTP session: blocking calls in, coroutines run there.

asyncssh is asynchronous; the device-file chores and pathlib-style calls are not. Each session
gets its own loop thread (a daemon, named ``jmp-mount-sftp``), so it never shares a loop with
Jumpstarter's portal or the caller's code, and ``close`` stops and joins it.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")

THREAD_NAME = "jmp-mount-sftp"
CLOSE_GRACE = 5.0  # seconds ``close`` waits for the loop's thread to end


class LoopThread:
    """An event loop running in its own daemon thread until ``close``."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name=THREAD_NAME, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        """Run ``coro`` on the loop and wait for its result (``TimeoutError`` after ``timeout``: then cancelled)."""
        if threading.current_thread() is self._thread:
            coro.close()
            raise RuntimeError("a blocking SFTP call from the SFTP loop itself")
        future = asyncio.run_coroutine_threadsafe(coro, self.loop)
        try:
            return future.result(timeout)
        except TimeoutError:
            future.cancel()
            raise
        except BaseException:  # Ctrl+C while waiting: the call goes on no further
            future.cancel()
            raise

    def is_current(self) -> bool:
        """True when called from the loop's own thread."""
        return threading.current_thread() is self._thread

    @property
    def running(self) -> bool:
        """True until ``close``."""
        return self._thread.is_alive() and not self.loop.is_closed()

    def close(self) -> None:
        """Cancel what still runs, stop the loop, join its thread, close it. Safe to call more than once."""
        if self.loop.is_closed():
            return
        if self._thread.is_alive():

            async def cancel_all() -> None:
                tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
                await asyncio.get_running_loop().shutdown_default_executor()  # asyncssh's lookups ran there

            with contextlib.suppress(Exception):
                asyncio.run_coroutine_threadsafe(cancel_all(), self.loop).result(CLOSE_GRACE)
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(CLOSE_GRACE)
        if not self._thread.is_alive():
            self.loop.close()
