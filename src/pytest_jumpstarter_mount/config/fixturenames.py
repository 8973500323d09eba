"""Which of the plugin's fixtures need the device, and which log in to it."""

#: Fixtures that need the device from its source.
DEVICE_FIXTURES = ("jmp_client",)
#: Fixtures that need to log in to the device's sshd (they mount or run commands, and need the device too).
MOUNT_FIXTURES = ("jmp_mount_client", "remote_fs", "remote_path", "device_run")
