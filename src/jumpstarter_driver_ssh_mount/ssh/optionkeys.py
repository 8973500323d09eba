"""How an ``-o`` option is named: its key, lower-cased as ssh compares them, and comma lists split."""

from __future__ import annotations

from collections.abc import Iterable


def option_key(option: str) -> str:
    """The key of ``Key=value`` (or of a flag such as ``reconnect``), lower-cased."""
    return option.split("=", 1)[0].strip().lower()


def option_value(option: str) -> str:
    """The value of ``Key=value`` ("" for a flag), stripped."""
    return option.split("=", 1)[1].strip() if "=" in option else ""


def option_parts(options: Iterable[str]) -> list[str]:
    """Each option split at commas (``-o a,b`` is two options)."""
    return [part for option in options for part in option.split(",")]


def given_values(options: Iterable[str]) -> dict[str, str]:
    """Each key's value, the first one given winning (as in ssh)."""
    given: dict[str, str] = {}
    for part in option_parts(options):
        given.setdefault(option_key(part), option_value(part))
    return given


def ssh_options(options: Iterable[str]) -> list[str]:
    """The ssh options among sshfs ``-o`` options: ssh's are CamelCase (``HostKeyAlias=x``), sshfs's not."""
    return [o for o in options if o[:1].isupper()]
