"""Every ssh the project starts is sealed against the side doors of the user's ssh config.

The device is the thing under test and may be hostile. Whatever ``~/.ssh/config`` (or
``/etc/ssh/ssh_config``) says for its address, the device never gets the tester's agent,
X11 display, forwarded ports or tunnels, never shares a connection with the user's own
masters (a reused master would skip the host key check), never triggers a ``LocalCommand``,
and only the driver's identity authenticates. ssh keeps the *first* value it reads for an
option and reads the command line before any config file, so these ``-o`` options win over
the config, while an option the caller passes with the same key (``--jmp-mount-option``)
replaces ours (see ``command.merge_options``).

Not ``-F none``: that would also drop what device labs legitimately keep in their config
(``HostKeyAlgorithms +ssh-rsa`` and ``PubkeyAcceptedAlgorithms`` for old Dropbear, ciphers,
``IPQoS``, ``User``...) and the system's ``/etc/ssh/ssh_config``.

What a config can still do, and why it is no door to the device: ``IdentityFile`` and
``CertificateFile`` entries accumulate (no option clears them), so ssh may offer those keys
*after* the driver's one if the device refuses it; the device learns the public key, and a
signature is bound to that one session. ``SetEnv`` values written in the config are sent
(``SendEnv`` patterns can only pick from the environment below, which carries no secrets).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

from .optionkeys import option_key

#: The seal, as ssh ``-o`` options (each one's reason in the module docstring and README).
#: ``ProxyCommand=none`` also stops a config's ``ProxyJump``; with ``HostName=%h`` ssh connects where the
#: transport chose, nowhere else.
SEALED_SSH_OPTIONS: tuple[str, ...] = (
    "ForwardAgent=no",
    "ForwardX11=no",
    "ClearAllForwardings=yes",  # LocalForward, RemoteForward, DynamicForward and Tunnel
    "IdentityAgent=none",
    "IdentitiesOnly=yes",
    "PreferredAuthentications=publickey",  # no GSSAPI (credential delegation), host-based or password
    "ControlMaster=no",
    "ControlPath=none",
    "PermitLocalCommand=no",
    "ProxyCommand=none",
    "HostName=%h",  # the address the transport chose, not a config's HostName for it (the port is always -p)
    "RemoteCommand=none",
    "RequestTTY=no",
)
#: Options that fill one slot in ssh: whichever comes first disables the other.
SAME_SLOT = {"proxyjump": "proxycommand"}
#: What sshfs already passes its ssh itself (``-a``, ``-x``, ``-oClearAllForwardings=yes``).
SSHFS_SEALS_ITSELF = frozenset({"forwardagent", "forwardx11", "clearallforwardings"})
#: ssh options sshfs does not forward as ``-o``: they reach its ssh through ``ssh_command``.
SSHFS_UNKNOWN = frozenset({"remotecommand", "requesttty", "knownhostscommand"})
#: Environment variables ssh and sshfs may see; nothing else reaches a config's ``SendEnv``.
ENVIRONMENT_KEPT = frozenset({"PATH", "HOME", "USER", "LOGNAME", "SHELL", "LANG", "LANGUAGE", "TZ", "TMPDIR"})


def option_slot(option: str) -> str:
    """The key of ``option`` as ssh fills it (``ProxyJump`` and ``ProxyCommand`` share one)."""
    key = option_key(option)
    return SAME_SLOT.get(key, key)


def for_sshfs(options: Sequence[str]) -> list[str]:
    """``options`` as sshfs takes them: our seals sshfs sets itself dropped, what it does not know in ``ssh_command``.

    A caller's own ``ssh_command`` is left alone (the moved options are then dropped: they would
    precede the caller's). An option with a blank or comma stays an ``-o`` one (sshfs refuses it).
    """
    kept: list[str] = []
    moved: list[str] = []
    for option in options:
        key = option_key(option)
        if key in SSHFS_SEALS_ITSELF and option in SEALED_SSH_OPTIONS:
            continue
        (moved if key in SSHFS_UNKNOWN and not any(c in option for c in ", \t") else kept).append(option)
    if moved and not any(option_key(o) == "ssh_command" for o in kept):
        kept.append("ssh_command=ssh " + " ".join(f"-o {o}" for o in moved))
    return kept


def sealed_environment(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment for ssh and sshfs: ``ENVIRONMENT_KEPT`` and ``LC_*`` only (no agent socket, no secrets)."""
    environ = os.environ if environ is None else environ
    return {k: v for k, v in environ.items() if k in ENVIRONMENT_KEPT or k.startswith("LC_")}
