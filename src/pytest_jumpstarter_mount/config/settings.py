"""The ``--jmp-mount-*`` values resolved and checked into ``Settings`` (the table is in ``options``)."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from jumpstarter_driver_ssh_mount import (
    CACHE_MODES,
    COLLECT_MAX_BYTES,
    COLLECT_TIMEOUT,
    DEFAULT_MOUNT_TIMEOUT,
    InvalidOptionError,
    RemotePathError,
    validate_option,
    validate_remote_path,
)
from jumpstarter_driver_ssh_mount.ssh.optioncheck import check_ssh_options
from pytest_jumpstarter_mount.config.options import LOG_KEEP, OPTIONS, SCOPES, Scope, check_ini_keys, raw_value
from pytest_jumpstarter_mount.config.transportchoice import transport_setting

DEFAULT_LEASE_DURATION = 30 * 60.0  # seconds
SOURCES_HELP = (
    "run inside `jmp shell`, or pass --jmp-mount-exporter-config PATH, "
    "--jmp-mount-tls-grpc HOST:PORT, or --jmp-mount-client ALIAS with --jmp-mount-selector/--jmp-mount-lease"
)
NO_DEVICE = (  # each test that needs the device errors with this line; the report header says it in full
    "no Jumpstarter device configured; run inside `jmp shell` or pass --jmp-mount-exporter-config, "
    "--jmp-mount-tls-grpc or --jmp-mount-client"
)


@dataclass(frozen=True)
class Settings:
    """Every ``--jmp-mount-*`` value, resolved and checked."""

    remote: str = "/"
    scope: Scope = "session"
    options: tuple[str, ...] = ()
    transport: str = "auto"
    insecure: bool = False
    driver: str = "mount"
    dir: Path | None = None
    timeout: float = DEFAULT_MOUNT_TIMEOUT
    exporter_config: Path | None = None
    tls_grpc: str | None = None
    tls_grpc_insecure: bool = False
    passphrase: str | None = field(default=None, repr=False)
    client: str | None = None
    selector: str | None = None
    lease: str | None = None
    duration: float = DEFAULT_LEASE_DURATION
    lease_timeout: float | None = None  # None: Jumpstarter's own acquisition_timeout
    collect: tuple[str, ...] = ()
    artifacts: Path | None = None
    collect_max_bytes: int = COLLECT_MAX_BYTES
    collect_timeout: float = COLLECT_TIMEOUT
    cache: str = "fresh"
    artifacts_retention: int = 3
    logs: tuple[str, ...] = ()  # device log files read per test
    log_commands: tuple[str, ...] = ()  # device commands whose output is read per test
    log_keep: str = "failed"  # whose readings are reported: failed tests, or all
    watch: tuple[str, ...] = ()  # device directories whose changes are read per test

    @property
    def source(self) -> str | None:
        """Which device source applies: "shell", "exporter-config", "tls-grpc", "lease", or None."""
        if os.environ.get("JUMPSTARTER_HOST"):
            return "shell"
        if self.exporter_config is not None:
            return "exporter-config"
        if self.tls_grpc:
            return "tls-grpc"
        if self.client:
            return "lease"
        return None

    def describe_source(self) -> str:
        """One line for the report header."""
        match self.source:
            case "shell":
                return f"jmp shell ({os.environ.get('JUMPSTARTER_HOST')})"
            case "exporter-config":
                return f"exporter config {self.exporter_config}"
            case "tls-grpc":
                return f"tls-grpc {self.tls_grpc}{' (insecure)' if self.tls_grpc_insecure else ''}"
            case "lease":
                what = f"lease {self.lease}" if self.lease else f"selector {self.selector}"
                return f"controller {what} via client {self.client}"
        return f"none ({SOURCES_HELP})"


def load_settings(config: pytest.Config) -> Settings:
    """Resolve and check every option; a bad value (or an unknown ini key) is a ``pytest.UsageError`` naming the fix."""
    check_ini_keys(config)
    value = {o.name: raw_value(config, o) for o in OPTIONS}
    remote = str(value["remote"])
    _check(validate_remote_path, remote, f"--jmp-mount-remote must be an absolute device path, got {remote!r}")
    for pattern in value["collect"]:
        _check(
            validate_remote_path,
            pattern,
            f"--jmp-mount-collect {pattern!r}: give an absolute device glob, e.g. /var/log/*",
        )
    for name, what in (("log", "a device file"), ("watch", "a device directory")):
        for path in value[name]:
            _check(validate_remote_path, path, f"--jmp-mount-{name} {path!r}: give the absolute path of {what}")
    for option in value["option"]:
        _check(validate_option, option, "--jmp-mount-option takes an sshfs option, not a flag", give_reason=True)
    try:
        check_ssh_options(value["option"])
    except InvalidOptionError as exc:
        raise pytest.UsageError(f"--jmp-mount-option: {exc}") from None
    if value["client"] and not (value["selector"] or value["lease"]):
        raise pytest.UsageError("--jmp-mount-client needs --jmp-mount-selector LABELS or --jmp-mount-lease NAME")
    lease_timeout = value["lease-timeout"]
    _check_readable(config, "exporter-config", _path(value["exporter-config"]))
    return Settings(
        remote=remote,
        scope=_choice("scope", str(value["scope"]), SCOPES),
        cache=_choice("cache", str(value["cache"]), CACHE_MODES),
        options=tuple(value["option"]),
        transport=transport_setting(config, value, OPTIONS),
        insecure=bool(value["insecure"]),
        driver=str(value["driver"]),
        dir=_path(value["dir"]),
        timeout=_positive(value, "timeout", "number of seconds"),
        exporter_config=_path(value["exporter-config"]),
        tls_grpc=value["tls-grpc"] or None,
        tls_grpc_insecure=bool(value["tls-grpc-insecure"]),
        passphrase=value["passphrase"] or None,
        client=value["client"] or None,
        selector=value["selector"] or None,
        lease=value["lease"] or None,
        duration=DEFAULT_LEASE_DURATION if value["duration"] is None else parse_duration(str(value["duration"])),
        lease_timeout=parse_duration(str(lease_timeout), "--jmp-mount-lease-timeout") if lease_timeout else None,
        collect=tuple(value["collect"]),
        artifacts=_path(value["artifacts"]),
        collect_max_bytes=int(_positive(value, "collect-max-bytes", "number of bytes")),
        collect_timeout=_positive(value, "collect-timeout", "number of seconds"),
        artifacts_retention=_count(value, "artifacts-retention"),
        logs=tuple(value["log"]),
        log_commands=tuple(value["log-command"]),
        log_keep=_choice("log-keep", str(value["log-keep"]), LOG_KEEP),
        watch=tuple(value["watch"]),
    )


def _check(validate: Callable[[str], str], text: str, message: str, *, give_reason: bool = False) -> None:
    """Run a core validator on ``text``; its error becomes a UsageError saying ``message`` (and why)."""
    try:
        validate(text)
    except (InvalidOptionError, RemotePathError) as exc:
        raise pytest.UsageError(f"{message}: {exc}" if give_reason else message) from None


def _check_readable(config: pytest.Config, name: str, path: Path | None) -> None:
    """A file the run will read (when its source applies) must be there: a usage error naming where it was given."""
    if path is None or os.environ.get("JUMPSTARTER_HOST"):  # inside `jmp shell` the shell's device wins
        return
    try:
        with path.open("rb"):
            pass
    except OSError as exc:
        why = "no such file" if isinstance(exc, FileNotFoundError) else (exc.strerror or str(exc)).lower()
        option = next(o for o in OPTIONS if o.name == name)
        raise pytest.UsageError(f"{option.flag} {path}{_given_in(config, option)}: {why}; check the path") from None


def _given_in(config: pytest.Config, option: Any) -> str:
    """Where a value came from, when not from the command line: `` (from ENV)``, `` (from ini KEY in FILE)``."""
    if config.getoption(option.dest, default=None) is not None:
        return ""
    if option.env in os.environ:
        return f" (from {option.env})"
    return f" (from {option.dest} in {config.inipath})"


def _choice(name: str, text: str, choices: tuple[Any, ...]) -> Any:
    if text in choices:
        return text
    raise pytest.UsageError(f"--jmp-mount-{name} must be one of {', '.join(choices)}, got {text!r}")


def _positive(value: dict[str, Any], name: str, what: str) -> float:
    try:
        number = float(value[name])
    except (TypeError, ValueError):
        number = -1.0
    if not number > 0:
        raise pytest.UsageError(f"--jmp-mount-{name} must be a positive {what}, got {value[name]!r}")
    return number


def _count(value: dict[str, Any], name: str) -> int:
    text = str(value[name]).strip()
    if not text.isdigit():
        raise pytest.UsageError(f"--jmp-mount-{name} must be a whole number, 0 or more, got {value[name]!r}")
    return int(text)


def _path(value: Any) -> Path | None:
    return Path(value).expanduser() if value not in (None, "") else None


def parse_duration(text: str, flag: str = "--jmp-mount-duration") -> float:
    """Positive seconds from ``900``, ``30m``, ``1h30m``, ``1d`` (what ``jmp`` reads); UsageError otherwise."""
    from pytimeparse2 import parse

    seconds = parse(text.strip())
    if not isinstance(seconds, int | float) or seconds <= 0:
        raise pytest.UsageError(f"{flag}: cannot read {text.strip()!r}; use e.g. 900, 30m or 1h30m")
    return float(seconds)
