"""What the plugin shows the user on the terminal: ``announce``."""

from __future__ import annotations

import contextlib
import sys
import threading

import pytest

_say_lock = threading.Lock()


def announce(config: pytest.Config, line: str) -> bool:
    """Show ``line`` on the user's terminal now, from any thread; False if there is no terminal yet.

    In the main process (or the xdist controller) it goes through pytest's terminal reporter.
    An xdist worker's reporter is not shown, but its stderr is the controller's: the line is
    written there with pytest's capture suspended.
    """
    plugins = config.pluginmanager
    capture = plugins.get_plugin("capturemanager")
    in_worker = hasattr(config, "workerinput")
    reporter = None if in_worker else plugins.get_plugin("terminalreporter")
    if not in_worker and reporter is None:
        return False
    with _say_lock:
        suspended = capture.global_and_fixture_disabled() if capture is not None else contextlib.nullcontext()
        with suspended:
            if reporter is not None:
                reporter.write_line(line)
            else:
                sys.stderr.write(f"\n{line.lstrip()}\n")
                sys.stderr.flush()
    return True
