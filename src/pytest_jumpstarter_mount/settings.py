"""The ``--jmp-mount-*`` options: one table, three sources (CLI > environment > ini > default)."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args

import pytest

from jumpstarter_driver_ssh_mount.sshfs import (
    CACHE_MODES,
    COLLECT_MAX_BYTES,
    COLLECT_TIMEOUT,
    DEFAULT_MOUNT_TIMEOUT,
    TRANSPORTS,
    InvalidOptionError,
    RemotePathError,
    validate_option,
    validate_remote_path,
)

from .transportchoice import transport_setting

Scope = Literal["session", "package", "module", "class", "function"]
SCOPES: tuple[Scope, ...] = get_args(Scope)
IniType = Literal["string", "bool", "linelist"]
INI_TYPES: dict[str, IniType] = {"bool": "bool", "list": "linelist"}
DEFAULT_LEASE_DURATION = 30 * 60.0  # seconds
GROUP = "jumpstarter mount"
SOURCES_HELP = (
    "run inside `jmp shell`, or pass --jmp-mount-exporter-config PATH, "
    "--jmp-mount-tls-grpc HOST:PORT, or --jmp-mount-client ALIAS with --jmp-mount-selector/--jmp-mount-lease"
)


@dataclass(frozen=True)
class Option:
    """One setting: ``--jmp-mount-<name>``, ini ``jmp_mount_<name>``, env ``JMP_MOUNT_<NAME>``."""

    name: str
    help: str
    kind: str = "str"  # str | bool | list | float | path
    default: Any = None
    metavar: str | None = None

    @property
    def flag(self) -> str:
        return f"--jmp-mount-{self.name}"

    @property
    def dest(self) -> str:
        return "jmp_mount_" + self.name.replace("-", "_")

    @property
    def env(self) -> str:
        return self.dest.upper()


OPTIONS = (
    Option("remote", "device path to mount (absolute; default /)", default="/", metavar="PATH"),
    Option("scope", f"lifetime of remote_fs: {'|'.join(SCOPES)} (default session)", default="session", metavar="SCOPE"),
    Option(
        "option",
        "sshfs -o option, repeatable (replaces a default with the same key)",
        kind="list",
        default=(),
        metavar="OPT",
    ),
    Option(
        "direct", "connect straight to the device's address instead of the port forward", kind="bool", default=False
    ),
    Option("transport", f"how sshfs reaches the device: {'|'.join(TRANSPORTS)} (default auto)", metavar="HOW"),
    Option("insecure", "do not verify the device's host key (warns once per run)", kind="bool", default=False),
    Option(
        "driver",
        "where the SSHMount driver sits in the exporter tree, dotted (default mount)",
        default="mount",
        metavar="NAME",
    ),
    Option(
        "dir",
        "directory for local mountpoints (default: a private dir outside pytest's basetemp)",
        kind="path",
        metavar="DIR",
    ),
    Option(
        "timeout",
        f"seconds a mount may take to become ready (default {DEFAULT_MOUNT_TIMEOUT:g})",
        kind="float",
        default=DEFAULT_MOUNT_TIMEOUT,
        metavar="SECONDS",
    ),
    Option("exporter-config", "device source: run this exporter config in-process", kind="path", metavar="PATH"),
    Option("tls-grpc", "device source: a standalone exporter (jmp run --tls-grpc-listener)", metavar="HOST:PORT"),
    Option("tls-grpc-insecure", "with --jmp-mount-tls-grpc: no TLS", kind="bool", default=False),
    Option("passphrase", "with --jmp-mount-tls-grpc: the exporter's passphrase", metavar="TEXT"),
    Option("client", "device source: lease through the controller with this client config alias", metavar="ALIAS"),
    Option("selector", "with --jmp-mount-client: label selector of the device to lease", metavar="LABELS"),
    Option("lease", "with --jmp-mount-client: use this existing lease", metavar="NAME"),
    Option(
        "duration",
        "with --jmp-mount-client: lease duration, e.g. 30m, 1h30m, 900 (default 30m)",
        metavar="DURATION",
    ),
    Option("lease-timeout", "with --jmp-mount-selector: longest wait for a free device, e.g. 10m", metavar="DURATION"),
    Option(
        "collect",
        "device glob to copy when a test fails, repeatable (e.g. /var/log/*.log)",
        kind="list",
        default=(),
        metavar="GLOB",
    ),
    Option(
        "artifacts", "where collected device files go (default <rootdir>/jmp-artifacts)", kind="path", metavar="DIR"
    ),
    Option(
        "collect-max-bytes",
        f"cap on the bytes collected per failed test (default {COLLECT_MAX_BYTES / 2**20:g} MiB)",
        kind="float",
        default=COLLECT_MAX_BYTES,
        metavar="BYTES",
    ),
    Option(
        "collect-timeout",
        f"seconds collecting may take per failed test (default {COLLECT_TIMEOUT:g})",
        kind="float",
        default=COLLECT_TIMEOUT,
        metavar="SECONDS",
    ),
    Option("cache", "fresh (device changes show in 0.5 s; default) or fast (sshfs caching)", default="fresh"),
)


def add_options(parser: pytest.Parser) -> None:
    """Register the options and their ini keys in one "jumpstarter mount" group."""
    group = parser.getgroup(GROUP, "jumpstarter mount (device filesystem via sshfs)")
    for o in OPTIONS:
        if o.kind == "bool":
            group.addoption(o.flag, action="store_const", const=True, dest=o.dest, default=None, help=o.help)
        elif o.kind == "list":
            group.addoption(o.flag, action="append", dest=o.dest, default=None, metavar=o.metavar, help=o.help)
        else:
            group.addoption(o.flag, action="store", dest=o.dest, default=None, metavar=o.metavar, help=o.help)
        ini_type = INI_TYPES.get(o.kind, "string")
        parser.addini(o.dest, f"{o.help} [env {o.env}]", type=ini_type, default=None)


def _from_text(o: Option, text: str) -> Any:
    if o.kind == "bool":
        return text.strip().lower() in ("1", "true", "yes", "on")
    if o.kind == "list":
        import shlex

        return tuple(shlex.split(text))
    return text


def raw_value(config: pytest.Config, o: Option) -> Any:
    """The option's value: CLI, else environment, else ini, else its default."""
    cli = config.getoption(o.dest, default=None)
    if cli is not None:
        return tuple(cli) if o.kind == "list" else cli
    if o.env in os.environ:
        return _from_text(o, os.environ[o.env])
    ini = config.getini(o.dest)
    if ini not in (None, "", []):
        return tuple(ini) if o.kind == "list" else ini
    return o.default


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
    """Resolve and check every option; a bad value is a ``pytest.UsageError`` naming the fix."""
    value = {o.name: raw_value(config, o) for o in OPTIONS}
    remote = str(value["remote"])
    _check(validate_remote_path, remote, f"--jmp-mount-remote must be an absolute device path, got {remote!r}")
    for pattern in value["collect"]:
        _check(
            validate_remote_path,
            pattern,
            f"--jmp-mount-collect {pattern!r}: give an absolute device glob, e.g. /var/log/*",
        )
    for option in value["option"]:
        _check(validate_option, option, "--jmp-mount-option takes an sshfs option, not a flag", give_reason=True)
    if value["client"] and not (value["selector"] or value["lease"]):
        raise pytest.UsageError("--jmp-mount-client needs --jmp-mount-selector LABELS or --jmp-mount-lease NAME")
    lease_timeout = value["lease-timeout"]
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
    )


def _check(validate: Callable[[str], str], text: str, message: str, *, give_reason: bool = False) -> None:
    """Run a core validator on ``text``; its error becomes a UsageError saying ``message`` (and why)."""
    try:
        validate(text)
    except (InvalidOptionError, RemotePathError) as exc:
        raise pytest.UsageError(f"{message}: {exc}" if give_reason else message) from None


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


def _path(value: Any) -> Path | None:
    return Path(value).expanduser() if value not in (None, "") else None


def parse_duration(text: str, flag: str = "--jmp-mount-duration") -> float:
    """Positive seconds from ``900``, ``30m``, ``1h30m``, ``1d`` (what ``jmp`` reads); UsageError otherwise."""
    from pytimeparse2 import parse

    seconds = parse(text.strip())
    if not isinstance(seconds, int | float) or seconds <= 0:
        raise pytest.UsageError(f"{flag}: cannot read {text.strip()!r}; use e.g. 900, 30m or 1h30m")
    return float(seconds)
