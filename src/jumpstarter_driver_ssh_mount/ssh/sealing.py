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
``IPQoS``...) and the system's ``/etc/ssh/ssh_config``. Not the config itself either: some of
its entries no ``-o`` can take back (``IdentityFile`` and ``CertificateFile`` accumulate, so
ssh would offer those keys after the driver's one; ``SetEnv`` values would be sent).

So ssh reads an allowlist instead of the config: ``ssh -G`` says once per destination (host,
port, login; the port too, since ``%p`` may name a known-hosts file) and process what the user's
config and ``/etc/ssh/ssh_config`` decide for it (a ``Match exec`` command runs then, once; one
``ssh -G`` costs about 9 ms, and a port forward's new local port one more); of that, only the
``CONFIG_ALLOWED`` settings that differ from ssh's own defaults are written, as ``Key value``
lines, into a private file (``identity.PrivateFile``) that ssh and sshfs get as ``-F``. These
settings choose algorithms, tune the transport (a local ``BindAddress`` too) or say where the
user's known-hosts files are (read only when the host-key rule is the user's own keys, see
``hostkeypolicy``): none can forward anything, run a command or offer a key. ``User`` is kept
only when the driver names no user (it picks the account; the key is still the driver's).
Everything else (``IdentityFile``, ``CertificateFile``, ``SetEnv``, ``ProxyJump``,
``KnownHostsCommand``...) never reaches the ssh that connects. A config ssh refuses (a bad line)
is an ``InvalidOptionError`` naming the line, as a plain ssh would refuse it; if ``ssh -G``
cannot run or takes longer than ``CONFIG_READ_TIMEOUT``, the file is empty: ssh's defaults,
nothing more.
The ``-o`` seal stays, belt and braces, and ``-o`` options still win over the file.
"""

from __future__ import annotations

import functools
import os
import subprocess
from collections.abc import Mapping, Sequence

from jumpstarter_driver_ssh_mount.common.errors import InvalidOptionError
from jumpstarter_driver_ssh_mount.ssh.identity import PrivateFile
from jumpstarter_driver_ssh_mount.ssh.optionkeys import option_key

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
#: The user's ssh config settings that still apply (as ``ssh -G`` spells them; why in the module docstring).
CONFIG_ALLOWED: tuple[str, ...] = (
    # algorithms
    "ciphers",
    "macs",
    "kexalgorithms",
    "hostkeyalgorithms",
    "pubkeyacceptedalgorithms",
    "pubkeyacceptedkeytypes",  # its name before OpenSSH 8.5
    "casignaturealgorithms",
    "requiredrsasize",
    # transport tuning
    "compression",
    "ipqos",
    "addressfamily",
    "connecttimeout",
    "connectionattempts",
    "serveraliveinterval",
    "serveralivecountmax",
    "tcpkeepalive",
    "rekeylimit",
    "bindaddress",
    "bindinterface",
    # the login name, only when the driver names none (``allowed_config``); the key is still the driver's
    "user",
    # where the user's known-hosts files are (hostkeypolicy's "yours" rule; ours set them with -o)
    "userknownhostsfile",
    "globalknownhostsfile",
    "hostkeyalias",
)
#: Seconds ``ssh -G`` may take to read the config (a slow ``Match exec``); then the allowlisted file is empty.
CONFIG_READ_TIMEOUT = 5.0


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


def allowed_config(host: str, port: int, user: str = "") -> str:
    """What the user's ssh config says for ``host``, kept to ``CONFIG_ALLOWED``: ``Key value`` lines.

    Only settings that differ from ssh's defaults (an explicit default would, for one, stop ssh
    from preferring the host key types it already knows). Read once per destination and process.

    :raises InvalidOptionError: ssh refuses the config (a bad line: ssh's message names it).
    """
    told = {k: v for k, v in _ssh_config(host, port, user, use_config=True).items() if k != "user" or not user}
    defaults = _ssh_config("127.0.0.1", 22, "", use_config=False)
    if not told or not defaults:
        return ""
    return "".join(f"{key} {value}\n" for key, value in told.items() if defaults.get(key) != value)


def sealed_config(host: str, port: int, user: str = "") -> PrivateFile:
    """The ``allowed_config`` for ``host`` as a private file, for ssh's (and sshfs's) ``-F``; close it after ssh."""
    return PrivateFile(allowed_config(host, port, user), "jmp-mount-ssh-config")


def ssh_print_config(args: Sequence[str], timeout: float) -> subprocess.CompletedProcess[str] | None:
    """``ssh -G ARGS``: the configuration ssh would use (nothing dialled), sealed environment; None without ssh."""
    try:
        return subprocess.run(
            ["ssh", "-G", *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
            env=sealed_environment(),
        )
    except (OSError, subprocess.SubprocessError):
        return None


@functools.lru_cache(maxsize=64)
def _ssh_config(host: str, port: int, user: str, *, use_config: bool) -> dict[str, str]:
    """``ssh -G``'s ``CONFIG_ALLOWED`` settings for ``host`` (``-F none``: ssh's defaults); empty when it cannot run.

    :raises InvalidOptionError: ssh refuses the config (not cached: the next call reads it again).
    """
    args = ["-p", str(port), *(["-l", user] if user else []), *([] if use_config else ["-F", "none"]), "--", host]
    result = ssh_print_config(args, CONFIG_READ_TIMEOUT)
    if result is None:
        return {}
    if result.returncode != 0:
        said = next((line.strip() for line in result.stderr.splitlines() if line.strip()), "no message")
        raise InvalidOptionError(f"ssh refuses your ssh config ({said}); fix that line")
    pairs = (line.split(" ", 1) for line in result.stdout.splitlines() if " " in line)
    return {key: value for key, value in pairs if key in CONFIG_ALLOWED and "\n" not in value}
