"""``JumpstarterMountWarning``: what went otherwise than asked, shown in pytest's warnings summary.

A busy mount detached lazily (naming who held it), a fallback taken (the port forward
instead of the device's address, ``allow_other`` refused), a collection cut short (its
time limit or byte cap). They are ``warnings.warn`` calls, so a default run lists them
under "warnings summary", with the test during which they happened, and ``-W`` filters
apply (``-W error::pytest_jumpstarter_mount.JumpstarterMountWarning`` makes them errors).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from jumpstarter_driver_ssh_mount import Mount


class JumpstarterMountWarning(UserWarning):
    """A mount or a collection of the plugin went otherwise than asked (see the message)."""


class InsecureMountWarning(JumpstarterMountWarning):
    """``--jmp-mount-insecure``: the device's host key is not verified in this run."""


def warn(message: str) -> None:
    """Issue one ``JumpstarterMountWarning``."""
    warnings.warn(JumpstarterMountWarning(message), stacklevel=3)


def warn_mount(mount: Mount, seen: int = 0) -> int:
    """Issue ``mount``'s warnings after the first ``seen``; how many it has now (the next ``seen``)."""
    for text in mount.warnings[seen:]:
        warn(f"jumpstarter mount of {mount.remote_path}: {text}")
    return len(mount.warnings)


def warn_cut_short(nodeid: str, reasons: Sequence[str]) -> None:
    """Say that collecting a failed test's device files stopped early, and why."""
    if reasons:
        warn(
            f"jumpstarter mount: collecting the device files of {nodeid} was cut short: {'; '.join(reasons)} "
            "(see its 'jumpstarter mount artifacts' section)"
        )
