"""Where the plugin's mountpoints live: a private directory pytest's tmp cleanup never reaches.

``<tmp>/pytest-jmp-mount-<user>/<run id>-<worker id>/``: mode 0700, owned by us, removed
with ``rmdir`` at the end. Never under ``basetemp``, whose retention cleanup would
``rm -rf`` through a mount left by a killed run.
"""

from __future__ import annotations

import contextlib
import getpass
import os
import stat
import tempfile
from pathlib import Path

import pytest


def default_base() -> Path:
    """``<tmp>/pytest-jmp-mount-<user>``: the per-user parent of every run's directory."""
    return Path(tempfile.gettempdir()) / f"pytest-jmp-mount-{getpass.getuser()}"


def private_dir(path: Path) -> Path:
    """Make ``path`` a 0700 directory we own, or fail with a UsageError naming the fix."""
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        info = path.lstat()
    except OSError as exc:
        raise pytest.UsageError(
            f"cannot create mount directory {path}: {exc.strerror}; pass a writable --jmp-mount-dir"
        ) from None
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid():
        raise pytest.UsageError(f"mount directory {path} is not a directory owned by you; pass --jmp-mount-dir")
    if stat.S_IMODE(info.st_mode) & 0o077:
        os.chmod(path, 0o700)
    if not os.access(path, os.W_OK | os.X_OK):
        raise pytest.UsageError(f"mount directory {path} is not writable; pass a writable --jmp-mount-dir")
    return path


def run_dir(base: Path, run_id: str, worker_id: str) -> Path:
    """This run's (and this xdist worker's) own directory under ``base``."""
    return private_dir(private_dir(base) / f"{run_id}-{worker_id}")


def remove_if_empty(path: Path) -> None:
    """``rmdir`` only: a directory that still holds anything (a stale mount) stays."""
    with contextlib.suppress(OSError):
        path.rmdir()
