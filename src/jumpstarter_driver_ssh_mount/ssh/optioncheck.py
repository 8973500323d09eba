"""A local ssh option error is a usage error naming the option: ``check_ssh_options`` asks ``ssh -G``.

``ssh -G`` parses options exactly as the connection would and connects nowhere; ``-F none``
keeps the user's config (and any ``Match exec`` in it) out of the check. ssh's message does
not always name the option (``invalid time value``), so a refused list is retried one option
at a time to find it.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable

from jumpstarter_driver_ssh_mount.common.errors import InvalidOptionError
from jumpstarter_driver_ssh_mount.ssh.hostkeypolicy import check_never_written
from jumpstarter_driver_ssh_mount.ssh.optionkeys import ssh_options
from jumpstarter_driver_ssh_mount.ssh.sealing import ssh_print_config

CHECK_TIMEOUT = 5.0  # seconds ``ssh -G`` may take


def check_ssh_options(options: Iterable[str]) -> None:
    """Return when ssh accepts every ssh option in ``options`` (sshfs's own are skipped).

    :raises InvalidOptionError: naming the first option ssh refuses, and ssh's reason; or one
        that would write to a known-hosts file (``hostkeypolicy.check_never_written``).
    """
    found = tuple(ssh_options(options))
    check_never_written(found)
    if found and _refusal(found):
        for option in found:
            reason = _refusal((option,))
            if reason:
                raise InvalidOptionError(f"ssh refuses the option {option!r} ({reason}); fix or drop it")
        raise InvalidOptionError(f"ssh refuses the options {', '.join(found)} ({_refusal(found)}); fix or drop them")


@functools.lru_cache(maxsize=64)
def _refusal(options: tuple[str, ...]) -> str:
    """ssh's reason for refusing ``options`` ("" when it accepts them, or cannot be asked)."""
    result = ssh_print_config(["-F", "none", *(arg for o in options for arg in ("-o", o)), "127.0.0.1"], CHECK_TIMEOUT)
    if result is None:
        return ""  # no ssh here: the mount itself says so
    if result.returncode == 0:
        return ""
    lines = [line.strip() for line in result.stderr.splitlines() if line.strip()]
    reason = next((line for line in lines if "line 0" in line), lines[0] if lines else "no message")
    return reason.split("line 0:", 1)[-1].strip().rstrip(".")
