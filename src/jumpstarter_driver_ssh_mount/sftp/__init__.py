"""Device files without FUSE: an SFTP session from the test process (asyncssh), over the same routes and keys.

``start_sftp`` returns ``SftpFiles`` (the device-file chores of ``DeviceFiles`` on an ``SftpFS``);
its ``root`` is a ``DevicePath``, a path object with pathlib's file API that never names a local file.
"""
