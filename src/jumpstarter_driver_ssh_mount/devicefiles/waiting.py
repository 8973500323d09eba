"""Waiting for a device file to appear, disappear or contain something: ``wait_for``."""

from __future__ import annotations

import re
import time

from jumpstarter_driver_ssh_mount.common.defaults import DEFAULT_WAIT_TIMEOUT, WAIT_MAX_BYTES
from jumpstarter_driver_ssh_mount.common.errors import WaitTimeoutError
from jumpstarter_driver_ssh_mount.devicefiles.boundedread import read_tail
from jumpstarter_driver_ssh_mount.devicefiles.devicepaths import shown
from jumpstarter_driver_ssh_mount.devicefiles.fs import DeviceFS

TAIL_CHARS = 400  # how much of the last content a wait_for timeout shows


def wait_for(
    fs: DeviceFS,
    full: str,
    device_path: str,
    *,
    exists: bool = True,
    contains: str | re.Pattern[str] | None = None,
    timeout: float = DEFAULT_WAIT_TIMEOUT,
    interval: float = 0.1,
    max_bytes: int = WAIT_MAX_BYTES,
) -> str | None:
    """Poll the device file ``full`` until it exists (or not, ``exists=False``) and, if given, contains ``contains``.

    ``device_path`` is the path as the caller gave it, for messages. Returns the file's text when
    ``contains`` is given (else None): its last ``max_bytes`` bytes at most (by the size the file
    reports; a ``/proc`` file, which reports 0, from its start), read afresh every ``interval``.
    On timeout raises WaitTimeoutError showing the tail of the last content seen.
    """
    if contains is not None and not exists:
        raise ValueError("contains= needs exists=True")
    pattern = re.compile(re.escape(contains)) if isinstance(contains, str) else contains
    deadline = time.monotonic() + timeout
    last: str | None = None
    while True:
        present = fs.present(full)
        if present and pattern is not None:
            try:
                last = read_tail(fs, full, max_bytes).decode(errors="replace")
            except OSError:
                last = None
            if last is not None and pattern.search(last):
                return last
        elif present == exists:
            return None
        if time.monotonic() >= deadline:
            break
        time.sleep(min(interval, max(0.0, deadline - time.monotonic())))
    if pattern is not None:
        seen = "the file never appeared" if last is None else f"last content ends: {last[-TAIL_CHARS:]!r}"
        wanted = f"contain {contains!r}" if isinstance(contains, str) else f"match {pattern.pattern!r}"
        raise WaitTimeoutError(f"{shown(device_path)} did not {wanted} within {timeout:g}s; {seen}")
    state = "appear" if exists else "disappear"
    raise WaitTimeoutError(f"{shown(device_path)} did not {state} within {timeout:g}s")
