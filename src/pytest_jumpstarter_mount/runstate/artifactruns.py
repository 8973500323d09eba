"""A fresh artifact folder per run, ``<artifacts>/<YYYYmmdd-HHMMSS-id>/``, older runs pruned.

Like pytest's ``tmp_path_retention_count``: the newest ``--jmp-mount-artifacts-retention``
run folders (default 3, this one included) are kept. A folder is removed only when no
mountpoint is at or below it (checked in ``/proc/self/mountinfo``): artifact folders hold
copied files, and nothing is ever deleted through a mount.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import time
from pathlib import Path
from typing import Any

import pytest

logger = logging.getLogger("pytest_jumpstarter_mount")

RUN_NAME = re.compile(r"^\d{8}-\d{6}-[0-9a-f]{6}$")
RUN_KEY = "jmp_mount_artifacts_run"  # the controller's folder name, handed to xdist workers
DEFAULT_RETENTION = 3


class ArtifactRuns:
    """Plugin object: this run's artifact folder (shared by its xdist workers) and the pruning of older runs."""

    def __init__(self, config: pytest.Config, base: Path | None, retention: int) -> None:
        self.base = base or config.rootpath / "jmp-artifacts"
        self.retention = retention
        workerinput: dict[str, Any] | None = getattr(config, "workerinput", None)
        self.in_worker = workerinput is not None
        given = (workerinput or {}).get(RUN_KEY)
        self.name: str = given or time.strftime("%Y%m%d-%H%M%S-") + os.urandom(3).hex()

    @property
    def folder(self) -> Path:
        """``<artifacts>/<run>/``: where this run's failed tests get their device files."""
        return self.base / self.name

    def test_dir(self, nodeid: str) -> Path:
        """``<artifacts>/<run>/<nodeid, made a safe file name>/``."""
        return self.folder / re.sub(r"[^\w.-]+", "_", nodeid).strip("_")

    @pytest.hookimpl(optionalhook=True)
    def pytest_configure_node(self, node: Any) -> None:
        """xdist: every worker collects into the controller's run folder."""
        node.workerinput[RUN_KEY] = self.name

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        """Name the run's folder when something was collected."""
        if not self.in_worker and self.folder.is_dir():
            terminalreporter.write_line(f"jumpstarter mount: device files of failed tests in {self.folder}")

    def pytest_unconfigure(self) -> None:
        """Keep the newest ``retention`` run folders; the xdist controller (or the only process) prunes."""
        if not self.in_worker:
            prune(self.base, self.retention)


def prune(base: Path, keep: int) -> list[Path]:
    """Remove all but the newest ``keep`` run folders in ``base`` (only names like ours); the removed ones."""
    from jumpstarter_driver_ssh_mount.sshfs.mountinfo import anything_mounted_under  # the one mounted-below check

    try:
        runs = sorted(p for p in base.iterdir() if RUN_NAME.match(p.name) and p.is_dir() and not p.is_symlink())
    except OSError:
        return []
    removed = []
    for old in runs[: max(0, len(runs) - keep)]:
        if anything_mounted_under(old):
            logger.warning("not removing %s: something is mounted in it", old)
            continue
        try:
            shutil.rmtree(old)
        except OSError as exc:
            logger.warning("cannot remove old artifacts %s: %s", old, exc)
            continue
        removed.append(old)
    return removed
