"""The ssh options of a route, as asyncssh's connection settings: the same rules as for every ssh we start.

A route hands over ssh ``-o`` options (``hostkeypolicy``'s host-key options first, then the
caller's). The SFTP backend speaks SSH itself, so it reads them instead of passing them on:

- **Host keys**: ``StrictHostKeyChecking`` other than ``yes`` is the only way to skip the check;
  otherwise exactly the keys in ``UserKnownHostsFile`` and ``GlobalKnownHostsFile`` (the
  exporter's private file, or yours; ssh's default files when yours names none) are trusted,
  under ``HostKeyAlias`` when given. Nothing is ever written to them; an unknown key is refused.
  ``KnownHostsCommand`` cannot run here: it is refused, not skipped.
- **Side doors stay shut**: no agent (``agent_path=None``), no agent or X11 forwarding, no user
  ssh config read by asyncssh (``config=None``); only public-key login with the driver's key,
  imported in memory (or your ``IdentityFile``). ``ProxyCommand``/``ProxyJump`` are refused.
- **Your settings**: the allowlisted part of your ssh config (``sealing.allowed_config``: algorithms,
  keep-alives, timeouts, address family, bind address, known-hosts files) and the same keys given
  as ``--jmp-mount-option``, as far as asyncssh has them; algorithms asyncssh lacks are dropped.
  sshfs options (lower-case, ``reconnect``, ``cache=...``) mean nothing here and are listed in
  ``ignored``.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import asyncssh

from jumpstarter_driver_ssh_mount.common.defaults import (
    SFTP_CONNECT_TIMEOUT,
    SFTP_KEEPALIVE_COUNT,
    SFTP_KEEPALIVE_INTERVAL,
)
from jumpstarter_driver_ssh_mount.common.errors import InvalidOptionError
from jumpstarter_driver_ssh_mount.ssh.hostkeypolicy import SSH_USER_FILES, STRICT_VALUES
from jumpstarter_driver_ssh_mount.ssh.optionkeys import given_values, option_parts
from jumpstarter_driver_ssh_mount.ssh.sealing import SEALED_SSH_OPTIONS, allowed_config

GLOBAL_FILES = "/etc/ssh/ssh_known_hosts /etc/ssh/ssh_known_hosts2"
#: ssh's algorithm settings -> (asyncssh's keyword, the names asyncssh knows).
ALGORITHMS = {
    "ciphers": ("encryption_algs", asyncssh.encryption.get_encryption_algs),
    "macs": ("mac_algs", asyncssh.mac.get_mac_algs),
    "kexalgorithms": ("kex_algs", asyncssh.kex.get_kex_algs),
    "hostkeyalgorithms": (
        "server_host_key_algs",
        lambda: [*asyncssh.public_key.get_public_key_algs(), *asyncssh.public_key.get_certificate_algs()],
    ),
    "pubkeyacceptedalgorithms": ("signature_algs", asyncssh.public_key.get_public_key_algs),
    "pubkeyacceptedkeytypes": ("signature_algs", asyncssh.public_key.get_public_key_algs),
}
#: ssh options with nothing to do here: the seal (asyncssh is sealed by its arguments) and the host-key ones read below.
UNDERSTOOD = frozenset(
    {o.split("=", 1)[0].lower() for o in SEALED_SSH_OPTIONS}
    | {
        "stricthostkeychecking",
        "userknownhostsfile",
        "globalknownhostsfile",
        "hostkeyalias",
        "knownhostscommand",
        "checkhostip",
        "updatehostkeys",
        "verifyhostkeydns",
        "identityfile",
        "user",
        "compression",
        "connecttimeout",
        "serveraliveinterval",
        "serveralivecountmax",
        "tcpkeepalive",
        "addressfamily",
        "bindaddress",
        "rekeylimit",
        *ALGORITHMS,
    }
)


@dataclass
class SshSettings:
    """asyncssh's ``connect`` keywords for one route, and the options that mean nothing to it."""

    kwargs: dict[str, Any]
    verified: bool
    ignored: list[str] = field(default_factory=list)
    known: asyncssh.SSHKnownHosts | None = None  # the trusted keys (None: unchecked)
    alias: str | None = None


