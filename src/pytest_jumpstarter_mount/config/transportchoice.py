"""How the plugin's mounts reach the device: ``--jmp-mount-transport``, its ``--jmp-mount-direct``
alias, and ``--jmp-mount-insecure`` (its warning, its header line)."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import pytest

from jumpstarter_driver_ssh_mount import TRANSPORTS
from jumpstarter_driver_ssh_mount.reach.transportrule import TransportConflict, UnknownTransport, decide_transport
from jumpstarter_driver_ssh_mount.ssh.hostkeypolicy import HostKeyTrust

INSECURE_WARNING = (
    "--jmp-mount-insecure: the device's host key is not verified; the device's login goes to whatever "
    "answers at its address. Drop the option to have the exporter vouch for the host key"
)


def source_rank(config: pytest.Config, option: Any) -> int:
    """Where a ``settings.Option`` is set: 3 command line, 2 environment, 1 ini, 0 not at all."""
    if config.getoption(option.dest, default=None) is not None:
        return 3
    if option.env in os.environ:
        return 2
    return 1 if config.getini(option.dest) not in (None, "", []) else 0


def transport_setting(config: pytest.Config, value: Mapping[str, Any], options: Iterable[Any]) -> str:
    """The transport from the resolved option ``value``s and where the two options were set."""
    named = {o.name: o for o in options}
    ranks = (source_rank(config, named["transport"]), source_rank(config, named["direct"]))
    return choose_transport(value["transport"], bool(value["direct"]), *ranks)


def choose_transport(transport: object, direct: bool, transport_rank: int, direct_rank: int) -> str:
    """The transport from ``--jmp-mount-transport`` and ``--jmp-mount-direct`` (an alias of "direct").

    ``*_rank`` say where each was set (3 command line, 2 environment, 1 ini, 0 not at all): the
    more specific source wins; both in the same source with different transports is a
    ``pytest.UsageError``, as is an unknown name.
    """
    chosen = None if transport is None else str(transport).strip().lower()
    try:  # the one transport rule (transportrule); a flag left off says nothing
        return (
            decide_transport(chosen, direct or None, transport_rank=transport_rank, direct_rank=direct_rank) or "auto"
        )
    except UnknownTransport:
        raise pytest.UsageError(
            f"--jmp-mount-transport must be one of {', '.join(TRANSPORTS)}, got {chosen!r}"
        ) from None
    except TransportConflict:
        raise pytest.UsageError(
            f"--jmp-mount-direct means --jmp-mount-transport=direct, but --jmp-mount-transport={chosen} "
            "is given too; give one of them"
        ) from None


def describe_transport(transport: str, options: Sequence[str], insecure: bool) -> str:
    """One line for the report header: the configured transport, and whose keys the host key is checked against.

    Before any mount, so never "verified": a mount's ``transport_note`` says what was.
    """
    if insecure:
        return f"transport: {transport}; host key NOT verified (--jmp-mount-insecure)"
    return f"transport: {transport}; {HostKeyTrust.decide(options).planned}"
