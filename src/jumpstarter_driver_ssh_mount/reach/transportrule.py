"""The one transport rule: ``transport`` and ``direct``, from any source, to the transport a mount or a
device command uses (``decide_transport``).

Every source goes through it: the command line, the environment and the ini file (the plugin's
settings), the ``jmp_mount`` marker, the Python API (``mounted()``, ``run()``) and ``j mount``. Each
source words its own errors; the rule is the same:

* ``direct`` is an alias with one meaning: ``direct=True`` is ``transport="direct"``; an explicit
  ``direct=False`` (the marker can say it) is ``transport="forward"``; a flag left off says nothing.
* Neither given: ``default`` ("auto"). One given, or both naming the same transport: that one.
* Both given, naming different transports: the more specific source wins (command line, then
  environment, then ini file); in the same source it is a ``TransportConflict``. The Python API is
  the one place ``direct`` ranks below ``transport``: there ``direct`` is upstream's spelling, and a
  named ``transport`` overrides it.

Imports nothing from Jumpstarter: the pytest plugin reads it at start.
"""

from __future__ import annotations

from jumpstarter_driver_ssh_mount.common.choices import TRANSPORTS


class UnknownTransport(ValueError):
    """A transport name that is not one of ``TRANSPORTS``."""

    def __init__(self, value: object) -> None:
        self.value = value
        super().__init__(f"unknown transport {value!r}; choose one of {', '.join(TRANSPORTS)}")


class TransportConflict(ValueError):
    """``direct`` and ``transport`` given in the same source, naming different transports."""

    def __init__(self, transport: str, implied: str) -> None:
        self.transport, self.implied = transport, implied
        super().__init__(f"direct means transport={implied!r}, but transport={transport!r} is given; give one")


def implied_by_direct(direct: bool) -> str:
    """The transport ``direct`` names: "direct" for True, "forward" for an explicit False."""
    return "direct" if direct else "forward"


def decide_transport(
    transport: str | None,
    direct: bool | None = None,
    *,
    transport_rank: int = 0,
    direct_rank: int = 0,
    default: str | None = "auto",
) -> str | None:
    """The transport to use (see the module's rule); ``default`` when neither says one.

    :param direct: True, False (an explicit "forward"), or None: not given.
    :param transport_rank: how specific the source of ``transport`` is (higher wins); ``direct_rank``
        the same for ``direct``. Equal ranks with different transports are a ``TransportConflict``.
    :raises UnknownTransport: ``transport`` is not one of ``TRANSPORTS``.
    """
    if transport is not None and transport not in TRANSPORTS:
        raise UnknownTransport(transport)
    if direct is None:
        return transport or default
    implied = implied_by_direct(direct)
    if transport is None or transport == implied:
        return implied
    if transport_rank == direct_rank:
        raise TransportConflict(transport, implied)
    return transport if transport_rank > direct_rank else implied