def ssh_settings(host: str, port: int, user: str, identity: str | None, options: Sequence[str]) -> SshSettings:
    """The settings for reaching ``host:port`` as ``user`` with these route ``options`` (see the module docstring).

    :raises InvalidOptionError: an option asks for what cannot be done here (``KnownHostsCommand``,
        ``ProxyCommand``, ``ProxyJump``), or a setting's value is malformed.
    """
    given = given_values(options)
    for key in ("proxycommand", "proxyjump", "knownhostscommand"):
        if given.get(key, "none").lower() != "none":
            raise InvalidOptionError(
                f"ssh option {key}={given[key]}: the sftp backend cannot honour it; use --jmp-mount-backend sshfs"
            )
    told = _config(host, port, user)
    settings = {**told, **given}  # -o wins over the config, as in ssh
    kwargs: dict[str, Any] = {
        "username": user or settings.get("user") or None,
        "agent_path": None,
        "agent_forwarding": False,
        "x11_forwarding": False,
        "config": None,
        "preferred_auth": "publickey",
        "password_auth": False,
        "kbdint_auth": False,
        "gss_auth": False,
        "host_based_auth": False,
        "connect_timeout": _number(settings, "connecttimeout", SFTP_CONNECT_TIMEOUT),
        "keepalive_interval": _number(settings, "serveraliveinterval", SFTP_KEEPALIVE_INTERVAL),
        "keepalive_count_max": int(_number(settings, "serveralivecountmax", SFTP_KEEPALIVE_COUNT)),
    }
    if "identityfile" in given:
        kwargs["client_keys"] = [os.path.expanduser(p) for p in given["identityfile"].split()]
    elif identity:
        kwargs["client_keys"] = [asyncssh.import_private_key(identity)]
    kwargs.update(_tuning(settings))
    verified = settings.get("stricthostkeychecking", "yes").lower() in STRICT_VALUES
    known = _known_hosts(settings) if verified else None
    alias = settings.get("hostkeyalias") or None
    kwargs["known_hosts"] = known
    kwargs["host_key_alias"] = alias
    ignored = [part for part in option_parts(options) if part.split("=", 1)[0].strip().lower() not in UNDERSTOOD]
    return SshSettings(kwargs, verified, ignored, known, alias)


def _config(host: str, port: int, user: str) -> dict[str, str]:
    """The allowlisted settings your ssh config has for ``host`` (``sealing``), as a dict."""
    lines = (line.split(" ", 1) for line in allowed_config(host, port, user).splitlines() if " " in line)
    return {key.lower(): value for key, value in lines}


def _number(settings: dict[str, str], key: str, default: float) -> float:
    value = settings.get(key)
    if value is None or value.lower() == "none":
        return default
    try:
        return float(value)
    except ValueError:
        raise InvalidOptionError(f"ssh option {key}={value}: not a number") from None


def _tuning(settings: dict[str, str]) -> dict[str, Any]:
    """Algorithms and transport tuning, as far as asyncssh has them."""
    kwargs: dict[str, Any] = {}
    for key, (keyword, known) in ALGORITHMS.items():
        if key in settings and keyword not in kwargs:
            names = [name for name in settings[key].split(",") if name.encode() in known()]
            if names:
                kwargs[keyword] = names
    if "compression" in settings:
        kwargs["compression_algs"] = ["zlib@openssh.com", "zlib"] if settings["compression"] == "yes" else None
    if "tcpkeepalive" in settings:
        kwargs["tcp_keepalive"] = settings["tcpkeepalive"] == "yes"
    family = {"inet": socket.AF_INET, "inet6": socket.AF_INET6}.get(settings.get("addressfamily", ""))
    if family is not None:
        kwargs["family"] = family
    if settings.get("bindaddress"):
        kwargs["local_addr"] = (settings["bindaddress"], 0)
    limit = settings.get("rekeylimit", "").split()
    if limit and limit[0].isdigit() and int(limit[0]) > 0:
        kwargs["rekey_bytes"] = int(limit[0])
    return kwargs


def _known_hosts(settings: dict[str, str]) -> asyncssh.SSHKnownHosts:
    """Exactly the keys in the user and global known-hosts files named (ssh's defaults when none is)."""
    files = [
        *settings.get("userknownhostsfile", SSH_USER_FILES).split(),
        *settings.get("globalknownhostsfile", GLOBAL_FILES).split(),
    ]
    text = []
    for name in files:
        path = os.path.expanduser(name)
        if path == os.devnull or not os.path.isfile(path):
            continue
        with open(path, encoding="utf-8", errors="replace") as source:
            text.append(source.read())
    return asyncssh.import_known_hosts("\n".join(text))
