"""Matching a glob below a directory of a mount, noting each directory it cannot read.

``pathlib.Path.glob`` silently skips a directory it may not list (a 0700 directory of
another user on the device), so a collection would report "no match" where it was
refused. ``match`` returns those errors instead. It never follows a symlink.

A mount of the device's ``/`` follows symlinks on the device, so a link to an ancestor
directory (``/proc/self/root``, ``/data/loop -> /``) looks like a real directory, and
``**`` would descend through it until the device answers ELOOP. ``**`` therefore does not
enter a directory that looks exactly like one of its ancestors (same attributes, same
entries: the same device directory reached again; sshfs has no stable inode numbers),
nor go deeper than ``MAX_GLOB_DEPTH``.
"""

from __future__ import annotations

import errno
import fnmatch
import os
import stat
from pathlib import Path

WILDCARDS = "*?["
ABSENT = (errno.ENOENT, errno.ENOTDIR)  # nothing there: no match, not an error
MAX_GLOB_DEPTH = 32  # directory levels a ``**`` descends at most
Signature = tuple[object, ...]


def has_wildcard(part: str) -> bool:
    """True when a path component is a pattern (``*``, ``?``, ``[...]``)."""
    return any(c in part for c in WILDCARDS)


class Matcher:
    """One glob's matching: the paths found and the errors met, as ``(local path, OSError)``."""

    def __init__(self, *, top: Path | None = None) -> None:
        self.errors: list[tuple[Path, OSError]] = []
        self._top = top  # the mountpoint: the ancestors ``**`` compares against end there

    def match(self, base: Path, pattern: str) -> list[Path]:
        """Paths below ``base`` matching ``pattern`` (``/``-separated; ``**`` is any depth), sorted.

        Like ``Path.glob``: ``*`` matches dot files, ``**`` matches ``base`` and every
        directory below it. Unlike it, directories are entered only if they are no symlink.
        """
        parts = [part for part in pattern.split("/") if part]
        found = [base]
        for i, part in enumerate(parts):
            dirs_only = i < len(parts) - 1
            step: list[Path] = []
            for path in found:
                if part == "**":
                    step += self._tree(path)
                elif has_wildcard(part):
                    step += [
                        child
                        for child, is_dir in self._children(path)
                        if fnmatch.fnmatchcase(child.name, part) and (is_dir or not dirs_only)
                    ]
                elif self.exists(path / part, dir_only=dirs_only):
                    step.append(path / part)
            found = step
        return sorted(set(found))

    def exists(self, path: Path, *, dir_only: bool = False) -> bool:
        """True if ``path`` is there (a symlink counts, unless ``dir_only`` asks for a real directory).

        An error other than absence is noted.
        """
        try:
            info = os.lstat(path)
        except OSError as exc:
            if exc.errno not in ABSENT:
                self.errors.append((path.parent, exc))
            return False
        return stat.S_ISDIR(info.st_mode) or not dir_only

    def _children(self, path: Path) -> list[tuple[Path, bool]]:
        """``path``'s entries and whether each is a directory (not a symlink to one)."""
        try:
            with os.scandir(path) as entries:
                return [(path / e.name, _is_real_dir(e)) for e in entries]
        except OSError as exc:
            if exc.errno not in ABSENT:
                self.errors.append((path, exc))
            return []

    def _tree(self, path: Path) -> list[Path]:
        """``path`` and every directory below it, without entering symlinks or an ancestor again."""
        above = tuple(sig for parent in _parents(path, self._top) if (sig := self._signature(parent)) is not None)
        found: list[Path] = []
        pending: list[tuple[Path, tuple[Signature, ...]]] = [(path, above)]
        while pending:
            current, ancestors = pending.pop()
            children = self._children(current)
            signature = _signature_of(current, children)
            if signature is None or signature in ancestors or len(ancestors) - len(above) > MAX_GLOB_DEPTH:
                continue
            found.append(current)
            pending += [(child, (*ancestors, signature)) for child, is_dir in children if is_dir]
        return found

    @staticmethod
    def _signature(path: Path) -> Signature | None:
        """An ancestor's signature; an ancestor that cannot be read is not compared (nor noted)."""
        try:
            with os.scandir(path) as entries:
                return _signature_of(path, [(path / e.name, False) for e in entries])
        except OSError:
            return None


def _signature_of(path: Path, children: list[tuple[Path, bool]]) -> Signature | None:
    """What identifies a device directory through sshfs: its attributes and its entries."""
    try:
        info = path.stat()
    except OSError:
        return None
    names = tuple(sorted(child.name for child, _ in children))
    return (info.st_mode, info.st_size, info.st_mtime_ns, info.st_nlink, info.st_uid, info.st_gid, names)


def _parents(path: Path, top: Path | None) -> list[Path]:
    """``path``'s parents up to and including ``top`` (none without ``top``)."""
    if top is None or not path.is_relative_to(top):
        return []
    return [p for p in path.parents if p.is_relative_to(top)]


def _is_real_dir(entry: os.DirEntry[str]) -> bool:
    try:
        return entry.is_dir(follow_symlinks=False)  # the entry's type: no extra round trip to the device
    except OSError:
        return False
