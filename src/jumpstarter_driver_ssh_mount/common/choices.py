"""The choices a user makes, what each means, and the defaults: transports, cache modes, file backends.

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
    "relay": "a TCP relay on the exporter host, one per mount",
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

#: What carries the device's files, and what each choice means.
BACKEND_MEANINGS: dict[str, str] = {
    "auto": "sshfs where a FUSE mount works, else sftp",
    "sshfs": "a FUSE mount (needs /dev/fuse and sshfs)",
    "sftp": "an SFTP session from the test process, no FUSE (remote_path is a DevicePath: use pathlib methods)",
}
BACKEND_CHOICES: tuple[str, ...] = tuple(BACKEND_MEANINGS)
BACKENDS: tuple[str, ...] = ("sshfs", "sftp")  # what a mount's own backend is: never "auto"
DEFAULT_BACKEND = "auto"
