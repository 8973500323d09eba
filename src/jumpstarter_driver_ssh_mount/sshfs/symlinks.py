"""Where device symlinks resolve: on the device, never on the test host.

sshfs hands a symlink's target to the local kernel verbatim, so an absolute link
(``/etc/localtime -> /usr/share/zoneinfo/...``) would be resolved on the test host and a
test would read the host's file. What each mount gets instead:

- A mount of the device's ``/``: ``follow_symlinks``. The device resolves every link
  (absolute, relative, ``..`` beyond ``/``) and the mount shows the device's file; links
  look like the files or directories they point to (``readlink`` fails with EINVAL).
- A mount of a device subdirectory, with an sshfs that has ``contain_symlinks`` (Debian's
  patch, on by default there): links whose target leaves the mount, or contains ``..``, fail
  with EPERM. ``transform_symlinks`` is added so that an absolute link to a file in the same
  directory inside the mount works; the warning sshfs prints about that pair is dropped
  from ``Mount.stderr_tail()`` (``is_noise``).
- A subdirectory mount with an sshfs without ``contain_symlinks``: ``follow_symlinks`` too.
  A link leaving the mount then reads the *device's* file outside it: never the host's.
  (``no_contain_symlinks`` would hand targets to the host: never used.)
"""

from __future__ import annotations

import functools
import posixpath
import subprocess

#: The start of the line sshfs prints when transform_symlinks meets contain_symlinks.
TRANSFORM_WARNING = "warning: transform_symlinks with contain_symlinks"
HELP_TIMEOUT = 5.0  # seconds ``sshfs -h`` may take


@functools.cache
def has_contain_symlinks(executable: str = "sshfs") -> bool:
    """True when this sshfs knows ``contain_symlinks`` (read once from ``sshfs -h``)."""
    try:
        result = subprocess.run(
            [executable, "-h"], capture_output=True, text=True, timeout=HELP_TIMEOUT, stdin=subprocess.DEVNULL
        )
    except (OSError, subprocess.SubprocessError):
        return False
    return "contain_symlinks" in result.stdout + result.stderr


def symlink_options(remote_path: str, executable: str = "sshfs") -> list[str]:
    """The ``-o`` options that make device symlinks resolve on the device for this mount."""
    if posixpath.normpath(remote_path) == "/" or not has_contain_symlinks(executable):
        return ["follow_symlinks"]
    return ["transform_symlinks"]


def is_noise(line: str) -> bool:
    """True for sshfs stderr lines that say nothing about a failure (the transform warning)."""
    return line.lstrip().startswith(TRANSFORM_WARNING)
