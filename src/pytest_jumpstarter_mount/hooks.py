"""Hooks a conftest.py or plugin can implement around every mount the plugin makes."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from jumpstarter_driver_ssh_mount import Mount


@pytest.hookspec()
def pytest_jmp_mount_options(config: pytest.Config, remote_path: str, options: list[str]) -> None:
    """Adjust the sshfs ``-o`` options before a mount, by changing ``options`` in place.

    Called for every mount with the options from ``--jmp-mount-option`` and the marker.
    Each option replaces an sshfs default with the same key. Example::

        def pytest_jmp_mount_options(config, remote_path, options):
            if remote_path.startswith("/var/log"):
                options.append("cache=no")  # logs change under us: never cache
    """


@pytest.hookspec()
def pytest_jmp_mount_ready(mount: Mount, request: pytest.FixtureRequest | None) -> None:
    """Called once a mount is ready, before any test uses it.

    ``request`` is the request of the fixture that made the mount, or None for the
    short-lived mount of ``/`` that collects a failed test's files (and the one that puts
    back files an earlier run left changed). Example::

        def pytest_jmp_mount_ready(mount, request):
            assert (mount / "etc/os-release").exists(), "not the device we expected"
    """


@pytest.hookspec()
def pytest_jmp_mount_teardown(mount: Mount) -> None:
    """Called before a mount is unmounted (still mounted, unless sshfs died).

    Example::

        def pytest_jmp_mount_teardown(mount):
            print("device log tail:", (mount / "var/log/messages").read_text()[-200:])
    """
