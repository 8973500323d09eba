"""Turning SIGTERM and SIGHUP into KeyboardInterrupt, so ``finally`` blocks run on ``kill``.

Python runs no cleanup when SIGTERM or SIGHUP ends it; raising KeyboardInterrupt instead
unwinds the stack like Ctrl+C does. Only the main thread can install handlers.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any

DEFAULT_SIGNALS = (signal.SIGTERM, signal.SIGHUP)


class SignalsAsInterrupt:
    """Install with ``install()``, put the previous handlers back with ``restore()``."""

    def __init__(self, signums: tuple[signal.Signals, ...] = DEFAULT_SIGNALS) -> None:
        self._signums = signums
        self._previous: dict[signal.Signals, Any] = {}

    def install(self) -> bool:
        """Install the handlers (idempotent); False where not possible (not the main thread)."""
        if self._previous:
            return True
        if threading.current_thread() is not threading.main_thread():
            return False
        for signum in self._signums:
            self._previous[signum] = signal.signal(signum, _interrupt)
        return True

    def restore(self) -> None:
        """Put back the handlers that were there before ``install``."""
        if threading.current_thread() is not threading.main_thread():
            return
        while self._previous:
            signum, handler = self._previous.popitem()
            signal.signal(signum, handler if handler is not None else signal.SIG_DFL)


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(signal.Signals(signum).name)


@contextmanager
def signals_interrupt(*signums: signal.Signals) -> Iterator[None]:
    """While inside, SIGTERM and SIGHUP (or ``signums``) raise KeyboardInterrupt."""
    handlers = SignalsAsInterrupt(signums or DEFAULT_SIGNALS)
    handlers.install()
    try:
        yield
    finally:
        handlers.restore()
