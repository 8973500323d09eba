"""Host key trust on the client: what the exporter vouches for, and the error when the device differs."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

from jumpstarter.client.core import DriverMethodNotImplemented
from jumpstarter_driver_network.adapters import TcpPortforwardAdapter

from jumpstarter_driver_ssh_mount.common.errors import ConnectError, HostKeyError
from jumpstarter_driver_ssh_mount.ssh.hostkeypolicy import EXPORTER, OLD_EXPORTER, HostKeyTrust
from jumpstarter_driver_ssh_mount.ssh.hostkeys import HostKey, VouchedKeys, describe, scan_host_keys
from jumpstarter_driver_ssh_mount.ssh.optioncheck import check_ssh_options


def establish_trust(
    call: Callable[..., Any], logger: logging.Logger, options: Sequence[str], insecure: bool, transport: str
) -> tuple[HostKeyTrust, VouchedKeys | None]:
    """Whose keys this connection's host key is checked against, and the exporter's keys when they are the ones.

    Fails closed: from an exporter that vouches for no key (an older SSHMount), only the port
    forward (through the exporter) is taken unverified; ``direct`` is refused.

    :raises InvalidOptionError: ssh refuses one of ``options`` (named).
    :raises HostKeyError: ``direct`` with nothing to check the device's key against.
    """
    check_ssh_options(options)
    trust = HostKeyTrust.decide(options, insecure)
    if insecure:
        logger.warning("insecure: the device's host key is not verified")
    if trust.source != EXPORTER:
        return trust, None
    vouched = fetch_vouched(call, logger)
    if vouched is not None:
        return trust, vouched
    if transport == "direct":
        raise HostKeyError(
            f"transport 'direct' refused: {OLD_EXPORTER}, so the device's host key cannot be checked at its "
            "address; update jumpstarter-driver-ssh-mount on the exporter, use transport 'forward' (through the "
            "exporter), bring your own known-hosts (UserKnownHostsFile, HostKeyAlias), or mount insecure"
        )
    return HostKeyTrust.exporter_vouches_for_none(), None


def fetch_vouched(call: Callable[..., Any], logger: logging.Logger, refresh: bool = False) -> VouchedKeys | None:
    """The keys the exporter vouches for; None (with a warning) from an exporter without ``host_keys``.

    :raises ConnectError: the exporter cannot reach the device's sshd.
    :raises HostKeyError: the exporter cannot read the device's host key for another reason.
    """
    try:
        vouched = VouchedKeys.from_dict(call("host_keys", refresh))
    except DriverMethodNotImplemented:
        logger.warning(
            "%s: the device's host key is not verified; update jumpstarter-driver-ssh-mount on the exporter",
            OLD_EXPORTER,
        )
        return None
    if vouched.unreachable:
        raise unreachable_error(vouched.problem or "no answer")
    if vouched.problem or not vouched.keys:
        raise HostKeyError(
            f"the exporter cannot vouch for the device's host key ({vouched.problem or 'no key'}); set host_key "
            "in the exporter's SSHMount config, or mount insecure (host key not verified)"
        )
    return vouched


def unreachable_error(problem: str) -> ConnectError:
    """The error for a device whose sshd the exporter cannot reach; ``problem`` is ``"host:port: <reason>"``."""
    return ConnectError(
        f"the exporter cannot reach the device's sshd at {problem}; "
        "is the device up and sshd listening on the TcpNetwork driver's host and port?"
    )


class Refused(Exception):
    """The device offered another host key than ``vouched``, over ``transport`` (at ``address``, direct or relay)."""

    def __init__(self, vouched: VouchedKeys, transport: str, address: tuple[str, int] | None) -> None:
        super().__init__(f"host key refused ({transport})")
        self.vouched, self.transport, self.address = vouched, transport, address

    @property
    def where(self) -> str:
        """Where the key was offered, for messages."""
        if self.address is None:
            return "the device (port forward)"
        return f"{self.address[0]} port {self.address[1]} ({self.transport})"


def read_offered(refused: Refused, tcp: Any, logger: logging.Logger) -> tuple[HostKey, ...]:
    """The keys offered where ``refused`` happened: at its direct address, else through a new forward over ``tcp``.

    A relay accepts one connection only, so its device is read through the forward, which reaches
    the same device from the same side.
    """
    try:
        if refused.address is not None and refused.transport == "direct":
            return scan_host_keys(*refused.address)
        with TcpPortforwardAdapter(client=tcp) as (host, port):
            return scan_host_keys(host, port)
    except Exception as exc:  # the report is best effort; the mismatch stands
        logger.debug("reading the offered host key failed: %r", exc)
        return ()


def mismatch_error(refused: Refused, offered: Sequence[HostKey]) -> HostKeyError:
    """The one-line error for a host that offered another key (``offered``, if read) than the vouched ones."""
    vouched = refused.vouched
    source = "the configured host_key" if vouched.configured else "read from the device by the exporter"
    if vouched.configured:
        fix = (
            "if the device was reflashed, put its new /etc/ssh/ssh_host_*_key.pub in host_key "
            "in the exporter's SSHMount config; otherwise do not trust it"
        )
    elif refused.transport == "direct":
        fix = (
            "that address is not the device the exporter reaches: use transport 'auto' or 'forward', "
            "or publish the device's right address"
        )
    else:
        fix = "the device's host key changed while mounting; retry, or set host_key in the exporter's SSHMount config"
    seen = describe(offered) if offered else "a key ssh-keyscan could not read"
    return HostKeyError(
        f"host key mismatch at {refused.where}: it offered {seen}, the exporter vouches for "
        f"{describe(vouched.keys)} ({source}); no login was attempted; {fix}"
    )
