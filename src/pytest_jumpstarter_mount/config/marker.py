"""The ``jmp_mount`` marker: its arguments checked once per test and kept in the item's stash.

A bad argument is a ``pytest.UsageError`` naming the test (``markerusage`` raises it at collection).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import pytest

from jumpstarter_driver_ssh_mount import (
    CACHE_MODES,
    TRANSPORTS,
    InvalidOptionError,
    RemotePathError,
    validate_options,
    validate_remote_path,
)
from jumpstarter_driver_ssh_mount.reach.transportrule import TransportConflict, decide_transport
from jumpstarter_driver_ssh_mount.ssh.optioncheck import check_ssh_options

MARKER_HELP = (
    f"jmp_mount(remote='/path', options=[...], transport='{'|'.join(TRANSPORTS)}', cache='{'|'.join(CACHE_MODES)}', "
    "collect=[globs], restore=[paths], log=[device files], watch=[device dirs]): give this test its own mount "
    "of a device path (remote_path), collect device files if it fails, restore files after, "
    "report device log lines and changed files if it fails"
)
ARGUMENTS = ("remote", "options", "transport", "direct", "cache", "collect", "restore", "log", "watch")


@dataclass(frozen=True)
class MarkerSpec:
    """Checked arguments of ``@pytest.mark.jmp_mount(remote=..., options=[...], transport=...)``.

    ``transport`` is one of ``TRANSPORTS`` ("auto", "direct", "forward", "relay"); upstream-style ``direct=True`` /
    ``direct=False`` is kept as "direct" / "forward"; None means "as the settings say".
    """

    remote: str | None = None
    options: tuple[str, ...] = ()
    transport: str | None = None
    collect: tuple[str, ...] = ()
    restore: tuple[str, ...] = ()
    cache: str | None = None  # "fresh" / "fast"; None: as the settings say
    log: tuple[str, ...] = ()  # device log files read for this test, besides --jmp-mount-log
    watch: tuple[str, ...] = ()  # device directories watched for this test, besides --jmp-mount-watch

    @property
    def own_mount(self) -> bool:
        """True when the marker asks for a mount other than ``remote_fs``."""
        return self.remote is not None or bool(self.options) or self.transport is not None or self.cache is not None

    def own_mount_arguments(self) -> str:
        """The arguments that ask for the test's own mount, as written: ``remote='/etc', cache='fast'``."""
        wanted = {k: v for k, v in asdict(self).items() if k in ("remote", "options", "transport", "cache")}
        return ", ".join(f"{k}={list(v) if isinstance(v, tuple) else v!r}" for k, v in wanted.items() if v)

    @classmethod
    def from_marker(cls, marker: pytest.Mark, where: str) -> MarkerSpec:
        """Check ``marker``'s arguments; a bad one is a ``pytest.UsageError`` naming ``where``."""

        def bad(why: str) -> pytest.UsageError:
            return pytest.UsageError(f"{where}: @pytest.mark.jmp_mount: {why}")

        kwargs = dict(marker.kwargs)
        if len(marker.args) > 1 or (marker.args and "remote" in kwargs):
            raise bad("give one device path, as remote='/path'")
        if marker.args:
            kwargs["remote"] = marker.args[0]
        unknown = set(kwargs) - set(ARGUMENTS)
        if unknown:
            raise bad(f"unknown argument(s) {', '.join(sorted(unknown))}; use {', '.join(ARGUMENTS)}")
        remote = kwargs.get("remote")
        if remote is not None and not _is_absolute(remote):
            raise bad(f"remote must be an absolute device path, got {remote!r}")
        return cls(
            remote=remote,
            options=_options(kwargs.get("options", ()), bad),
            transport=_transport(kwargs.get("transport"), kwargs.get("direct"), bad),
            collect=_device_paths("collect", kwargs.get("collect", ()), bad),
            restore=_device_paths("restore", kwargs.get("restore", ()), bad),
            cache=_cache(kwargs.get("cache"), bad),
            log=_device_paths("log", kwargs.get("log", ()), bad),
            watch=_device_paths("watch", kwargs.get("watch", ()), bad),
        )


NO_MARKER = MarkerSpec()
marker_spec_key = pytest.StashKey[MarkerSpec]()


def marker_spec(item: pytest.Item) -> MarkerSpec:
    """The item's checked ``jmp_mount`` arguments (``NO_MARKER`` when unmarked), parsed once."""
    spec = item.stash.get(marker_spec_key, None)
    if spec is None:
        marker = item.get_closest_marker("jmp_mount")
        spec = NO_MARKER if marker is None else MarkerSpec.from_marker(marker, item.nodeid)
        item.stash[marker_spec_key] = spec
    return spec


def _is_absolute(device_path: Any) -> bool:
    try:
        validate_remote_path(device_path)
    except RemotePathError:
        return False
    return True


def _options(value: Any, bad: Callable[[str], pytest.UsageError]) -> tuple[str, ...]:
    if isinstance(value, str) or not all(isinstance(o, str) for o in value):
        raise bad(f"options must be a list of strings, got {value!r}")
    try:
        options = validate_options(value)
    except InvalidOptionError as exc:
        raise bad(f"options must be sshfs options such as 'reconnect', not flags: {exc}") from None
    try:
        check_ssh_options(options)
    except InvalidOptionError as exc:
        raise bad(str(exc)) from None
    return options


def _transport(transport: Any, direct: Any, bad: Callable[[str], pytest.UsageError]) -> str | None:
    """The marker's transport by the one rule (``transportrule``); None: as the settings say."""
    if transport is not None and transport not in TRANSPORTS:
        raise bad(f"transport must be one of {', '.join(map(repr, TRANSPORTS))}, got {transport!r}")
    if direct is not None and not isinstance(direct, bool):
        raise bad(f"direct must be True or False, got {direct!r}")
    try:
        return decide_transport(transport, direct, default=None)
    except TransportConflict as exc:
        raise bad(
            f"direct={direct} means transport={exc.implied!r}, but transport={exc.transport!r} is given; give one"
        ) from None


def _cache(cache: Any, bad: Callable[[str], pytest.UsageError]) -> str | None:
    if cache is not None and cache not in CACHE_MODES:
        raise bad(f"cache must be one of {', '.join(map(repr, CACHE_MODES))}, got {cache!r}")
    return cache


def _device_paths(name: str, value: Any, bad: Callable[[str], pytest.UsageError]) -> tuple[str, ...]:
    if isinstance(value, str) or not all(isinstance(p, str) and _is_absolute(p) for p in value):
        raise bad(f"{name} must be a list of absolute device paths, got {value!r}")
    return tuple(value)
