"""The one rule for device paths, in every device-file call, and the error for a path a mount does not cover.

An absolute path is a device path; a relative path is relative to the mount's remote path.
So on a mount of ``/var/log``, ``"messages"``, ``"/var/log/messages"`` and ``mount / "messages"``
all name the device's ``/var/log/messages``, and ``"/etc/app.conf"`` is outside the mount.
"""

from __future__ import annotations

import os
import posixpath
from pathlib import Path

from jumpstarter_driver_ssh_mount.common.errors import OutsideMountError


def shown(name: str | os.PathLike[str]) -> str:
    """``name`` as reports show it: one line, every control or unprintable character escaped.

    A device's file names are the device's choice: a newline in one would otherwise start a
    line of its own in a report. Printable characters stay as they are; a backslash, control
    characters and undecodable bytes are written as Python escapes (``\\n``, ``\\x1b``, ``\\\\``).
    """
    text = os.fspath(name)
    if text.isprintable() and "\\" not in text:
        return text
    return "".join(_shown_char(c) for c in text)


def _shown_char(char: str) -> str:
    if char == "\\":
        return "\\\\"
    if char.isprintable():
        return char
    if "\udc80" <= char <= "\udcff":  # an undecodable byte, as os.fsdecode keeps it
        return f"\\x{ord(char) - 0xDC00:02x}"
    return repr(char)[1:-1]


def device_path(remote_path: str, path: str | os.PathLike[str]) -> str:
    """``path`` as an absolute, normalized device path: itself if absolute, else under ``remote_path``."""
    text = os.fspath(path)
    root = posixpath.normpath(remote_path)
    full = posixpath.normpath(posixpath.join(root, text)) if text else root
    return "/" + full.lstrip("/")  # normpath keeps a leading "//"


def relative_to_mount(remote_path: str, path: str | os.PathLike[str], usage: str = "") -> str:
    """``path`` relative to the mounted ``remote_path`` ("" for the mount's root).

    ``path`` follows the rule above. A path outside the mount (another directory, or ``..``
    leaving it) raises ``OutsideMountError`` (a ValueError) naming the mount that would cover
    it; ``usage`` is added to the marker it suggests (e.g. ``', restore=["/etc/app.conf"]'``).
    """
    root = posixpath.normpath(remote_path)
    full = device_path(root, path)
    if root == "/":
        return full.lstrip("/")
    if full == root or full.startswith(root + "/"):
        return full[len(root) :].lstrip("/")
    raise OutsideMountError(full, remote_path, usage)


def covers(remote_path: str, path: str | os.PathLike[str]) -> bool:
    """True when a mount of ``remote_path`` covers ``path`` (same rule as ``relative_to_mount``)."""
    try:
        relative_to_mount(remote_path, path)
    except ValueError:
        return False
    return True


def local_path(mountpoint: Path, remote_path: str, path: str | os.PathLike[str], usage: str = "") -> Path:
    """Where ``path`` is visible under ``mountpoint``, on which ``remote_path`` is mounted."""
    relative = relative_to_mount(remote_path, path, usage)
    return mountpoint / relative if relative else mountpoint
