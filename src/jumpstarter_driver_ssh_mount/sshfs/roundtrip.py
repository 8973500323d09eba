"""How far the device is: ``round_trip``, one SFTP request's time through a mount, measured.

A lookup of a name that exists nowhere (new each time, so no cache on this host or in sshfs
answers it) is one request to the device's SFTP server and one answer: the unit every file
operation through the mount pays. The least of a few such lookups is the round trip.
"""

from __future__ import annotations

import os
import secrets
import time
from pathlib import Path

#: Lookups per measurement (the least counts: the others met a busy moment).
PROBES = 3


def round_trip(mountpoint: str | os.PathLike[str], probes: int = PROBES) -> float | None:
    """Seconds one request to the device through the mount at ``mountpoint`` takes; None if it cannot tell."""
    best = None
    for _ in range(probes):
        name = Path(mountpoint) / f".jmp-mount-rtt-{secrets.token_hex(8)}"
        started = time.monotonic()
        try:
            os.lstat(name)
        except FileNotFoundError:
            took = time.monotonic() - started
            best = took if best is None else min(best, took)
        except OSError:
            return None
    return best
