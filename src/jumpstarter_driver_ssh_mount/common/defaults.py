"""The mount core's defaults, in one light module that the other layers import."""

from __future__ import annotations

DEFAULT_MOUNT_TIMEOUT = 30.0  # seconds a mount may take to become ready
DEFAULT_COMMAND_TIMEOUT = 60.0  # seconds a device command may run, connecting included
DEFAULT_WAIT_TIMEOUT = 30.0  # seconds ``wait_for`` waits unless told otherwise
COLLECT_MAX_BYTES = 20 * 1024 * 1024  # per collection
COLLECT_TIMEOUT = 30.0  # seconds per collection
SNAPSHOT_MAX_BYTES = 8 * 1024 * 1024  # per snapshot (all its files together)
READ_MANY_MAX_BYTES = 16 * 1024 * 1024  # per Mount.read_many call (all its files together)
BULK_TIMEOUT = 60.0  # seconds one bulk read or restore script may take (a collection's own timeout is shorter)
WAIT_MAX_BYTES = 1024 * 1024  # ``wait_for(contains=...)`` reads at most the file's last MiB per look
JOURNAL_MAX_BYTES = 64 * 1024 * 1024  # a restore journal on the test host (originals, base64): refused beyond
PRIVATE_DIR_PREFIX = "jmp-mount-"  # of every directory the core makes
DEVICE_LOG_CAP = 256 * 1024  # bytes of each device log (or log command) per test
DEVICE_LISTING_CAP = 8 * 1024 * 1024  # bytes of one watched directory's listing per reading
DEVICE_CHANGES_SHOWN = 50  # changed files listed per watched directory; the rest are counted
DEVICE_READING_TIMEOUT = 10.0  # seconds one reading of the device's logs and files may take
DEVICE_READING_RETRY = 30.0  # seconds before the device is tried again after it could not be reached
SFTP_CONNECT_TIMEOUT = 10.0  # seconds the SFTP backend's connection and login may take (ssh's ConnectTimeout)
SFTP_KEEPALIVE_INTERVAL = 5.0  # seconds between the SFTP backend's keep-alives (ssh's ServerAliveInterval)
SFTP_KEEPALIVE_COUNT = 3  # unanswered keep-alives that end an SFTP session (ssh's ServerAliveCountMax)
#: seconds an SFTP call waits before the exporter is asked whether the device answers, then between two asks
SFTP_STALL_CHECK = (1.0, 5.0)
SFTP_BLOCK_SIZE = 64 * 1024  # bytes per SFTP read or write request
DEFAULT_COME_BACK_TIMEOUT = 120.0  # seconds ``wait_until_back`` waits for a rebooting device unless told otherwise
COME_BACK_POLL = 0.5  # seconds between two looks for a device that is coming back
BOOT_ID_PATH = "/proc/sys/kernel/random/boot_id"  # the device kernel's id of this boot
BOOT_ID_READ_TIMEOUT = 2.0  # seconds the boot id read at a test's end may take (a device that is down)
