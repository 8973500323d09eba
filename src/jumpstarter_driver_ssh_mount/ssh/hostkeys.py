"""Verifying the device's host key: public key lines, fingerprints, a private known-hosts file.

The keys to trust come from elsewhere (the exporter vouches for them); this module only
checks their text, writes them where ssh looks, and builds the options that make ssh
refuse any other key before it authenticates. ``HostKeyAlias`` names the device in that
file, so the port sshfs connects to (a port forward's changes every time) does not matter.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import math
import os
import struct
import subprocess
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

#: The name the device's keys are filed under in our known-hosts file.
DEFAULT_ALIAS = "jmp-mount-device"
#: Seconds ssh-keyscan waits for the device.
SCAN_TIMEOUT = 5.0
CONFIGURED, SCANNED = "configured", "scanned"


@dataclass(frozen=True)
class HostKey:
    """One public host key: its type, its base64 blob and an optional comment."""

    keytype: str
    blob: str
    comment: str = ""

    @classmethod
    def parse(cls, line: str, lineno: int = 1) -> HostKey:
        """``KEYTYPE BASE64 [COMMENT]`` (an ``ssh_host_*_key.pub``) -> HostKey; ValueError naming the line."""
        fields = line.split(None, 2)
        if len(fields) < 2:
            raise ValueError(f"line {lineno}: expected 'KEYTYPE BASE64 [COMMENT]' (a ssh_host_*_key.pub), got {line!r}")
        keytype, blob = fields[0], fields[1]
        if _looks_like_keytype(blob) and not _looks_like_keytype(keytype):
            raise ValueError(f"line {lineno}: starts with {keytype!r}; give only 'KEYTYPE BASE64 [COMMENT]'")
        try:
            raw = base64.b64decode(blob, validate=True)
        except (binascii.Error, ValueError):
            raise ValueError(f"line {lineno}: the key after {keytype!r} is not valid base64") from None
        embedded = _embedded_type(raw)
        if embedded != keytype:
            found = repr(embedded) if embedded else "no key type"
            raise ValueError(f"line {lineno}: the key is labelled {keytype!r} but its data holds {found}")
        if keytype.endswith("-cert-v01@openssh.com"):
            raise ValueError(f"line {lineno}: {keytype} is a certificate; give the host's plain public key")
        return cls(keytype, blob, fields[2].strip() if len(fields) > 2 else "")

    @property
    def line(self) -> str:
        """``KEYTYPE BASE64``, without the comment."""
        return f"{self.keytype} {self.blob}"

    @property
    def fingerprint(self) -> str:
        """The SHA256 fingerprint as ssh prints it (``SHA256:`` and unpadded base64)."""
        return fingerprint(base64.b64decode(self.blob))

    def __str__(self) -> str:
        return f"{self.fingerprint} ({self.keytype})"


def fingerprint(key_data: bytes) -> str:
    """``SHA256:...`` of the raw public key data, as ``ssh-keygen -l`` prints it."""
    digest = hashlib.sha256(key_data).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


def _looks_like_keytype(word: str) -> bool:
    return word.startswith(("ssh-", "ecdsa-", "sk-"))


def _embedded_type(raw: bytes) -> str:
    """The key type written at the start of the key data ("" if there is none)."""
    if len(raw) < 4:
        return ""
    (length,) = struct.unpack(">I", raw[:4])
    if length > len(raw) - 4:
        return ""
    return raw[4 : 4 + length].decode("ascii", errors="replace")


def parse_host_keys(text: str) -> tuple[HostKey, ...]:
    """Every key in ``text``: one per line, blank lines and ``#`` comments skipped.

    ValueError names the first bad line (counted from 1), or says that there is no key.
    """
    keys = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        if line.strip() and not line.lstrip().startswith("#"):
            keys.append(HostKey.parse(line.strip(), lineno))
    if not keys:
        raise ValueError("no host key given; expected lines 'KEYTYPE BASE64 [COMMENT]' (a ssh_host_*_key.pub)")
    return tuple(keys)


def describe(keys: Iterable[HostKey]) -> str:
    """``SHA256:... (ssh-ed25519), ...`` or "none"."""
    return ", ".join(str(k) for k in keys) or "none"


@dataclass(frozen=True)
class VouchedKeys:
    """The host keys the exporter vouches for, and where it got them.

    ``source`` is "configured" (the driver's ``host_key``) or "scanned" (read from the
    device by the exporter). ``problem`` is why there are none, ``unreachable`` whether
    that is because the device's sshd did not answer.
    """

    keys: tuple[HostKey, ...]
    source: str
    problem: str | None = None
    unreachable: bool = False

    @property
    def configured(self) -> bool:
        """True when the keys are the driver's configured ``host_key`` (never overridden)."""
        return self.source == CONFIGURED

    @property
    def lines(self) -> frozenset[str]:
        """The keys as ``KEYTYPE BASE64`` lines, in no order (to compare two answers)."""
        return frozenset(k.line for k in self.keys)

    def to_dict(self) -> dict[str, Any]:
        """Plain data for the exporter's answer."""
        return {
            "keys": [k.line for k in self.keys],
            "source": self.source,
            "problem": self.problem,
            "unreachable": self.unreachable,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> VouchedKeys:
        """The inverse of ``to_dict``; ValueError if a key is malformed."""
        keys = tuple(HostKey.parse(line, n) for n, line in enumerate(data.get("keys") or (), start=1))
        return cls(keys, str(data.get("source", "")), data.get("problem"), bool(data.get("unreachable")))


class KnownHosts:
    """A known-hosts file holding ``keys`` under ``alias``, for as long as the object is open.

    The file is 0600 in a private 0700 folder (``ownedfolders.KNOWN_HOSTS_FOLDERS``, with an
    owner record, so that the next run sweeps it after a ``kill -9``); ``close`` removes both.
    """

    def __init__(self, keys: Sequence[HostKey], alias: str = DEFAULT_ALIAS) -> None:
        from jumpstarter_driver_ssh_mount.common.ownedfolders import KNOWN_HOSTS_FOLDERS

        if not keys:
            raise ValueError("a known-hosts file needs at least one key")
        self.alias = alias
        self._folders = KNOWN_HOSTS_FOLDERS
        self._dir: str | None = str(self._folders.make())
        self.path = os.path.join(self._dir, "known_hosts")
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as out:
                out.writelines(f"{alias} {key.line}\n" for key in keys)
        except BaseException:
            self.close()
            raise

    @property
    def options(self) -> list[str]:
        """The ssh options that accept exactly these keys, checked before authentication."""
        return [
            "StrictHostKeyChecking=yes",
            f"UserKnownHostsFile={self.path}",
            "GlobalKnownHostsFile=/dev/null",
            f"HostKeyAlias={self.alias}",
            "CheckHostIP=no",
            "UpdateHostKeys=no",
        ]

    def close(self) -> None:
        """Remove the file and its directory. Safe to call more than once."""
        if self._dir is None:
            return
        self._folders.remove(self._dir)  # every file in it: ssh may leave a known_hosts.old beside it
        self._dir = None

    def __enter__(self) -> KnownHosts:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<KnownHosts {self.path} alias={self.alias}>"


def scan_command(host: str, port: int, timeout: float = SCAN_TIMEOUT) -> list[str]:
    """The ``ssh-keyscan`` command reading every host key ``host:port`` offers."""
    return ["ssh-keyscan", "-T", str(max(1, math.ceil(timeout))), "-p", str(port), host]


def parse_keyscan(output: str) -> tuple[HostKey, ...]:
    """The keys in ssh-keyscan's output (``HOST KEYTYPE BASE64`` lines); malformed lines are skipped."""
    keys = []
    for line in output.splitlines():
        fields = line.split()
        if len(fields) >= 3 and not line.startswith("#"):
            try:
                keys.append(HostKey.parse(" ".join(fields[1:3])))
            except ValueError:
                continue
    return tuple(keys)


def scan_host_keys(host: str, port: int, timeout: float = SCAN_TIMEOUT) -> tuple[HostKey, ...]:
    """The host keys ``host:port`` offers, read with ssh-keyscan; empty if none could be read."""
    try:
        result = subprocess.run(
            scan_command(host, port, timeout),
            capture_output=True,
            text=True,
            stdin=subprocess.DEVNULL,
            timeout=timeout + 2,
        )
    except (OSError, subprocess.TimeoutExpired):
        return ()
    return parse_keyscan(result.stdout)
