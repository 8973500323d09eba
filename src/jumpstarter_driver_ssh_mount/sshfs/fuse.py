"""Whether a FUSE mount can work on this host, asked without mounting: ``fuse_problem``.

A container without the device has no ``/dev/fuse``, or (an unprivileged one, or a mount namespace
made so) another device in its place, such as ``/dev/null``: sshfs then fails only once it mounts
("fuse: mount failed: Invalid argument"). The check looks for the real character device (10, 229),
that it opens, and for ``sshfs`` and ``fusermount``.
"""

from __future__ import annotations

import os
import shutil
import stat
import sys

FUSE_DEVICE = "/dev/fuse"
FUSE_NUMBERS = (10, 229)  # Linux's major and minor number of /dev/fuse
NO_FUSE = f"no usable {FUSE_DEVICE}"


def fuse_problem() -> str | None:
    """Why a FUSE mount with sshfs cannot work here ("no usable /dev/fuse"...); None when it can, as far as seen."""
    if shutil.which("sshfs") is None:
        return "sshfs is not installed"
    if not sys.platform.startswith("linux"):
        return None  # macOS and others: sshfs itself finds out
    try:
        info = os.stat(FUSE_DEVICE)
    except OSError:
        return NO_FUSE
    if not stat.S_ISCHR(info.st_mode) or (os.major(info.st_rdev), os.minor(info.st_rdev)) != FUSE_NUMBERS:
        return NO_FUSE
    try:
        os.close(os.open(FUSE_DEVICE, os.O_RDWR | os.O_CLOEXEC))
    except OSError:
        return NO_FUSE
    if os.geteuid() != 0 and not (shutil.which("fusermount3") or shutil.which("fusermount")):
        return "no fusermount (install fuse3)"
    return None
