"""What killed processes left, swept at the start and end of a run, and the report header lines it yields.

Two places hold records of other processes: the mount base (run directories with their
mountpoints, leases and restore journals; see ``mountdir``) and this user's known-hosts
folders (``sshfs.ownedfolders``). Both are judged by the one liveness rule
(``sshfs.liveness.judge``): what a dead process left is removed, what a live one holds stays,
and what belongs to a process this run cannot see (another PID namespace or host sharing the
directory) is left alone and said once, in the header.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

from jumpstarter_driver_ssh_mount.common.liveness import Verdict, describe_unseen
from pytest_jumpstarter_mount.runstate.mountdir import Swept, sweep

logger = logging.getLogger("pytest_jumpstarter_mount")


def sweep_left(base: Path, on_stale: Callable[[Path], None] | None = None) -> list[str]:
    """Sweep ``base`` (``on_stale`` gets each dead run's directory) and the known-hosts folders; the header lines."""
    from jumpstarter_driver_ssh_mount.common.ownedfolders import KNOWN_HOSTS_FOLDERS
    from jumpstarter_driver_ssh_mount.ssh.master import MASTER_FOLDERS

    swept = Swept()
    if base.is_dir():
        try:
            swept = sweep(base, on_stale)
        except OSError as exc:
            logger.warning("cannot sweep %s: %s", base, exc)
    folders = KNOWN_HOSTS_FOLDERS.sweep()
    for folder in folders.removed:
        logger.info("removed the known-hosts folder %s of a killed process", folder)
    masters = MASTER_FOLDERS.sweep()
    for folder in masters.removed:
        logger.info("removed the ssh control folder %s of a killed process", folder)
    lines = []
    if swept.mountpoints:
        lines.append(
            f"jumpstarter mount: cleaned up {len(swept.mountpoints)} stale mountpoint(s) of a killed run in {base}"
        )
        logger.warning(lines[-1])
    unseen: list[tuple[Verdict, str]] = [(v, str(base)) for v in swept.unseen]
    unseen += [(v, str(folders.parent)) for v in folders.unseen]
    unseen += [(v, str(masters.parent)) for v in masters.unseen]
    if unseen:
        lines.append(describe_unseen([v for v, _ in unseen], [where for _, where in unseen]))
        logger.info(lines[-1])
    return lines
