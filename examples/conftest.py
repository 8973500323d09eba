"""Example conftest.py: one of the plugin's hooks, used as a device-identity check."""

from __future__ import annotations


def pytest_jmp_mount_ready(mount, request):
    """Runs once per mount, before the tests use it."""
    print(
        f"\n[device] mounted {mount.remote_path} at {mount.mountpoint} "
        f"({'direct' if mount.transport == 'direct' else 'via port forward'})"
    )


def pytest_jmp_mount_teardown(mount):
    """Runs before each unmount."""
    print(f"\n[device] unmounting {mount.mountpoint}")
