"""SSHMount: a Jumpstarter driver that mounts a device's filesystem with sshfs.

Layers, each importing only the ones before it:

* ``sshfs``  - sshfs process handling (no Jumpstarter): ``start_mount`` -> ``Mount``;
* ``driver`` - the exporter-side ``SSHMount`` driver;
* ``client`` - ``SSHMountClient``, thin glue from the SSH driver to ``start_mount``;
* ``interactive`` / ``cli`` - the blocking ``j mount`` experience on top of the client.

This module imports nothing, so ``import jumpstarter_driver_ssh_mount.sshfs`` stays light.
"""
