"""What a part of the plugin gets instead of the whole manager: ``RunContext`` (a structural type).

``MountManager`` provides it; parts name only what they use, and import neither the manager nor each other.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    import pytest

    from jumpstarter_driver_ssh_mount.client import SSHMountClient
    from jumpstarter_driver_ssh_mount.sshfs import Mount

    from .failfast import DeviceAvailability
    from .leases import LeaseInfo
    from .marker import MarkerSpec
    from .settings import Settings


class RunContext(Protocol):
    """This process in the run: its config and settings, worker and run ids, and its run directory."""

    config: pytest.Config
    settings: Settings
    worker_id: str  # "main", or the xdist worker's id
    run_id: str  # shared by the workers of one run

    def mount_dir(self) -> Path:
        """This process's private run directory (made on first use)."""

    def sweep(self) -> None:
        """Clean up what dead processes left in the run directories."""


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
