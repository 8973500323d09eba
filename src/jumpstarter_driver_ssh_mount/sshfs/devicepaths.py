"""Mapping device paths to local paths inside a mount, and refusing those the mount does not cover."""

from __future__ import annotations

import os
import posixpath
from pathlib import Path


def relative_to_mount(remote_path: str, device_path: str | os.PathLike[str]) -> str:
    """``device_path`` relative to the mounted ``remote_path`` ("" for the mount's root).

    ``device_path`` is absolute on the device (inside ``remote_path``) or relative to
    ``remote_path``. Paths that leave the mount (``..``, another directory) raise ValueError.
    """
    path = os.fspath(device_path)
    root = posixpath.normpath(remote_path)
    full = posixpath.normpath(posixpath.join(root, path)) if path else root
    if root == "/":
        relative = full.lstrip("/")
    elif full == root or full.startswith(root + "/"):
        relative = full[len(root) :].lstrip("/")
    else:
        raise ValueError(f"{path!r} is outside the mounted device path {remote_path}")
    if relative.split("/")[0] == "..":
        raise ValueError(f"{path!r} escapes the mounted device path {remote_path}")
    return relative


def local_path(mountpoint: Path, remote_path: str, device_path: str | os.PathLike[str]) -> Path:
    """Where ``device_path`` is visible under ``mountpoint``, on which ``remote_path`` is mounted."""
    relative = relative_to_mount(remote_path, device_path)
    return mountpoint / relative if relative else mountpoint
