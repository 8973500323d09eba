"""sshfs process handling: build the command, start it, know when it is mounted, unmount.

Nothing here imports Jumpstarter; the driver's client is thin glue over ``start_mount``.
"""

from .command import DEFAULT_SSH_OPTIONS, SshfsTarget, build_argv, merge_options
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
    RemotePathError,
    SshfsNotFoundError,
    UnmountError,
)
from .mount import Mount, start_mount
from .unmount import run_unmount, unmount_command

__all__ = [
    "DEFAULT_SSH_OPTIONS",
    "AuthenticationError",
    "ConnectError",
    "FuseUnavailableError",
    "HostKeyError",
    "InvalidOptionError",
    "Mount",
    "MountError",
    "MountLostError",
    "MountTimeoutError",
    "MountpointError",
    "RemotePathError",
    "SshfsNotFoundError",
    "SshfsTarget",
    "UnmountError",
    "build_argv",
    "merge_options",
    "run_unmount",
    "start_mount",
    "unmount_command",
]
