"""A device that reboots under a mount: wait until it answers again; tell one boot from the next.

sshfs reconnects on the first request after the device dropped the session, so a mount
survives a reboot by itself; these are the two questions a test asks around one.

- ``wait_until_back``: ask the device, through the backend's ``DeviceFS``, for a name that does not exist,
  until it answers (``ENOENT`` is an answer; ``EIO`` while it is down is not), each look
  bounded by what is left of the timeout. ssh checks the host key on every reconnect, so an
  answer means the device came back with a key vouched for.
- ``read_boot_id``: the device kernel's boot id (one small read through the ``DeviceFS``), which
  changes on every boot.
"""

from __future__ import annotations

import errno
import posixpath
import secrets
import threading
import time
from collections.abc import Callable

from jumpstarter_driver_ssh_mount.common.defaults import BOOT_ID_READ_TIMEOUT, COME_BACK_POLL
from jumpstarter_driver_ssh_mount.common.errors import DeviceUnreachableError, HostKeyError
from jumpstarter_driver_ssh_mount.devicefiles.collection import run_bounded
from jumpstarter_driver_ssh_mount.devicefiles.fs import DeviceFS

#: An answer from the device about a name that does not exist.
ANSWERS = (errno.ENOENT, errno.ENOTDIR)


def look_once(fs: DeviceFS, directory: str) -> str | None:
    """None when the device answers a lookup in ``directory``, else why not (``Input/output error``...)."""
    try:
        fs.lstat(posixpath.join(directory, f".jmp-mount-back-{secrets.token_hex(6)}"))  # a new name: never cached
    except OSError as exc:
        return None if exc.errno in ANSWERS else (exc.strerror or str(exc))
    return None


def look_bounded(fs: DeviceFS, directory: str, timeout: float) -> str | None:
    """``look_once``, given up (as not answering) after ``timeout`` seconds."""
    outcome: list[str | None] = []
    failed = run_bounded(lambda _stop: outcome.append(look_once(fs, directory)), timeout)
    return failed or (outcome[0] if outcome else "no answer")


def wait_until_back(
    fs: DeviceFS,
    directory: str,
    timeout: float,
    where: str,
    *,
    reachable: Callable[[], str | None] | None = None,
    refused: Callable[[], str | None] | None = None,
) -> float:
    """Return (the seconds waited) once the device answers a lookup in ``directory`` through ``fs``.

    Each look is bounded by what is left of ``timeout``. After one that fails, ``refused`` says why
    the key the device offered last was refused, if it was, and ``reachable`` (the exporter's view:
    None when the device's sshd answers, else why not) explains the failure in the error.

    :raises HostKeyError: the device came back with a key nobody vouches for (both fingerprints): at once,
        since the exporter was asked again when ssh met that key.
    :raises DeviceUnreachableError: no answer within ``timeout``, naming ``where`` and the wait.
    """
    started = time.monotonic()
    deadline = started + timeout
    last = "no answer"
    while (left := deadline - time.monotonic()) > 0:
        problem = look_bounded(fs, directory, left)
        if problem is None:
            return time.monotonic() - started
        refusal = refused() if refused is not None else None
        if refusal:  # the device answers, with a key nobody vouches for: waiting longer changes nothing
            raise HostKeyError(f"{refusal} (after waiting {time.monotonic() - started:.1f} s for {where} to come back)")
        last = (reachable() if reachable is not None else None) or problem
        threading.Event().wait(min(COME_BACK_POLL, max(deadline - time.monotonic(), 0)))
    waited = time.monotonic() - started
    raise DeviceUnreachableError(
        f"the device at {where} did not answer again within {timeout:g} s (waited {waited:.1f} s; last: {last})"
    )


def read_boot_id(fs: DeviceFS, path: str, timeout: float = BOOT_ID_READ_TIMEOUT) -> str | None:
    """The boot id in device file ``path``, None if it cannot be read within ``timeout``."""
    found: list[str] = []

    def read(_stop: threading.Event) -> None:
        with fs.open_regular(path, follow=True) as (source, _info):
            found.append(source.read(64).decode("ascii", errors="replace").strip())

    return found[0] if run_bounded(read, timeout) is None and found and found[0] else None
