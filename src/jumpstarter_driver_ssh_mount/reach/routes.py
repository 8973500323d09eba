"""The plan of ways to the device, in the order ``auto`` tries them: the device's address, the exporter's
one-shot relay, the port forward. ``RoutePlan.run`` hands each way to the caller's attempt (a mount, a
device command, a shell) until one works; it knows nothing of what the attempt does with it."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from jumpstarter_driver_ssh_mount.common.errors import ConnectError, InvalidOptionError, MountTimeoutError
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


class Reached(Protocol):
    """What an attempt returns: anything that carries warnings for the user (a ``Mount``, a connection)."""

    @property
    def warnings(self) -> list[str]:
        """What went otherwise than asked; the plan adds why it fell back to the port forward."""


R = TypeVar("R", bound=Reached)


@dataclass(frozen=True)
class Way:
    """One way to try: ``how`` ("direct", "relay", "forward"), the address (None: a new port forward),
    why it was taken (``note``), and the relay offer it goes through (the attempt releases it when done)."""

    how: str
    address: tuple[str, int] | None = None
    note: str | None = None
    relay: RelayOffer | None = None


#: Tries one way; raises ``ConnectError``/``MountTimeoutError`` (could not get there) or ``Refused`` (the host
#: key was not the vouched one) so that ``auto`` can try the next way.
Attempt = Callable[[Way], R]


@dataclass
class RoutePlan:
    """The ways to one device for one transport, tried in ``auto``'s order by ``run``.

    ``call`` asks the exporter (a relay, the device's reachability), ``tcp`` is the SSH driver's TCP
    child (the published address), ``trust`` says whose keys check the host key: the device's own
    address is taken by ``auto`` only when a key is checked.
    """

    transport: str
    trust: HostKeyTrust
    options: Sequence[str]
    call: Callable[..., Any]
    tcp: Any
    logger: logging.Logger

    def run(self, attempt: Attempt[R]) -> R:
        """The first way that works for ``attempt``; "auto" tries the address, then the relay, then the forward."""
        if self.transport == "forward":
            return attempt(Way("forward"))
        if self.transport == "relay":
            return self._via_relay(attempt, forced=True)
        if self.transport == "auto" and not self.trust.verified:  # never the device's address unchecked
            self.logger.info("transport auto: using the port forward (%s)", self.trust.outcome)
            return attempt(Way("forward"))
        address, unpublished = published_address(self.tcp)
        if address is None and self.transport == "direct":
            self.logger.warning("direct address unavailable (%s); using the port forward", unpublished)
            return self._auto_forward(attempt, unpublished)
        if address is None:
            return self._via_relay(attempt, why=unpublished)
        if self.transport == "direct":
            return attempt(Way("direct", address))
        at, reason = format_address(*address), probe_tcp(*address)
        if reason is None:
            try:
                return attempt(Way("direct", address, f"{at} {answered(self.trust)}"))
            except ConnectError as exc:
                reason = str(exc)
            except Refused:
                reason = f"{at} offered another host key than the exporter vouches for"
        return self._via_relay(attempt, why=reason)

    def _via_relay(self, attempt: Attempt[R], *, forced: bool = False, why: str = "") -> R:
        """Through a one-shot relay on the exporter host; the port forward (warned) if that fails.

        Without a relay offered, ``auto`` (``why``: why not direct) takes the forward and
        ``relay`` (``forced``) is an error. A relay offered but unusable is a warning in the
        result's ``warnings`` (the plugin shows it as a ``JumpstarterMountWarning``).
        """
        if proxy := user_proxy_option(self.options):
            if forced:
                raise InvalidOptionError(
                    f"transport 'relay': the relay is reached through its own ProxyCommand (it sends the relay's "
                    f"token first); option {proxy!r} would replace it: drop it, or use transport 'forward' or 'direct'"
                )
            reason = f"option {proxy!r} would replace the ProxyCommand that reaches the exporter's relay"
            return self._auto_forward(attempt, f"{why}; {reason}" if why else reason)
        offer = request_relay(self.call)
        if not offer.offered:
            if forced:
                raise ConnectError(
                    f"transport 'relay': {offer.problem}; set relay_listen in the exporter's SSHMount config, "
                    "or use transport 'auto' or 'forward'"
                )
            return self._auto_forward(attempt, f"{why}; {offer.problem}" if why else offer.problem)
        if not offer.usable:
            problem = f"the exporter could not open a relay ({offer.problem})"
        elif not offer.token:
            release_relay(self.call, offer.id, self.logger)
            problem = (
                f"the exporter's relay at {offer.address} serves whoever connects first (an older SSHMount "
                "without relay tokens); update the exporter's jumpstarter-driver-ssh-mount"
            )
        else:
            note = f"the exporter's relay at {offer.address} {answered(self.trust)}"
            try:
                return attempt(Way("relay", (offer.host, offer.port), f"{why}; {note}" if why else note, offer))
            except (ConnectError, MountTimeoutError) as exc:
                problem = f"the relay at {offer.address} failed ({exc})"
            except Refused:
                if forced:
                    raise
                problem = f"the relay at {offer.address} offered another host key than the exporter vouches for"
        self.logger.warning("%s; using the port forward", problem)
        reached = attempt(Way("forward", note=problem))
        reached.warnings.append(f"using the Jumpstarter port forward, not the exporter's relay: {problem}")
        return reached

    def _auto_forward(self, attempt: Attempt[R], reason: str) -> R:
        """The port forward, taken instead of the device's address because of ``reason`` (a warning)."""
        self.logger.info("transport auto: using the port forward (%s)", reason)
        reached = attempt(Way("forward", note=reason))
        reached.warnings.append(f"using the Jumpstarter port forward, not the device's address: {reason}")
        return reached


def answered(trust: HostKeyTrust) -> str:
    """How an address that was reached answered, for a ``transport_note``."""
    return "answered with the vouched host key" if trust.source == EXPORTER else "answered"
