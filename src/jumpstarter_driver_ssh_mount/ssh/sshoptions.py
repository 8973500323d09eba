"""The ``-o`` options every ssh gets, a user's options checked, and the two merged.

User options replace defaults with the same key (compared case-insensitively, as ssh
does), so ``StrictHostKeyChecking=yes`` really turns host key checking on: ssh keeps
the *first* value it sees for a key, so appending after a default would be ignored.
"""

from __future__ import annotations

from collections.abc import Iterable

from jumpstarter_driver_ssh_mount.common.errors import InvalidOptionError
from jumpstarter_driver_ssh_mount.ssh.optionkeys import option_parts
from jumpstarter_driver_ssh_mount.ssh.sealing import SEALED_SSH_OPTIONS, option_slot

#: Options every ssh (a mount's, a device command's) gets unless the caller passes the same key:
#: the seal against the user's ssh config (``sealing``); ``BatchMode=yes`` makes ssh fail instead
#: of prompting for a password nobody can type. Host key options come from ``hostkeypolicy``.
DEFAULT_SSH_OPTIONS: tuple[str, ...] = (
    *SEALED_SSH_OPTIONS,
    "LogLevel=ERROR",
    "BatchMode=yes",
)


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


def merge_options(defaults: Iterable[str], user: Iterable[str]) -> list[str]:
    """Defaults first, minus any whose key a user option sets, then the user options.

    Keys compare as ssh fills them: ``ProxyJump`` and ``ProxyCommand`` are one (``sealing.option_slot``).
    """
    user = list(validate_options(user))
    user_slots = {option_slot(part) for part in option_parts(user)}
    return [d for d in defaults if option_slot(d) not in user_slots] + user
