"""How far the device is: ``round_trip``, one request's time to the device through a ``DeviceFS``.

An ``lstat`` of a name that exists nowhere (new each time, so no cache on this host, in sshfs
or in an SFTP client answers it) is one request to the device and one answer: the unit every
file operation pays. The least of a few such lookups is the round trip.
"""

from __future__ import annotations

import posixpath
import secrets
import time

from jumpstarter_driver_ssh_mount.devicefiles.fs import DeviceFS

#: Lookups per measurement (the least counts: the others met a busy moment).
PROBES = 3


def round_trip(fs: DeviceFS, directory: str, probes: int = PROBES) -> float | None:
    """Seconds one request to the device takes (a lookup in the device ``directory``); None if it cannot tell."""
    best = None
    for _ in range(probes):
        name = posixpath.join(directory, f".jmp-mount-rtt-{secrets.token_hex(8)}")
        started = time.monotonic()
        try:
            fs.lstat(name)
        except FileNotFoundError:
            took = time.monotonic() - started
            best = took if best is None else min(best, took)
        except OSError:
            return None
        else:
            return None  # it exists: something else answered
    return best
