"""Fail fast, say it once: a device that cannot be had is established once per pytest process.

The first setup that finds the device unavailable fails with the reason; every later test
that needs it errors at once, before its fixtures run, with ``device unavailable (see first
error): <reason>``. Two levels: the device itself (its source, or the mount driver in it,
cannot be had: nothing that needs ``jmp_client`` can run) and its sshd (the exporter cannot
reach it, ssh refuses the identity, sshfs or FUSE is missing here: nothing can mount, while a
test that only drives the board through ``jmp_client``, a power switch say, still runs).
With no device source configured at all, every test that needs the device errors with
the same one line from the start (the report header says it in full).
"""

from __future__ import annotations

import pytest

from pytest_jumpstarter_mount.config.fixturenames import DEVICE_FIXTURES, MOUNT_FIXTURES

UNAVAILABLE = "device unavailable (see first error)"


def session_wide(exc: BaseException) -> bool:
    """Whether a mount error means every later mount of this process fails the same way."""
    from jumpstarter_driver_ssh_mount import (
        AuthenticationError,
        ConnectError,
        FuseUnavailableError,
        SshfsNotFoundError,
    )
    from pytest_jumpstarter_mount.runstate.mountdir import MountDirError

    repeats = ConnectError | AuthenticationError | FuseUnavailableError | SshfsNotFoundError | MountDirError
    return isinstance(exc, repeats)


class DeviceAvailability:
    """Plugin object: what made the device unavailable, if anything, and the check before each test."""

    def __init__(self, unconfigured: str | None = None) -> None:
        self.unconfigured = unconfigured  # no device source is configured: this line for each test that needs one
        self.device_reason: str | None = None  # the source or the mount driver failed
        self.mount_reason: str | None = None  # mounts cannot reach or log in to the device
        self.collection_noted = False

    @property
    def reason(self) -> str | None:
        """Why the device cannot be mounted, or None while it may be."""
        return self.device_reason or self.mount_reason

    def device_failed(self, reason: str) -> str:
        """Record that the device cannot be had; ``reason``, for the first error."""
        self.device_reason = self.device_reason or reason
        return reason

    def mount_failed(self, reason: str) -> str:
        """Record that the device cannot be mounted; ``reason``, for the first error."""
        self.mount_reason = self.mount_reason or reason
        return reason

    def check_mount(self) -> None:
        """Fail at once, in short, when mounts are known to fail."""
        if self.reason:
            fail_short(self.reason)

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_setup(self, item: pytest.Item) -> None:
        """Before any fixture: a test that needs an unavailable device errors in one short line."""
        needs = set(getattr(item, "fixturenames", ()))
        if self.unconfigured and needs & {*DEVICE_FIXTURES, *MOUNT_FIXTURES}:
            pytest.fail(self.unconfigured, pytrace=False)
        reason = None
        if needs & set(MOUNT_FIXTURES):  # remote_path asks for remote_fs only when it runs
            reason = self.reason
        elif needs & set(DEVICE_FIXTURES):
            reason = self.device_reason
        if reason:
            fail_short(reason)


def fail_short(reason: str) -> None:
    """Fail with ``device unavailable (see first error): <reason's first clause>`` (the fix was in the first)."""
    pytest.fail(f"{UNAVAILABLE}: {reason.split('; ')[0]}", pytrace=False)
