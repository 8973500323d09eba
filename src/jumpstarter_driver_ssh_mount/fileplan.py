"""What one opening of the device's files needs (``MountPlan``), and what the client attaches to what it opened:
following the device through reboots, the SFTP session's options."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from jumpstarter_driver_ssh_mount.common.choices import DEFAULT_CACHE
from jumpstarter_driver_ssh_mount.devicefiles.files import DeviceFiles
from jumpstarter_driver_ssh_mount.reach.route import Route, published_address, reach_problem
from jumpstarter_driver_ssh_mount.reach.transport import format_address
from jumpstarter_driver_ssh_mount.ssh.hostkeypolicy import EXPORTER, HostKeyTrust


@dataclass
class MountPlan:
    """What every mount attempt of one ``mounted()`` call shares."""

    mountpoint: str | os.PathLike[str] | None
    remote_path: str
    options: list[str]
    timeout: float
    mount_dir: str | os.PathLike[str] | None
    cache: str = DEFAULT_CACHE
    trust: HostKeyTrust = field(default_factory=lambda: HostKeyTrust(EXPORTER))  # whose keys are checked
    backend: str = "sshfs"  # what carries the files: "sshfs" (a FUSE mount) or "sftp"


def follow_reboots(mount: DeviceFiles, route: Route, call: Callable[..., Any], tcp: Any) -> None:
    """Let ``mount`` follow a device through a reboot: its name, the exporter's check whether it answers,
    the key hook's notes (a changed host key, vouched for or not) in ``mount.warnings``."""
    if route.hook is not None:
        hook = route.hook
        mount.device_name = hook.where
        mount.key_refused = lambda: hook.refused
        hook.report_to(mount.warnings.append)
    elif (address := published_address(tcp)[0]) is not None:
        mount.device_name = format_address(*address)

    def reachable() -> str | None:
        problem = reach_problem(call)
        return f"the exporter cannot reach the device's sshd at {problem}" if problem else None

    mount.reachable = reachable


def without_hook(route: Route) -> list[str]:
    """The route's ssh options for the in-process SFTP client: our own ``KnownHostsCommand`` hook (an ssh
    feature) goes back to ``none``; the SFTP session asks the hook in-process (``sftp.hostkeycheck``)."""
    if route.hook is None:
        return route.options
    return ["KnownHostsCommand=none" if option == route.hook.option else option for option in route.options]
