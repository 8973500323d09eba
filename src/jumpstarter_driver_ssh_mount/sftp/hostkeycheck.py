"""The SFTP backend's host-key check of a key that is not in the known-hosts file: the route's ``KeyHook`` decides.

asyncssh trusts the keys of its ``known_hosts`` (the exporter's file) first; a key it does not find
there goes to the client object's ``validate_host_public_key``. With the route's ``KeyHook`` that
is the same question ssh's ``KnownHostsCommand`` asks for sshfs: is the key among those the exporter
vouches for, the exporter asked again (at most every ``keyhook.ASK_AGAIN_AFTER`` s) when it is not?
A reflashed device whose new key the exporter now reads is accepted (and ``host key changed on ...``
noted once); a key nobody vouches for is refused, the hook's ``refused`` naming both fingerprints.
Nothing is trusted on first use, nothing is written.
"""

from __future__ import annotations

import logging
from typing import Any

import asyncssh

from jumpstarter_driver_ssh_mount.ssh.hostkeys import HostKey
from jumpstarter_driver_ssh_mount.ssh.keyhook import KeyHook

logger = logging.getLogger("jumpstarter_driver_ssh_mount")


class VouchedKeyClient(asyncssh.SSHClient):
    """An asyncssh client that asks ``hook`` about a host key the known-hosts file lacks."""

    def __init__(self, hook: KeyHook) -> None:
        self._hook = hook

    def validate_host_public_key(self, host: str, addr: str, port: int, key: asyncssh.SSHKey) -> bool:
        """True when the exporter vouches for ``key`` now (``KeyHook.vouches_for``)."""
        try:
            offered = HostKey.parse(key.export_public_key("openssh").decode("ascii"))
        except (ValueError, UnicodeError) as exc:
            logger.info("a host key the SFTP client cannot read: %s", exc)
            return False
        return self._hook.vouches_for(offered)


def hook_settings(hook: KeyHook | None) -> dict[str, Any]:
    """asyncssh ``connect`` keywords that let ``hook`` decide on keys the file lacks (none without a hook)."""
    if hook is None:
        return {}
    return {"client_factory": lambda: VouchedKeyClient(hook)}
