"""The ``--jmp-mount-*`` option table: each option's flag, ini key and environment variable.

``add_options`` registers them with pytest; ``raw_value`` reads one, CLI > environment >
ini > default. ``settings`` turns the raw values into checked ``Settings``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, get_args

import pytest

from jumpstarter_driver_ssh_mount.common.choices import (
    CACHE_MEANINGS,
    CACHE_MODES,
    DEFAULT_CACHE,
    TRANSPORT_MEANINGS,
    TRANSPORTS,
    describe_choices,
)
from jumpstarter_driver_ssh_mount.common.defaults import (
    COLLECT_MAX_BYTES,
    COLLECT_TIMEOUT,
    DEFAULT_MOUNT_TIMEOUT,
    DEVICE_LOG_CAP,
)

Scope = Literal["session", "package", "module", "class", "function"]
SCOPES: tuple[Scope, ...] = get_args(Scope)
LOG_KEEP = ("failed", "all")
IniType = Literal["string", "bool", "linelist"]
INI_TYPES: dict[str, IniType] = {"bool": "bool", "list": "linelist"}
GROUP = "jumpstarter mount"


@dataclass(frozen=True)
class Option:
    """One setting: ``--jmp-mount-<name>``, ini ``jmp_mount_<name>``, env ``JMP_MOUNT_<NAME>``.

    ``help`` is what the option means, for ``--help`` and the options table in the docs alike;
    ``shown_default`` is how its default reads there, when ``default`` alone does not say it.
    """

    name: str
    help: str
    kind: str = "str"  # str | bool | list | float | path
    default: Any = None
    metavar: str | None = None
    shown_default: str | None = None

    @property
    def flag(self) -> str:
        return f"--jmp-mount-{self.name}"

    @property
    def dest(self) -> str:
        return "jmp_mount_" + self.name.replace("-", "_")

    @property
    def env(self) -> str:
        return self.dest.upper()

    @property
    def default_text(self) -> str | None:
        """The default as a user reads it (``30``, ``20 MiB``, ``off``), or None when there is none."""
        if self.shown_default is not None:
            return self.shown_default
        if self.kind == "bool":
            return "off"
        if self.default in (None, ()):
            return None
        return f"{self.default:g}" if isinstance(self.default, float) else str(self.default)

    @property
    def full_help(self) -> str:
        """``help`` plus the default, as ``--help`` shows it."""
        default = self.default_text
        return f"{self.help}; default {default}" if default and self.kind != "bool" else self.help


OPTIONS = (
    Option("remote", "device directory to mount (absolute)", default="/", metavar="PATH"),
    Option("scope", "lifetime of remote_fs", default="session", metavar="|".join(SCOPES)),
    Option(
        "option",
        "sshfs -o option, repeatable; each replaces a default with the same key. UserKnownHostsFile, "
        "GlobalKnownHostsFile, HostKeyAlias or KnownHostsCommand check the host key against your keys "
        "instead of the exporter's, still strictly (only StrictHostKeyChecking turns checking off)",
        kind="list",
        default=(),
        metavar="OPT",
    ),
    Option(
        "direct",
        "upstream's spelling of --jmp-mount-transport=direct (a different transport in the same source "
        "is a usage error)",
        kind="bool",
        default=False,
    ),
    Option(
        "transport",
        f"how sshfs reaches the device. {describe_choices(TRANSPORT_MEANINGS)}",
        metavar="|".join(TRANSPORTS),
        shown_default="auto",  # resolved with --jmp-mount-direct in transportchoice
    ),
    Option(
        "insecure",
        "do not verify the device's host key (a warning once per run; auto then uses the port forward)",
        kind="bool",
        default=False,
    ),
    Option(
        "driver",
        "where the SSHMount driver sits in the exporter tree (dotted for nested)",
        default="mount",
        metavar="NAME",
    ),
    Option(
        "dir",
        "where mountpoints are made (0700; never under pytest's basetemp, whose cleanup would rm -rf "
        "through a stale mount)",
        kind="path",
        metavar="DIR",
        shown_default="<tmp>/pytest-jmp-mount-<uid>",
    ),
    Option(
        "timeout",
        "seconds a mount may take to become ready",
        kind="float",
        default=DEFAULT_MOUNT_TIMEOUT,
        metavar="SECONDS",
    ),
    Option("exporter-config", "device source: run this exporter config in-process", kind="path", metavar="PATH"),
    Option("tls-grpc", "device source: a standalone exporter (jmp run --tls-grpc-listener)", metavar="HOST:PORT"),
    Option(
        "tls-grpc-insecure", "with --jmp-mount-tls-grpc: no TLS to the standalone exporter", kind="bool", default=False
    ),
    Option("passphrase", "with --jmp-mount-tls-grpc: the standalone exporter's passphrase", metavar="TEXT"),
    Option(
        "client",
        "device source: lease through the controller with this client config alias (needs a selector or a lease)",
        metavar="ALIAS",
    ),
    Option("selector", "with --jmp-mount-client: label selector of the device to lease", metavar="LABELS"),
    Option("lease", "with --jmp-mount-client: use this existing lease", metavar="NAME"),
    Option(
        "duration",
        "with --jmp-mount-client: lease duration, e.g. 900, 30m, 1h30m",
        metavar="DURATION",
        shown_default="30m",  # settings.DEFAULT_LEASE_DURATION
    ),
    Option(
        "lease-timeout",
        "with --jmp-mount-selector: longest wait for a free device, e.g. 10m; then the tests that need it error",
        metavar="DURATION",
        shown_default="the client config's leases.acquisition_timeout (2 h)",
    ),
    Option(
        "collect",
        "absolute device glob to copy when a test fails, repeatable (e.g. /var/log/*.log)",
        kind="list",
        default=(),
        metavar="GLOB",
    ),
    Option(
        "artifacts",
        "where collected device files go, in a fresh folder per run",
        kind="path",
        metavar="DIR",
        shown_default="<rootdir>/jmp-artifacts",
    ),
    Option(
        "collect-max-bytes",
        "cap on the bytes collected per failed test",
        kind="float",
        default=COLLECT_MAX_BYTES,
        metavar="BYTES",
        shown_default=f"{COLLECT_MAX_BYTES / 2**20:g} MiB",
    ),
    Option(
        "collect-timeout",
        "seconds collecting may take per failed test",
        kind="float",
        default=COLLECT_TIMEOUT,
        metavar="SECONDS",
    ),
    Option(
        "cache",
        f"how much sshfs may cache. {describe_choices(CACHE_MEANINGS)}",
        default=DEFAULT_CACHE,
        metavar="|".join(CACHE_MODES),
    ),
    Option(
        "artifacts-retention",
        "how many runs' artifact folders to keep, this one included (0 keeps none)",
        default="3",
        metavar="N",
    ),
    Option(
        "log",
        "device log file: the lines written to it during a test go in the report when the test fails; repeatable",
        kind="list",
        default=(),
        metavar="DEVICE_PATH",
    ),
    Option(
        "log-command",
        "device command whose output goes in a failed test's report, repeatable; {start} is the test's start "
        "on the device's clock, e.g. 'journalctl --since @{start}'",
        kind="list",
        default=(),
        metavar="CMD",
    ),
    Option(
        "log-keep",
        "whose device log lines and changed files go in reports and the artifact folder: failed tests, or all "
        f"(JUnit XML); at most {DEVICE_LOG_CAP // 1024} KiB per log and test",
        default="failed",
        metavar="|".join(LOG_KEEP),
    ),
    Option(
        "watch",
        "device directory: files created, modified or deleted under it during a test go in the report "
        "when the test fails; repeatable",
        kind="list",
        default=(),
        metavar="DEVICE_DIR",
    ),
)


def add_options(parser: pytest.Parser) -> None:
    """Register the options and their ini keys in one "jumpstarter mount" group."""
    group = parser.getgroup(GROUP, "jumpstarter mount (device filesystem via sshfs)")
    for o in OPTIONS:
        if o.kind == "bool":
            group.addoption(o.flag, action="store_const", const=True, dest=o.dest, default=None, help=o.full_help)
        elif o.kind == "list":
            group.addoption(o.flag, action="append", dest=o.dest, default=None, metavar=o.metavar, help=o.full_help)
        else:
            group.addoption(o.flag, action="store", dest=o.dest, default=None, metavar=o.metavar, help=o.full_help)
        ini_type = INI_TYPES.get(o.kind, "string")
        parser.addini(o.dest, f"{o.full_help} [env {o.env}]", type=ini_type, default=None)


def _from_text(o: Option, text: str) -> Any:
    if o.kind == "bool":
        return text.strip().lower() in ("1", "true", "yes", "on")
    if o.kind == "list":
        import shlex

        return tuple(shlex.split(text))
    return text


def raw_value(config: pytest.Config, o: Option) -> Any:
    """The option's value: CLI, else environment, else ini, else its default.

    A path from the ini file is made absolute against the ini file's directory, as pytest's
    own ``paths`` ini values are; a path from the command line or the environment is left
    as given (relative to the current directory).
    """
    cli = config.getoption(o.dest, default=None)
    if cli is not None:
        return tuple(cli) if o.kind == "list" else cli
    if o.env in os.environ:
        return _from_text(o, os.environ[o.env])
    ini = config.getini(o.dest)
    if ini not in (None, "", []):
        if o.kind == "path":
            return str(ini_dir(config) / Path(str(ini).strip()).expanduser())
        return tuple(ini) if o.kind == "list" else ini
    return o.default


def ini_dir(config: pytest.Config) -> Path:
    """The directory of the ini file the run uses (the rootdir when there is none)."""
    return config.inipath.parent if config.inipath is not None else config.rootpath


def check_ini_keys(config: pytest.Config) -> None:
    """An ini key that starts with ``jmp_mount_`` but is none of ours is a usage error naming the closest key."""
    import difflib

    known = [o.dest for o in OPTIONS]
    inicfg = getattr(config, "_inicfg", None)  # pytest >= 9 deprecates config.inicfg
    keys = list(inicfg if inicfg is not None else config.inicfg)
    for key in keys:
        if key.startswith("jmp_mount_") and key not in known:
            closest = difflib.get_close_matches(key, known, n=1, cutoff=0.0)
            raise pytest.UsageError(
                f"unknown ini key {key!r} in {config.inipath}; did you mean {closest[0]!r}? "
                "(pytest --help lists every jmp_mount_* key)"
            )
