"""Building the sshfs command line: target, default options, user options.

User options replace defaults with the same key (compared case-insensitively, as ssh
does), so ``StrictHostKeyChecking=yes`` really turns host key checking on: ssh keeps
the *first* value it sees for a key, so appending after a default would be ignored.
"""

from __future__ import annotations

import posixpath
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from .errors import InvalidOptionError, RemotePathError
from .optionkeys import option_key, option_parts
from .sealing import SEALED_SSH_OPTIONS, option_slot

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


#: Options every ssh (a mount's, a device command's) gets unless the caller passes the same key:
#: the seal against the user's ssh config (``sealing``); ``BatchMode=yes`` makes ssh fail instead
#: of prompting for a password nobody can type. Host key options come from ``hostkeypolicy``.
DEFAULT_SSH_OPTIONS: tuple[str, ...] = (
    *SEALED_SSH_OPTIONS,
    "LogLevel=ERROR",
    "BatchMode=yes",
)
#: Riding out unreliable devices: ``reconnect`` re-establishes a dropped session on the next
#: request (the request in flight when it dropped fails with EIO); keep-alives notice a frozen
#: or vanished device after ServerAliveInterval x ServerAliveCountMax = 15 s, so file access
#: fails within about that (plus ConnectTimeout while reconnecting) instead of hanging.
RELIABILITY_OPTIONS: tuple[str, ...] = (
    "reconnect",
    "ServerAliveInterval=5",
    "ServerAliveCountMax=3",
    "ConnectTimeout=10",
)
FRESH_BOUND = 0.5  # seconds a "fresh" mount may show a device change late
FAST_BOUND = 20.0  # seconds a "fast" mount may show a new/deleted/resized file late (sshfs dcache_timeout)
#: How much sshfs and the kernel may cache, and what each mode means for a test.
CACHE_MEANINGS: dict[str, str] = {
    "fresh": f"device changes show within {FRESH_BOUND:g} s",
    "fast": f"sshfs's own caching, new/deleted/resized files up to {FAST_BOUND:g} s late",
}
CACHE_MODES: tuple[str, ...] = tuple(CACHE_MEANINGS)
DEFAULT_CACHE = "fresh"
#: ``dir_cache=no``: no listing/attribute cache in sshfs (its 20 s ``dcache_timeout`` is what
#: hides new, deleted and resized files). The kernel's own entry/attribute caches (1 s by
#: default) are halved; 0 would double the requests per file access.
FRESH_OPTIONS: tuple[str, ...] = ("dir_cache=no", "attr_timeout=0.5", "entry_timeout=0.5")
#: Where the device's kernel keeps files whose size says nothing: ``/proc`` files report 0
#: bytes (so do debugfs, tracefs and cgroup files under ``/sys``), and the kernel's page cache
#: believes the size, so a read through sshfs returns "". A mount of a path that contains
#: one of these, or lies inside one, bypasses the page cache (``direct_io``) in every cache
#: mode: a read returns what the device's kernel returns. Its cost (docs/performance.md): no
#: page cache for any file of such a mount, so a file read twice is fetched twice, and a
#: shared ``mmap`` fails with ENODEV where libfuse is older than 3.16 (a private one works).
#: Mounts of other directories (``/var/log``, ``/data``) keep the page cache.
KERNEL_FILESYSTEMS: tuple[str, ...] = ("/proc", "/sys")
KERNEL_FILES_OPTIONS: tuple[str, ...] = ("direct_io",)
# Not ``auto_unmount``: after sshfs is SIGKILLed it would turn the mountpoint back into a plain
# local directory, and a test would silently write to the test host instead of failing with
# ENOTCONN. A dead mount stays visible (and failing) until unmount(), or the next run's sweep.


