"""Building the sshfs command line: target, ssh defaults, reliability, cache and kernel-file options."""

from __future__ import annotations

import posixpath
from collections.abc import Sequence

from jumpstarter_driver_ssh_mount.common.choices import (
    CACHE_MODES,
    DEFAULT_CACHE,
)
from jumpstarter_driver_ssh_mount.common.errors import InvalidOptionError, RemotePathError
from jumpstarter_driver_ssh_mount.ssh.optionkeys import option_key
from jumpstarter_driver_ssh_mount.ssh.sshoptions import DEFAULT_SSH_OPTIONS
from jumpstarter_driver_ssh_mount.ssh.target import SshfsTarget

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


def validate_remote_path(path: str) -> str:
    """Refuse a device path that is not absolute (sshfs would resolve it against the login's home)."""
    if not isinstance(path, str) or not path.startswith("/"):
        raise RemotePathError(f"remote path {path!r} is not absolute; give a path starting with '/'")
    return path


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
