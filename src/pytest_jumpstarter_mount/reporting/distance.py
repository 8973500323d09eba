"""Say what distance costs, once per run: the device's measured round trip, when it is far.

At the first mount, ``devicefiles.roundtrip.round_trip`` measures one request to the device. Over
``FAR_MS`` (a remote lab, not a device on the desk), one line goes to the terminal, next to the
header's device line, with what helps at that distance.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import pytest

from pytest_jumpstarter_mount.reporting.output import announce

if TYPE_CHECKING:
    from jumpstarter_driver_ssh_mount.devicefiles.files import DeviceFiles

logger = logging.getLogger("pytest_jumpstarter_mount")

#: Round trips above this (milliseconds) are worth a line.
FAR_MS = 5.0
_told = pytest.StashKey[bool]()


def far_line(milliseconds: float) -> str:
    """The line for a device ``milliseconds`` away."""
    return (
        f"jumpstarter mount: device round trip {milliseconds:.0f} ms: every file opened through a mount pays "
        "a few of them; collection, preserve/restore and remote_fs.read_many() cost a few in all; "
        "--jmp-mount-cache=fast suits trees that do not change (docs/performance.md#remote-labs-figure-14)"
    )


def tell_distance(config: pytest.Config, mount: DeviceFiles) -> float | None:
    """Measure the round trip through ``mount`` the first time only; say it when it is over ``FAR_MS``."""
    if config.stash.get(_told, False):
        return None
    config.stash[_told] = True
    from jumpstarter_driver_ssh_mount.devicefiles.roundtrip import round_trip

    took = round_trip(mount.fs, mount.remote_path)
    if took is None:
        return None
    logger.info("device round trip: %.1f ms", took * 1000)
    if took * 1000 > FAR_MS:
        announce(config, "\n" + far_line(took * 1000))
    return took
