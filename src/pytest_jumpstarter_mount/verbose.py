"""With ``-v``: one terminal line per mount and unmount, with its device path, transport and time."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from .farm import announce

if TYPE_CHECKING:
    from jumpstarter_driver_ssh_mount.sshfs import Mount


def say_mount(config: pytest.Config, done: str, mount: Mount, seconds: float) -> None:
    """``jumpstarter mount: mounted /var/log (port forward) in 412 ms``, only when pytest runs verbose.

    From an xdist worker the line names it: ``jumpstarter mount: gw1 mounted /var/log ...``.
    """
    if config.get_verbosity() < 1:
        return
    from jumpstarter_driver_ssh_mount.sshfs.command import transport_label

    via = transport_label(mount.transport)
    worker = (getattr(config, "workerinput", None) or {}).get("workerid")
    who = f"{worker} " if worker else ""
    announce(config, f"jumpstarter mount: {who}{done} {mount.remote_path} ({via}) in {seconds * 1000:.0f} ms")
