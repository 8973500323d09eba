"""Whose host keys ssh checks the device against, and whether: the one rule for every ssh the project starts.

- **The exporter's** (the default): exactly the keys it vouches for, in a private known-hosts
  file under one alias (``hostkeys.KnownHosts``); nothing else widens them (no global file,
  no DNS, no ``KnownHostsCommand`` of a config).
- **Yours**: any of ``UserKnownHostsFile``, ``GlobalKnownHostsFile``, ``HostKeyAlias`` or
  ``KnownHostsCommand`` among the caller's options. They change *which* keys ssh trusts, never
  *whether*: ``StrictHostKeyChecking=yes`` stays unless the caller passes ``StrictHostKeyChecking``
  itself. Files the caller does not name are ssh's (its defaults, or the user's ssh config).
- **None**: ``insecure``, or the caller's own ``StrictHostKeyChecking`` other than ``yes``; or
  an exporter that vouches for no key (``OLD_EXPORTER``; the client then refuses the direct address).

Nothing is ever written to a known-hosts file: ``UpdateHostKeys=no`` and ``CheckHostIP=no``
always (a caller's other value is refused), and when checking is relaxed ``/dev/null`` is the
first user file, the one ssh adds new keys to.
"""

from __future__ import annotations

import functools
import re
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from jumpstarter_driver_ssh_mount.common.choices import transport_label
from jumpstarter_driver_ssh_mount.common.errors import InvalidOptionError
from jumpstarter_driver_ssh_mount.ssh.optionkeys import given_values, option_key

if TYPE_CHECKING:
    from jumpstarter_driver_ssh_mount.ssh.hostkeys import KnownHosts

#: The caller's options that choose which keys are trusted (ssh's spelling, for messages).
WHICH_KEYS = {
    "userknownhostsfile": "UserKnownHostsFile",
    "globalknownhostsfile": "GlobalKnownHostsFile",
    "hostkeyalias": "HostKeyAlias",
    "knownhostscommand": "KnownHostsCommand",
}
WHETHER = "stricthostkeychecking"
STRICT_VALUES = frozenset({"yes", "true"})
#: Never a write to a known-hosts file (added keys, added IP addresses).
NEVER_WRITE = ("UpdateHostKeys=no", "CheckHostIP=no")
NOTHING_KNOWN = ("UserKnownHostsFile=/dev/null", "GlobalKnownHostsFile=/dev/null")
#: ssh's own user known-hosts files, when the caller names none.
SSH_USER_FILES = "~/.ssh/known_hosts ~/.ssh/known_hosts2"
#: The first ssh that knows ``KnownHostsCommand`` (older ones refuse the option).
KNOWN_HOSTS_COMMAND_SINCE = (8, 5)
INSECURE = "--insecure"
OLD_EXPORTER = "the exporter's SSHMount does not vouch for host keys (an older version)"
EXPORTER, YOURS, UNCHECKED = "exporter", "yours", "unchecked"


