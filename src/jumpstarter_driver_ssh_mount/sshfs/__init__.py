"""sshfs process handling: build the command, start it, know when it is mounted, unmount.

Nothing here imports Jumpstarter; the driver's client is thin glue over ``start_mount``.
"""

from .command import (
    CACHE_MODES,
    DEFAULT_CACHE,
    DEFAULT_SSH_OPTIONS,
    TRANSPORTS,
    SshfsTarget,
    build_argv,
    cache_options,
    merge_options,
    validate_cache,
    validate_option,
    validate_options,
    validate_remote_path,
)
from .devicefiles import COLLECT_MAX_BYTES, COLLECT_TIMEOUT
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
    RestoreError,
    SshfsNotFoundError,
    UnmountError,
    WaitTimeoutError,
)
from .mount import Mount, start_mount
from .mountpoint import PRIVATE_DIR_PREFIX
from .ready import DEFAULT_MOUNT_TIMEOUT
from .unmount import run_unmount, unmount_command

__all__ = [
    "CACHE_MODES",
    "COLLECT_MAX_BYTES",
    "COLLECT_TIMEOUT",
    "DEFAULT_CACHE",
    "DEFAULT_MOUNT_TIMEOUT",
    "DEFAULT_SSH_OPTIONS",
    "PRIVATE_DIR_PREFIX",
    "TRANSPORTS",
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
    "RestoreError",
    "SshfsNotFoundError",
    "SshfsTarget",
    "UnmountError",
    "WaitTimeoutError",
    "build_argv",
    "cache_options",
    "merge_options",
    "run_unmount",
    "start_mount",
    "unmount_command",
    "validate_cache",
    "validate_option",
    "validate_options",
    "validate_remote_path",
]
