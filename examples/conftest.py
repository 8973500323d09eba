"""Example conftest.py: one of the plugin's hooks, used as a device-identity check.

Mount and unmount lines come from the plugin itself with ``-v``
(``jumpstarter mount: mounted /var/log (direct) in 398 ms``); hooks need not print them.
"""

from __future__ import annotations


def pytest_jmp_mount_ready(mount, request):
    """Runs once per mount, before the tests use it: is this the device the suite is written for?"""
    if mount.covers("/etc/os-release"):
        release = (mount / "/etc/os-release").read_text()
        assert "ID=" in release, f"{mount.remote_path}: not the device we expected (no ID in /etc/os-release)"
