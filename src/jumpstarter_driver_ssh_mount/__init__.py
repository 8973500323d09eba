"""SSHMount: a Jumpstarter driver that mounts a device's filesystem with sshfs.

Folders by layer, each importing only the ones listed after it:

* ``driver``, ``client``, ``cli``, ``interactive`` - the Jumpstarter face (exporter side, client, ``j mount``);
* ``mount`` - ``start_mount`` -> ``Mount``: an sshfs process plus the device-file methods;
* ``reach/`` - reaching the device: routes (direct, relay, port forward), the transport rule, trust, device commands;
* ``devicefiles/`` - what tests do with device files: collect, snapshot/restore, wait for, device readings;
* ``sshfs/`` - the sshfs process: command line, start, ready, unmount (knows nothing of device files);
* ``ssh/`` - every ssh the project starts: host keys, sealing, identity, remote commands and shells;
* ``common/`` - defaults, errors, process liveness, owned folders.

The public names below load from their modules on first use, so ``from jumpstarter_driver_ssh_mount import X``
costs only the module that defines ``X`` (the pytest plugin loads in every pytest run).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

#: Where the names live, lightest first: a name is taken from the first module that has it.
_MODULES = (
    "common.choices",
    "ssh.target",
    "ssh.sshoptions",
    "sshfs.command",
    "common.defaults",
    "common.errors",
    "ssh.commandresult",
    "sshfs.unmount",
    "mount",
    "ssh.remote_command",
)

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


if not TYPE_CHECKING:  # type checkers read the imports below; a typo'd name stays an error for them

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
        DEFAULT_WAIT_TIMEOUT,
        PRIVATE_DIR_PREFIX,
        SNAPSHOT_MAX_BYTES,
        WAIT_MAX_BYTES,
    )
    from jumpstarter_driver_ssh_mount.common.errors import (
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
    from jumpstarter_driver_ssh_mount.mount import Mount, start_mount
    from jumpstarter_driver_ssh_mount.ssh.commandresult import CommandResult, DeviceCommandError, DeviceCommandTimeout
    from jumpstarter_driver_ssh_mount.ssh.sshoptions import (
        DEFAULT_SSH_OPTIONS,
        merge_options,
        validate_option,
        validate_options,
    )
    from jumpstarter_driver_ssh_mount.ssh.target import SshfsTarget
    from jumpstarter_driver_ssh_mount.sshfs.command import (
        build_argv,
        cache_options,
        validate_cache,
        validate_remote_path,
    )
    from jumpstarter_driver_ssh_mount.sshfs.unmount import run_unmount, unmount_command
