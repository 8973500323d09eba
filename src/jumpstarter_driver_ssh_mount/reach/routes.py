"""Which way sshfs reaches the device, in the order ``auto`` tries them: the device's address,
the exporter's one-shot relay, the port forward. Each attempt is one ``_start``."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from jumpstarter_driver_ssh_mount.common.choices import DEFAULT_CACHE
from jumpstarter_driver_ssh_mount.common.errors import ConnectError, MountTimeoutError
from jumpstarter_driver_ssh_mount.mount import Mount
from jumpstarter_driver_ssh_mount.reach.route import published_address
from jumpstarter_driver_ssh_mount.reach.transport import (
    RelayOffer,
    format_address,
    probe_tcp,
    release_relay,
    request_relay,
    user_proxy_option,
)
from jumpstarter_driver_ssh_mount.reach.trust import Refused
from jumpstarter_driver_ssh_mount.ssh.hostkeypolicy import EXPORTER, HostKeyTrust
from jumpstarter_driver_ssh_mount.ssh.hostkeys import VouchedKeys
from jumpstarter_driver_ssh_mount.sshfs.command import InvalidOptionError


@dataclass
class MountPlan:
    """What every mount attempt of one ``mounted()`` call shares."""

    mountpoint: str | os.PathLike[str] | None
    remote_path: str
    options: list[str]
    timeout: float
    mount_dir: str | os.PathLike[str] | None
    cache: str = DEFAULT_CACHE
    trust: HostKeyTrust = field(default_factory=lambda: HostKeyTrust(EXPORTER))  # whose keys are checked


class TransportRoutes:
    """The choice of transport for ``SSHMountClient``; it provides ``_start``, ``call``, ``ssh``, ``logger``."""

    if TYPE_CHECKING:
        logger: logging.Logger
        ssh: Any

        def call(self, method: str, *args: Any) -> Any: ...

    def _start(
        self,
        plan: MountPlan,
        vouched: VouchedKeys | None,
        how: str,
        address: tuple[str, int] | None = None,
        note: str | None = None,
        relay: RelayOffer | None = None,
    ) -> Mount:
        raise NotImplementedError

    def _mount_via(self, transport: str, vouched: VouchedKeys | None, plan: MountPlan) -> Mount:
        """Mount over ``transport``; "auto" tries the address, then the relay, only when the host key is checked."""
        if transport == "forward":
            return self._start(plan, vouched, "forward")
        if transport == "relay":
            return self._via_relay(plan, vouched, forced=True)
        if transport == "auto" and not plan.trust.verified:  # never the device's address unchecked
            self.logger.info("transport auto: using the port forward (%s)", plan.trust.outcome)
            return self._start(plan, vouched, "forward")
        address, unpublished = published_address(self.ssh.tcp)
        if address is None and transport == "direct":
            self.logger.warning("direct address unavailable (%s); using the port forward", unpublished)
            return self._auto_forward(plan, vouched, unpublished)
        if address is None:
            return self._via_relay(plan, vouched, why=unpublished)
        if transport == "direct":
            return self._start(plan, vouched, "direct", address)
        at, reason = format_address(*address), probe_tcp(*address)
        if reason is None:
            try:
                return self._start(plan, vouched, "direct", address, note=f"{at} {answered(plan.trust)}")
            except ConnectError as exc:
                reason = str(exc)
            except Refused:
                reason = f"{at} offered another host key than the exporter vouches for"
        return self._via_relay(plan, vouched, why=reason)

    def _via_relay(self, plan: MountPlan, vouched: VouchedKeys | None, *, forced: bool = False, why: str = "") -> Mount:
        """Through a one-shot relay on the exporter host; the port forward (warned) if that fails.

        Without a relay offered, ``auto`` (``why``: why not direct) takes the forward and
        ``relay`` (``forced``) is an error. A relay offered but unusable is a warning in
        ``Mount.warnings`` (the plugin shows it as a ``JumpstarterMountWarning``).
        """
        if proxy := user_proxy_option(plan.options):
            if forced:
                raise InvalidOptionError(
                    f"transport 'relay': the relay is reached through its own ProxyCommand (it sends the relay's "
                    f"token first); option {proxy!r} would replace it: drop it, or use transport 'forward' or 'direct'"
                )
            reason = f"option {proxy!r} would replace the ProxyCommand that reaches the exporter's relay"
            return self._auto_forward(plan, vouched, f"{why}; {reason}" if why else reason)
        offer = request_relay(self.call)
        if not offer.offered:
            if forced:
                raise ConnectError(
                    f"transport 'relay': {offer.problem}; set relay_listen in the exporter's SSHMount config, "
                    "or use transport 'auto' or 'forward'"
                )
            return self._auto_forward(plan, vouched, f"{why}; {offer.problem}" if why else offer.problem)
        if not offer.usable:
            problem = f"the exporter could not open a relay ({offer.problem})"
        elif not offer.token:
            release_relay(self.call, offer.id, self.logger)
            problem = (
                f"the exporter's relay at {offer.address} serves whoever connects first (an older SSHMount "
                "without relay tokens); update the exporter's jumpstarter-driver-ssh-mount"
            )
        else:
            note = f"the exporter's relay at {offer.address} {answered(plan.trust)}"
            try:
                return self._start(plan, vouched, "relay", (offer.host, offer.port), f"{why}; {note}", offer)
            except (ConnectError, MountTimeoutError) as exc:
                problem = f"the relay at {offer.address} failed ({exc})"
            except Refused:
                if forced:
                    raise
                problem = f"the relay at {offer.address} offered another host key than the exporter vouches for"
        self.logger.warning("%s; using the port forward", problem)
        mount = self._start(plan, vouched, "forward", note=problem)
        mount.warnings.append(f"using the Jumpstarter port forward, not the exporter's relay: {problem}")
        return mount

    def _auto_forward(self, plan: MountPlan, vouched: VouchedKeys | None, reason: str) -> Mount:
        """The port forward, taken instead of the device's address because of ``reason`` (a mount warning)."""
        self.logger.info("transport auto: using the port forward (%s)", reason)
        mount = self._start(plan, vouched, "forward", note=reason)
        mount.warnings.append(f"using the Jumpstarter port forward, not the device's address: {reason}")
        return mount


def answered(trust: HostKeyTrust) -> str:
    """How an address that was mounted answered, for ``Mount.transport_note``."""
    return "answered with the vouched host key" if trust.source == EXPORTER else "answered"