@dataclass(frozen=True)
class SshfsTarget:
    """Where sshfs connects: ``user@host:remote_path`` on ``port``."""

    host: str
    port: int
    user: str = ""
    remote_path: str = "/"

    @property
    def spec(self) -> str:
        """The ``[user@]host:path`` argument, with an IPv6 host in brackets."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        user = f"{self.user}@" if self.user else ""
        return f"{user}{host}:{self.remote_path}"


def validate_option(option: str) -> str:
    """Refuse options that are empty or could be read as a separate command-line flag."""
    if not isinstance(option, str) or not option.strip():
        raise InvalidOptionError(f"empty sshfs option {option!r}; pass options like 'reconnect' or 'Key=value'")
    if option.lstrip().startswith("-"):
        raise InvalidOptionError(
            f"sshfs option {option!r} starts with '-'; pass the option itself (e.g. 'reconnect'), "
            "each one is already given to sshfs as '-o OPTION'"
        )
    if "\n" in option or "\0" in option:
        raise InvalidOptionError(f"sshfs option {option!r} contains a newline or NUL byte; remove it")
    return option


def validate_options(options: Iterable[str]) -> tuple[str, ...]:
    """Every option checked with ``validate_option``."""
    return tuple(validate_option(o) for o in options)


def validate_remote_path(path: str) -> str:
    """Refuse a device path that is not absolute (sshfs would resolve it against the login's home)."""
    if not isinstance(path, str) or not path.startswith("/"):
        raise RemotePathError(f"remote path {path!r} is not absolute; give a path starting with '/'")
    return path


def merge_options(defaults: Iterable[str], user: Iterable[str]) -> list[str]:
    """Defaults first, minus any whose key a user option sets, then the user options.

    Keys compare as ssh fills them: ``ProxyJump`` and ``ProxyCommand`` are one (``sealing.option_slot``).
    """
    user = list(validate_options(user))
    user_slots = {option_slot(part) for part in option_parts(user)}
    return [d for d in defaults if option_slot(d) not in user_slots] + user


def validate_cache(mode: str) -> str:
    """``mode`` if it is one of ``CACHE_MODES``, else InvalidOptionError naming the choices."""
    if mode not in CACHE_MODES:
        raise InvalidOptionError(f"unknown cache mode {mode!r}; choose one of {', '.join(CACHE_MODES)}")
    return mode


def cache_options(mode: str = DEFAULT_CACHE) -> list[str]:
    """The ``-o`` options for a cache mode: ``FRESH_OPTIONS`` for "fresh", none for "fast"."""
    return list(FRESH_OPTIONS) if validate_cache(mode) == "fresh" else []


def covers_kernel_files(remote_path: str) -> bool:
    """True when a mount of ``remote_path`` shows any of ``KERNEL_FILESYSTEMS`` (``/``, ``/proc``, ``/sys/x``...)."""
    path = posixpath.normpath("/" + remote_path.lstrip("/"))
    return any(
        path == top or top.startswith(path.rstrip("/") + "/") or path.startswith(top + "/")
        for top in KERNEL_FILESYSTEMS
    )


def kernel_files_options(remote_path: str | None) -> list[str]:
    """``KERNEL_FILES_OPTIONS`` for a mount of ``remote_path`` that shows kernel files, else none."""
    return list(KERNEL_FILES_OPTIONS) if remote_path is not None and covers_kernel_files(remote_path) else []


def default_options(
    identity_path: str | None,
    *,
    cache: str = DEFAULT_CACHE,
    symlinks: Sequence[str] = (),
    remote_path: str | None = None,
) -> list[str]:
    """The default ``-o`` options: ssh, reliability, cache mode, kernel files (for a mount of
    ``remote_path``), symlink handling, the identity file."""
    content = [*cache_options(cache), *kernel_files_options(remote_path)]
    options = [*DEFAULT_SSH_OPTIONS, *RELIABILITY_OPTIONS, *content, *symlinks]
    if identity_path:
        options.append(f"IdentityFile={identity_path}")
    return options


def build_argv(
    target: SshfsTarget,
    mountpoint: str,
    options: Sequence[str],
    *,
    executable: str = "sshfs",
    config_path: str | None = None,
) -> list[str]:
    """The sshfs argv: foreground (``-f``) so sshfs stays our child, one ``-o`` per option.

    ``config_path``: the ssh config its ssh reads instead of the user's (``sealing.sealed_config``).
    """
    argv = [executable, target.spec, mountpoint, "-f", "-p", str(target.port or 22)]  # never a config's Port
    if config_path:
        argv += ["-F", config_path]
    for option in options:
        argv += ["-o", option]
    return argv


def without_option(options: Sequence[str], key: str) -> list[str]:
    """``options`` with every occurrence of ``key`` removed (also inside comma lists)."""
    kept = []
    for option in options:
        parts = [p for p in option.split(",") if option_key(p) != key.lower()]
        if parts:
            kept.append(",".join(parts))
    return kept
