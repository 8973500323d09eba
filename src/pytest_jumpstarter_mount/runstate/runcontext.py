"""What a part of the plugin gets instead of the whole manager: ``RunContext`` (a structural type).

``MountManager`` provides it; parts name only what they use, and import neither the manager nor each other.
Parts that also mount or read failure reports get the wider contexts in ``pertest.contexts``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    import pytest

    from pytest_jumpstarter_mount.config.settings import Settings


class RunContext(Protocol):
    """This process in the run: its config and settings, worker and run ids, and its run directory."""

    config: pytest.Config
    settings: Settings
    worker_id: str  # "main", or the xdist worker's id
    run_id: str  # shared by the workers of one run

    def mount_dir(self) -> Path:
        """This process's private run directory (made on first use)."""

    def sweep(self) -> None:
        """Clean up what dead processes left in the run directories."""
