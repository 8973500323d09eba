"""One copy of each Jumpstarter client log line in a pytest report.

A Jumpstarter driver client gives its logger (named after its class, e.g. ``SSHMountClient``)
a Rich handler that writes to stdout, and the records also propagate to the root logger,
where pytest captures them: a failed test showed each line twice, Rich-formatted under
"Captured stdout" and again under "Captured log". The Rich handlers of the device's
clients are removed; pytest's logging (the "Captured log" section, ``log_cli``, ``caplog``)
keeps the one copy.
"""

from __future__ import annotations

import logging
from typing import Any


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
