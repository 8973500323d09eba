"""Everything the plugin shows on the terminal (the warnings summary is ``notices``'s).

* ``announce``: a line on the user's terminal now, from any thread and from xdist workers;
* ``say_mount``: with ``-v``, one line per mount and unmount, with its device path, transport and time;
* ``shell_exit_note``: the note that ends a failed run's summary under ``jmp shell``, whose exit
  status can hide the failure. ``jmp shell --exporter-config E -- CMD`` exits 0 whatever CMD
  returned (Jumpstarter 0.9.0; its ``--tls-grpc`` and client branches pass the status on), so a
  CI job running pytest that way is green with failing tests. Inside ``jmp shell``
  (``JUMPSTARTER_HOST`` set) a run that did not pass says so in its last summary line;
* ``one_copy_of_client_logs``: one copy of each Jumpstarter client log line in a report. A
  Jumpstarter driver client gives its logger (named after its class, e.g. ``SSHMountClient``) a
  Rich handler that writes to stdout, and the records also propagate to the root logger, where
  pytest captures them: a failed test showed each line twice. The Rich handlers of the device's
  clients are removed; pytest's logging (the "Captured log" section, ``log_cli``, ``caplog``) keeps
  the one copy.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import threading
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from jumpstarter_driver_ssh_mount import DeviceFiles

PASSING = (pytest.ExitCode.OK, pytest.ExitCode.NO_TESTS_COLLECTED)

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


def say_mount(config: pytest.Config, done: str, mount: DeviceFiles, seconds: float) -> None:
    """``jumpstarter mount: mounted /var/log (port forward) in 412 ms``, only when pytest runs verbose.

    From an xdist worker the line names it: ``jumpstarter mount: gw1 mounted /var/log ...``.
    """
    if config.get_verbosity() < 1:
        return
    from jumpstarter_driver_ssh_mount.common.choices import transport_label

    via = transport_label(mount.transport)
    worker = (getattr(config, "workerinput", None) or {}).get("workerid")
    who = f"{worker} " if worker else ""
    announce(config, f"jumpstarter mount: {who}{done} {mount.remote_path} ({via}) in {seconds * 1000:.0f} ms")


def shell_exit_note(exitstatus: int) -> str | None:
    """The note for a run that did not pass inside ``jmp shell``; None otherwise."""
    if not os.environ.get("JUMPSTARTER_HOST") or exitstatus in PASSING:
        return None
    return (
        f"jumpstarter mount: pytest exits {int(exitstatus)}, but `jmp shell --exporter-config ... -- pytest` "
        "may still exit 0 (Jumpstarter 0.9.0); in CI run `pytest --jmp-mount-exporter-config=...` instead"
    )


def one_copy_of_client_logs(root: Any) -> None:
    """Drop the Rich handlers of ``root``'s client tree; their records still reach pytest's logging."""
    from rich.logging import RichHandler  # Jumpstarter's own dependency: imported only once it is loaded

    seen: set[int] = set()
    pending = [root]
    while pending:
        client = pending.pop()
        if id(client) in seen:
            continue
        seen.add(id(client))
        logger = getattr(client, "logger", None)
        if isinstance(logger, logging.Logger):
            for handler in [h for h in logger.handlers if isinstance(h, RichHandler)]:
                logger.removeHandler(handler)
        pending.extend((getattr(client, "children", None) or {}).values())


def announce_device(config: pytest.Config, worker_id: str, description: str) -> None:
    """Say which device was reached (which lease, on which exporter), and by which xdist worker."""
    who = f"{worker_id} " if worker_id != "main" else ""
    announce(config, f"\njumpstarter mount: {who}device: {description}")
    logging.getLogger("pytest_jumpstarter_mount").info("device: %s", description)
