"""Which device this is, the same from one run to the next: for the restore journal.

The host keys the exporter vouches for identify a device whatever the way to it (``jmp
shell``, an exporter config, a lease). Without them (an older exporter, a device it cannot
reach), the device source together with the address the exporter publishes for the device.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from jumpstarter_driver_ssh_mount.client import SSHMountClient

logger = logging.getLogger("pytest_jumpstarter_mount")


@dataclass(frozen=True)
class DeviceIdentity:
    """``key`` identifies the device across runs; ``label`` names it in messages."""

    key: str
    label: str

    @property
    def digest(self) -> str:
        """A short, file-name-safe form of ``key``."""
        import hashlib  # only once a device is journaled: the plugin loads in every pytest run

        return hashlib.sha256(self.key.encode()).hexdigest()[:16]


def identify(client: SSHMountClient, source: str) -> DeviceIdentity:
    """The identity of the device behind ``client``, reached through ``source`` (a description)."""
    address = _published_address(client)
    where = address or source
    fingerprints = _vouched_fingerprints(client)
    if fingerprints:
        return DeviceIdentity("host keys " + " ".join(fingerprints), f"{where} (host key {fingerprints[0]})")
    return DeviceIdentity(f"source {source} address {address or '?'}", where)


def _vouched_fingerprints(client: SSHMountClient) -> list[str]:
    from jumpstarter_driver_ssh_mount.ssh.hostkeys import VouchedKeys

    try:
        vouched = VouchedKeys.from_dict(client.call("host_keys", False))
    except Exception as exc:  # an older exporter, a malformed answer: the fallback identity is used
        logger.debug("no vouched host key to identify the device: %s", exc)
        return []
    return sorted(k.fingerprint for k in vouched.keys)


def _published_address(client: SSHMountClient) -> str | None:
    from jumpstarter_driver_ssh_mount.reach.transport import format_address, parse_tcp_address

    try:
        return format_address(*parse_tcp_address(client.ssh.tcp.address()))
    except Exception as exc:  # no TcpNetwork, no address: the source alone names the device
        logger.debug("no published device address: %s", exc)
        return None
