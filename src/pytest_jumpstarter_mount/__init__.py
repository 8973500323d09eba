"""pytest plugin: mount a Jumpstarter device's filesystem for your tests.

Fixtures ``jmp_client``, ``jmp_mount_client``, ``remote_fs``, ``remote_path``; options
``--jmp-mount-*``; marker ``jmp_mount``; hooks in ``pytest_jumpstarter_mount.hooks``;
``JumpstarterMountWarning`` in the warnings summary. Importing this package imports neither
Jumpstarter nor gRPC.
"""

from pytest_jumpstarter_mount.reporting.notices import InsecureMountWarning, JumpstarterMountWarning

__all__ = ["InsecureMountWarning", "JumpstarterMountWarning"]
