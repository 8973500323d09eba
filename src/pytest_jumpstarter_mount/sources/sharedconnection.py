"""The device's one ssh connection per pytest process: ``SharedConnection``.

``device_run`` commands and the mounts' bulk device-file work (``DeviceFiles.read_in_bulk``)
share it: opened on first use as ``reach.device_connection.DeviceConnection`` opens it (the
transport, host-key rule and ssh options of ``--jmp-mount-*``), closed with the device.
"""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING

from pytest_jumpstarter_mount.config.settings import Settings

if TYPE_CHECKING:
    from jumpstarter_driver_ssh_mount.client import SSHMountClient
    from jumpstarter_driver_ssh_mount.devicefiles.bulkfs import ScriptRunner
    from jumpstarter_driver_ssh_mount.reach.device_connection import DeviceConnection

logger = logging.getLogger("pytest_jumpstarter_mount")


class SharedConnection:
    """At most one open ``DeviceConnection`` (for the current device client); ``close`` ends it."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._lock = threading.Lock()
        self._connection: DeviceConnection | None = None

    def get(self, client: SSHMountClient) -> DeviceConnection:
        """The connection to ``client``'s device (made now if there is none, or it was another device's)."""
        from jumpstarter_driver_ssh_mount.reach.device_connection import DeviceConnection

        with self._lock:
            if self._connection is None or self._connection.client is not client:
                s = self.settings
                self._connection = DeviceConnection(
                    client, transport=s.transport, insecure=s.insecure, options=s.options
                )
            return self._connection

    def runner(self, client: SSHMountClient) -> ScriptRunner:
        """Run a device shell script over the connection (for ``read_in_bulk``); None when it cannot be opened."""

        def run(script: bytes, timeout: float, max_bytes: int) -> bytes | None:
            return self.get(client).script_runner()(script, timeout, max_bytes)

        return run

    def close(self) -> None:
        """End the connection, if any; never raises. A later ``get`` opens a new one."""
        with self._lock:
            connection, self._connection = self._connection, None
        if connection is not None:
            try:
                connection.close()
            except Exception as exc:
                logger.warning("closing the device connection failed: %s", exc)
