"""The choices a user makes, what each means, and the defaults: transports and cache modes.

Every help text, doc table and check reads this one light module.
"""

from __future__ import annotations

#: How the device is reached, and what each way means: every help text and doc table reads
#: this one place. A mount's own transport is never "auto".
TRANSPORT_MEANINGS: dict[str, str] = {
    "auto": "the device's address when it answers with the vouched host key, else the exporter's relay "
    "when it offers one, else the port forward",
    "direct": "the device's address only",
    "forward": "the Jumpstarter port forward only",
    "relay": "a one-shot TCP relay on the exporter host",
}
TRANSPORTS: tuple[str, ...] = tuple(TRANSPORT_MEANINGS)
TRANSPORT_LABELS = {"direct": "direct", "forward": "port forward", "relay": "exporter relay"}


def describe_choices(meanings: dict[str, str]) -> str:
    """``"a: what a means; b: what b means"``, for help texts that list every choice."""
    return "; ".join(f"{name}: {meaning}" for name, meaning in meanings.items())


def transport_label(transport: str) -> str:
    """How messages name a transport: "direct", "port forward", "exporter relay"."""
    return TRANSPORT_LABELS.get(transport, transport)


FRESH_BOUND = 0.5  # seconds a "fresh" mount may show a device change late
FAST_BOUND = 20.0  # seconds a "fast" mount may show a new/deleted/resized file late (sshfs dcache_timeout)
#: How much sshfs and the kernel may cache, and what each mode means for a test.
CACHE_MEANINGS: dict[str, str] = {
    "fresh": f"device changes show within {FRESH_BOUND:g} s",
    "fast": f"sshfs's own caching, new/deleted/resized files up to {FAST_BOUND:g} s late",
}
CACHE_MODES: tuple[str, ...] = tuple(CACHE_MEANINGS)
DEFAULT_CACHE = "fresh"
