"""The ``--jmp-mount-*`` options: one table, three sources (CLI > environment > ini > default)."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

SCOPES = ("session", "package", "module", "class", "function")
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
        "seconds a mount may take to become ready (default 30)",
        kind="float",
        default=30.0,
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
        default="30m",
        metavar="DURATION",
    ),
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
        "cap on the bytes collected per failed test (default 20 MiB)",
        kind="float",
        default=20 * 1024 * 1024,
        metavar="BYTES",
    ),
    Option(
        "collect-timeout",
        "seconds collecting may take per failed test (default 30)",
        kind="float",
        default=30.0,
        metavar="SECONDS",
    ),
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
        ini_type = {"bool": "bool", "list": "linelist"}.get(o.kind, "string")
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
    scope: str = "session"
    options: tuple[str, ...] = ()
    direct: bool = False
    driver: str = "mount"
    dir: Path | None = None
    timeout: float = 30.0
    exporter_config: Path | None = None
    tls_grpc: str | None = None
    tls_grpc_insecure: bool = False
    passphrase: str | None = field(default=None, repr=False)
    client: str | None = None
    selector: str | None = None
    lease: str | None = None
    duration: float = 1800.0
    collect: tuple[str, ...] = ()
    artifacts: Path | None = None
    collect_max_bytes: int = 20 * 1024 * 1024
    collect_timeout: float = 30.0

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
    if not remote.startswith("/"):
        raise pytest.UsageError(f"--jmp-mount-remote must be an absolute device path, got {remote!r}")
    scope = str(value["scope"])
    if scope not in SCOPES:
        raise pytest.UsageError(f"--jmp-mount-scope must be one of {', '.join(SCOPES)}, got {scope!r}")
    timeout = _positive(value, "timeout", "number of seconds")
    collect = tuple(value["collect"])
    for pattern in collect:
        if not pattern.startswith("/"):
            raise pytest.UsageError(f"--jmp-mount-collect {pattern!r}: give an absolute device glob, e.g. /var/log/*")
    options = tuple(value["option"])
    for option in options:
        if not option.strip() or option.lstrip().startswith("-"):
            raise pytest.UsageError(
                f"--jmp-mount-option {option!r}: give the option itself (e.g. reconnect), not a flag"
            )
    if value["client"] and not (value["selector"] or value["lease"]):
        raise pytest.UsageError("--jmp-mount-client needs --jmp-mount-selector LABELS or --jmp-mount-lease NAME")
    return Settings(
        remote=remote,
        scope=scope,
        options=options,
        direct=bool(value["direct"]),
        driver=str(value["driver"]),
        dir=_path(value["dir"]),
        timeout=timeout,
        exporter_config=_path(value["exporter-config"]),
        tls_grpc=value["tls-grpc"] or None,
        tls_grpc_insecure=bool(value["tls-grpc-insecure"]),
        passphrase=value["passphrase"] or None,
        client=value["client"] or None,
        selector=value["selector"] or None,
        lease=value["lease"] or None,
        duration=parse_duration(str(value["duration"])),
        collect=collect,
        artifacts=_path(value["artifacts"]),
        collect_max_bytes=int(_positive(value, "collect-max-bytes", "number of bytes")),
        collect_timeout=_positive(value, "collect-timeout", "number of seconds"),
    )


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


_DURATION = re.compile(r"^(?:(?P<d>\d+)d)?(?:(?P<h>\d+)h)?(?:(?P<m>\d+)m)?(?:(?P<s>\d+)s)?$")


def parse_duration(text: str) -> float:
    """Seconds from ``900``, ``30m``, ``1h30m``, ``1d``; UsageError otherwise."""
    text = text.strip()
    if re.fullmatch(r"\d+(\.\d+)?", text):
        return float(text)
    match = _DURATION.match(text)
    if not text or not match:
        raise pytest.UsageError(f"--jmp-mount-duration: cannot read {text!r}; use e.g. 900, 30m or 1h30m")
    parts = {k: int(v or 0) for k, v in match.groupdict().items()}
    return float(parts["d"] * 86400 + parts["h"] * 3600 + parts["m"] * 60 + parts["s"])
