"""Develop device suites without hardware: a loopback device and the tools around it.

- ``LoopbackDevice``: an sshd on 127.0.0.1 serving a small device tree, with keys and an
  exporter config (``python -m pytest_jumpstarter_mount.testing DIR`` runs one until Ctrl+C).
- ``StandaloneExporter``: ``jmp run --tls-grpc-listener`` for such a config, stopped by PID.
- As a pytest plugin (``-p pytest_jumpstarter_mount.testing``): the ``jmp_loopback_device`` fixture.

Nothing here is loaded by the ``jumpstarter_mount`` plugin itself.
"""

from pytest_jumpstarter_mount.testing.device import (
    DEVICE_FILES,
    LoopbackDevice,
    can_chroot,
    free_port,
    keygen,
    wait_for_port,
)
from pytest_jumpstarter_mount.testing.exporter import StandaloneExporter
from pytest_jumpstarter_mount.testing.plugin import jmp_loopback_device

__all__ = [
    "DEVICE_FILES",
    "LoopbackDevice",
    "StandaloneExporter",
    "can_chroot",
    "free_port",
    "jmp_loopback_device",
    "keygen",
    "wait_for_port",
]
