"""Opt-in pytest plugin: a loopback device for suites developed without hardware.

Enable it with ``-p pytest_jumpstarter_mount.testing.plugin`` (or ``-p
pytest_jumpstarter_mount.testing``), or ``pytest_plugins = ["pytest_jumpstarter_mount.testing"]``
in a conftest.py.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from pytest_jumpstarter_mount.testing.device import LoopbackDevice


@pytest.fixture(scope="session")
def jmp_loopback_device(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LoopbackDevice]:
    """A running loopback device (sshd on 127.0.0.1) for the whole session, stopped afterwards.

    Its files are under ``device.root``; ``device.remote("/var/log")`` is the path sshd serves
    for a device path (the same path when run as root with ``unshare``, which chroots sshd).
    ``device.exporter_config_path`` is an exporter config for it, for
    ``--jmp-mount-exporter-config``, ``jmp shell --exporter-config`` or ``jmp run``.
    """
    with LoopbackDevice(tmp_path_factory.mktemp("jmp-loopback-device"), chroot=True) as device:
        device.exporter_config(device.base / "exporter.yaml")
        yield device
