"""Globbing device files through a mount without looping through followed directory links.

A mount of the device's ``/`` follows symlinks on the device, so a link to an ancestor
directory (``/proc/self/root``, ``/data/loop -> /``) looks like a real directory and
``Path.glob("**")`` would descend through it until the device answers ELOOP, once per
link and level. ``glob_device`` matches like ``Path.glob`` but does not enter a
directory that looks exactly like one of its ancestors (same attributes, same entries:
the same device directory reached again), nor go deeper than ``MAX_GLOB_DEPTH``.
"""

from __future__ import annotations

import fnmatch
import os
from collections.abc import Iterator
from pathlib import Path

MAX_GLOB_DEPTH = 32  # directory levels a ``**`` descends at most
Signature = tuple[object, ...]


def glob_device(base: Path, pattern: str, top: Path | None = None) -> Iterator[Path]:
    """Paths under ``base`` matching ``pattern`` (``Path.glob`` syntax), each once.

    ``top`` (the mountpoint) bounds the ancestors of ``base`` compared against as well.
    """
    ancestors = [_signature(p) for p in _parents(base, top)]
    seen: set[Path] = set()
    for path in _match(base, [p for p in pattern.split("/") if p], ancestors):
        if path not in seen:
            seen.add(path)
            yield path


def _match(path: Path, parts: list[str], ancestors: list[Signature | None]) -> Iterator[Path]:
    if not parts:
        yield path
        return
    part, rest = parts[0], parts[1:]
    if part == "**":
        for directory in _directories(path, ancestors, 0):
            yield from _match(directory, rest, ancestors)
    elif any(c in part for c in "*?["):
        for name in _names(path):
            child = path / name
            if fnmatch.fnmatchcase(name, part) and (not rest or child.is_dir()):
                yield from _match(child, rest, ancestors)
    else:
        child = path / part
        if child.is_dir() if rest else os.path.lexists(child):
            yield from _match(child, rest, ancestors)


def _directories(path: Path, ancestors: list[Signature | None], depth: int) -> Iterator[Path]:
    """``path`` and the directories below it (not symlinks), skipping repeats of an ancestor."""
    signature = _signature(path)
    if signature is None or signature in ancestors or depth > MAX_GLOB_DEPTH:
        return
    yield path
    ancestors.append(signature)
    names = signature[-1]
    assert isinstance(names, tuple)
    try:
        for name in names:
            child = path / str(name)
            if child.is_dir() and not child.is_symlink():
                yield from _directories(child, ancestors, depth + 1)
    finally:
        ancestors.pop()


def _signature(path: Path) -> Signature | None:
    """What identifies a device directory through sshfs (inode numbers do not): attributes and entries."""
    try:
        info = path.stat()
    except OSError:
        return None
    names = tuple(sorted(_names(path)))
    return (info.st_mode, info.st_size, info.st_mtime_ns, info.st_nlink, info.st_uid, info.st_gid, names)


def _names(path: Path) -> list[str]:
    try:
        return os.listdir(path)
    except OSError:
        return []


def _parents(base: Path, top: Path | None) -> list[Path]:
    """``base``'s parents up to and including ``top`` (none without ``top``)."""
    if top is None or not base.is_relative_to(top):
        return []
    return [p for p in base.parents if p.is_relative_to(top)]