@dataclass(frozen=True)
class HostKeyTrust:
    """Whose keys a connection's host key is checked against (``source``), or why it is not (``why``).

    ``yours`` holds the caller's which-keys options as ``(Name, value)``, in ``WHICH_KEYS`` order.
    """

    source: str
    why: str = ""
    yours: tuple[tuple[str, str], ...] = ()

    @classmethod
    def decide(cls, options: Sequence[str], insecure: bool = False) -> HostKeyTrust:
        """The rule, from the caller's ssh ``options`` and ``insecure``."""
        given = given_values(options)
        yours = tuple((name, given[key]) for key, name in WHICH_KEYS.items() if key in given)
        whether = given.get(WHETHER)
        if insecure:
            return cls(UNCHECKED, INSECURE, yours)
        if whether is not None and whether.lower() not in STRICT_VALUES:
            return cls(UNCHECKED, f"your StrictHostKeyChecking={whether}", yours)
        return cls(YOURS, yours=yours) if yours else cls(EXPORTER)

    @classmethod
    def exporter_vouches_for_none(cls) -> HostKeyTrust:
        """An exporter without ``host_keys``: nothing to check against."""
        return cls(UNCHECKED, OLD_EXPORTER)

    @property
    def insecure(self) -> bool:
        """True when the caller said ``insecure``."""
        return self.why == INSECURE

    @property
    def verified(self) -> bool:
        """True when a connection is made only if the host key matches."""
        return self.source != UNCHECKED

    def _value(self, name: str) -> str:
        return next((value for key, value in self.yours if key == name), "")

    @property
    def known_hosts_file(self) -> str:
        """The user known-hosts file(s) ssh reads for ``yours`` (ssh's default when none is named)."""
        return self._value("UserKnownHostsFile") or "~/.ssh/known_hosts"

    @property
    def whose(self) -> str:
        """Whose keys, for messages: "what the exporter vouches for", "your known-hosts file F"..."""
        if self.source == EXPORTER:
            return "what the exporter vouches for"
        files = self._value("UserKnownHostsFile")
        if files:
            text = f"your known-hosts file{'s' if len(files.split()) > 1 else ''} {files}"
        else:
            text = "your known-hosts files (~/.ssh/known_hosts, or your ssh config's)"
        if self._value("GlobalKnownHostsFile"):
            text += f" and {self._value('GlobalKnownHostsFile')}"
        if self._value("KnownHostsCommand"):
            text += f" and what KnownHostsCommand {self._value('KnownHostsCommand')} prints"
        if self._value("HostKeyAlias"):
            text += f", under HostKeyAlias {self._value('HostKeyAlias')}"
        return text

    @property
    def planned(self) -> str:
        """Before connecting (the report header): "host key checked against ..." or "NOT verified (why)"."""
        return f"host key checked against {self.whose}" if self.verified else f"host key NOT verified ({self.why})"

    @property
    def outcome(self) -> str:
        """After a connection was made: "host key verified against ..." or "NOT verified (why)"."""
        return f"host key verified against {self.whose}" if self.verified else f"host key NOT verified ({self.why})"

    def refusal(self, where: str, transport: str, ssh_reason: str, *, changed: bool = False) -> str:
        """The error when ssh refused the device's key against your keys (``yours``): the file, the alias to pin.

        ``changed``: your file pins another key for the device (rather than none).
        """
        alias, file = self._value("HostKeyAlias"), self.known_hosts_file.split()[0]
        if changed:
            return (
                f"host key of {where} does not match the one pinned in {self.whose} ({ssh_reason}); no login was "
                f"attempted; if the device was re-provisioned, replace its line in {file}, otherwise do not trust it"
            )
        if alias:
            fix = f"put the device's key there as a line '{alias} KEYTYPE BASE64' (its /etc/ssh/ssh_host_*_key.pub)"
        elif transport == "direct":
            fix = (
                f"put the device's key for that address in {file} (ssh-keyscan), or pin it under a HostKeyAlias: "
                f"--jmp-mount-option HostKeyAlias=NAME and a line 'NAME KEYTYPE BASE64' in {file}"
            )
        else:
            fix = (
                f"the {transport_label(transport)}'s port changes on every mount, so pin the device's key under a "
                "HostKeyAlias: "
                f"--jmp-mount-option HostKeyAlias=NAME and a line 'NAME KEYTYPE BASE64' in {file}"
            )
        return f"host key of {where} refused against {self.whose} ({ssh_reason}); no login was attempted; {fix}"


def host_key_options(options: Sequence[str], known: KnownHosts | None = None, *, insecure: bool = False) -> list[str]:
    """The host key options to put before the caller's ``options``: the rule as ssh options.

    ``known`` holds the exporter's keys (used only when the caller brings none of their own).
    Nothing the caller sets is repeated, so applying it to its own result adds nothing.
    Without ``known`` and without keys of the caller's, nothing can be checked: ssh is told so.

    :raises InvalidOptionError: the caller asks ssh to write to a known-hosts file
        (``UpdateHostKeys``, ``CheckHostIP`` other than ``no``).
    """
    check_never_written(options)
    given = given_values(options)
    trust = HostKeyTrust.decide(options, insecure)
    strict = "StrictHostKeyChecking=" + ("yes" if trust.verified else "no")
    if trust.source == EXPORTER and known is not None:
        ours = [*known.options, *exporter_keys_only()]
    elif trust.yours:
        ours = [strict]
        files = given.get("userknownhostsfile", SSH_USER_FILES)
        if not trust.verified and not files.startswith("/dev/null"):  # new keys go nowhere
            ours.insert(0, f"UserKnownHostsFile=/dev/null {files}")
            given.pop("userknownhostsfile", None)
    else:
        ours = ["StrictHostKeyChecking=no", *NOTHING_KNOWN]
    ours += NEVER_WRITE
    return list(dict.fromkeys(o for o in ours if option_key(o) not in given))


def check_never_written(options: Sequence[str]) -> None:
    """InvalidOptionError when ``options`` would have ssh write to a known-hosts file (``NEVER_WRITE``)."""
    given = given_values(options)
    for forced in NEVER_WRITE:
        key, value = forced.split("=")
        if given.get(key.lower(), value).lower() != value:
            raise InvalidOptionError(
                f"ssh option {key}={given[key.lower()]}: the device's host keys are never written to a "
                "known-hosts file; drop the option"
            )


def exporter_keys_only() -> list[str]:
    """What keeps the exporter's keys the only ones: no DNS fingerprints, no config's ``KnownHostsCommand``."""
    options = ["VerifyHostKeyDNS=no"]
    if ssh_version() >= KNOWN_HOSTS_COMMAND_SINCE:
        options.append("KnownHostsCommand=none")
    return options


@functools.cache
def ssh_version() -> tuple[int, int]:
    """The OpenSSH version of ``ssh`` on PATH, as (major, minor); (0, 0) when unknown."""
    try:
        result = subprocess.run(["ssh", "-V"], capture_output=True, text=True, timeout=5, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.SubprocessError):
        return (0, 0)
    found = re.search(r"OpenSSH_(\d+)\.(\d+)", result.stderr + result.stdout)
    return (int(found[1]), int(found[2])) if found else (0, 0)
