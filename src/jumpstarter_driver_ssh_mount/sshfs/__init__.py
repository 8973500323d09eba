"""sshfs process handling: build the command, start it, know when it is mounted, unmount.

Nothing here imports Jumpstarter; the driver's client is thin glue over ``start_mount``.
Names are loaded from their modules on first use, so that ``from .sshfs import X`` costs
only the module that defines ``X`` (the pytest plugin loads in every pytest run).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

#: Where the names live, lightest first: a name is taken from the first module that has it.
_MODULES = ("command", "defaults", "errors", "commandresult", "unmount", "mount", "remote_command")

__all__ = [
    "CACHE_MEANINGS",
    "CACHE_MODES",
    "COLLECT_MAX_BYTES",
    "COLLECT_TIMEOUT",
    "DEFAULT_CACHE",
    "DEFAULT_MOUNT_TIMEOUT",
    "DEFAULT_SSH_OPTIONS",
    "DEFAULT_WAIT_TIMEOUT",
    "PRIVATE_DIR_PREFIX",
    "SNAPSHOT_MAX_BYTES",
    "TRANSPORTS",
    "TRANSPORT_MEANINGS",
    "WAIT_MAX_BYTES",
    "AuthenticationError",
    "CommandResult",
    "ConnectError",
    "DeviceCommandError",
    "DeviceCommandTimeout",
    "FuseUnavailableError",
    "HostKeyError",
    "InvalidOptionError",
    "Mount",
    "MountError",
    "MountLostError",
    "MountTimeoutError",
    "MountpointError",
    "OutsideMountError",
    "RemotePathError",
    "RestoreError",
    "SshfsNotFoundError",
    "SshfsTarget",
    "UnmountError",
    "WaitTimeoutError",
    "build_argv",
    "cache_options",
    "describe_choices",
    "merge_options",
    "run_unmount",
    "start_mount",
    "unmount_command",
    "validate_cache",
    "validate_option",
    "validate_options",
    "validate_remote_path",
]


def __getattr__(name: str) -> Any:
    if name in __all__:
        for module in _MODULES:
            namespace = importlib.import_module(f".{module}", __name__)
            if hasattr(namespace, name):
                globals()[name] = value = getattr(namespace, name)
                return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})


if TYPE_CHECKING:
    from .command import (
        CACHE_MEANINGS,
        CACHE_MODES,
        DEFAULT_CACHE,
        DEFAULT_SSH_OPTIONS,
        TRANSPORT_MEANINGS,
        TRANSPORTS,
        SshfsTarget,
        build_argv,
        cache_options,
        describe_choices,
        merge_options,
        validate_cache,
        validate_option,
        validate_options,
        validate_remote_path,
    )
    from .commandresult import CommandResult, DeviceCommandError, DeviceCommandTimeout
    from .defaults import (
        COLLECT_MAX_BYTES,
        COLLECT_TIMEOUT,
        DEFAULT_MOUNT_TIMEOUT,
        DEFAULT_WAIT_TIMEOUT,
        PRIVATE_DIR_PREFIX,
        SNAPSHOT_MAX_BYTES,
        WAIT_MAX_BYTES,
    )
    from .errors import (
        AuthenticationError,
        ConnectError,
        FuseUnavailableError,
        HostKeyError,
        InvalidOptionError,
        MountError,
        MountLostError,
        MountpointError,
        MountTimeoutError,
        OutsideMountError,
        RemotePathError,
        RestoreError,
        SshfsNotFoundError,
        UnmountError,
        WaitTimeoutError,
    )
    from .mount import Mount, start_mount
    from .unmount import run_unmount, unmount_command
