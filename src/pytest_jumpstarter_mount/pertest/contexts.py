"""The wider contexts of parts that mount (restore) or read what a test used (failure reports)."""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Protocol

from pytest_jumpstarter_mount.runstate.runcontext import RunContext

if TYPE_CHECKING:
    import pytest

    from jumpstarter_driver_ssh_mount import Mount
    from jumpstarter_driver_ssh_mount.client import SSHMountClient
    from pytest_jumpstarter_mount.config.marker import MarkerSpec
    from pytest_jumpstarter_mount.sources.failfast import DeviceAvailability
    from pytest_jumpstarter_mount.sources.leases import LeaseInfo


class MountingContext(RunContext, Protocol):
    """A ``RunContext`` that also mounts (the restore of files a dead run left needs a mount)."""

    def mounted(self, client: SSHMountClient, spec: MarkerSpec = ...) -> AbstractContextManager[Mount]:
        """A mount of the device for ``spec``, unmounted on exit."""


class LeaseHolder(Protocol):
    """Whatever knows this process's controller lease (the ``DeviceFarm``)."""

    @property
    def lease(self) -> LeaseInfo | None:
        """The lease this process holds, if any."""


class CollectingContext(MountingContext, Protocol):
    """What the failure reports read: the mounts a test used, the device's state and client, the lease."""

    @property
    def farm(self) -> LeaseHolder:
        """The lease of this process."""

    @property
    def availability(self) -> DeviceAvailability:
        """Why the device cannot be mounted, if it cannot."""

    @property
    def mount_client(self) -> SSHMountClient | None:
        """The device's client, once a test needed the device."""

    def used_mounts(self, item: pytest.Item) -> list[Mount]:
        """The mounts ``item`` used."""
