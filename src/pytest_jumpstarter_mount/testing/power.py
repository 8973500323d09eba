"""Power for the loopback device: a "power off" ends sshd and every session it forked at once (by PID,
``SIGKILL``: no goodbye to the client), a "power on" starts sshd again on the same port, with the
same host key (a reboot) or a new one (a reflash)."""

from __future__ import annotations

import contextlib
import os
import signal

from jumpstarter_driver_ssh_mount.common.procfs import child_pids

from .device import LoopbackDevice, keygen


def power_off(device: LoopbackDevice) -> None:
    """Kill sshd and its sessions (``SIGKILL``, by PID) and reap sshd; the port is closed afterwards."""
    if device.process is None:
        return
    sessions = child_pids(device.process.pid)
    device.process.kill()
    for pid in sessions:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    device.process.wait()
    device.process = None


def power_on(device: LoopbackDevice, *, new_host_key: bool = False) -> LoopbackDevice:
    """Start sshd again on the same port; ``new_host_key``: with a host key never seen before (a reflash)."""
    if new_host_key:
        for path in (device.host_key, device.host_key.with_name(device.host_key.name + ".pub")):
            path.unlink()
        keygen(device.host_key)
    return device.start()


def reboot(device: LoopbackDevice, *, new_host_key: bool = False) -> LoopbackDevice:
    """``power_off`` then ``power_on``."""
    power_off(device)
    return power_on(device, new_host_key=new_host_key)
