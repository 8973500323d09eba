"""Matching a glob below a device directory, noting each directory it cannot read.

``pathlib.Path.glob`` silently skips a directory it may not list (a 0700 directory of
another user on the device), so a collection would report "no match" where it was
refused. ``match`` returns those errors instead. It never follows a symlink. It works on
device paths through a ``DeviceFS``, so it is the same on every backend.

A FUSE mount of the device's ``/`` follows symlinks on the device, so a link to an ancestor
directory (``/proc/self/root``, ``/data/loop -> /``) looks like a real directory, and
``**`` would descend through it until the device answers ELOOP. ``**`` therefore does not
enter a directory that looks exactly like one of its ancestors (same attributes, same
entries: the same device directory reached again; sshfs has no stable inode numbers),
nor go deeper than ``MAX_GLOB_DEPTH``.
"""

from __future__ import annotations

import errno
import fnmatch
import posixpath

from jumpstarter_driver_ssh_mount.devicefiles.fs import DeviceFS

WILDCARDS = "*?["
ABSENT = (errno.ENOENT, errno.ENOTDIR)  # nothing there: no match, not an error
MAX_GLOB_DEPTH = 32  # directory levels a ``**`` descends at most
Signature = tuple[object, ...]


def has_wildcard(part: str) -> bool:
    """True when a path component is a pattern (``*``, ``?``, ``[...]``)."""
    return any(c in part for c in WILDCARDS)


def join(directory: str, name: str) -> str:
    """``directory/name`` for device paths."""
    return posixpath.join(directory, name)


class Matcher:
    """One glob's matching on ``fs``: the device paths found and the errors met, as ``(device path, OSError)``."""

    def __init__(self, fs: DeviceFS, *, top: str | None = None) -> None:
        self.fs = fs
        self.errors: list[tuple[str, OSError]] = []
        self._top = top  # the mounted directory: the ancestors ``**`` compares against end there

    def match(self, base: str, pattern: str) -> list[str]:
        """Device paths below ``base`` matching ``pattern`` (``/``-separated; ``**`` is any depth), sorted.

        Like ``Path.glob``: ``*`` matches dot files, ``**`` matches ``base`` and every
        directory below it. Unlike it, directories are entered only if they are no symlink.
        """
        parts = [part for part in pattern.split("/") if part]
        found = [base]
        for i, part in enumerate(parts):
            dirs_only = i < len(parts) - 1
            step: list[str] = []
            for path in found:
                if part == "**":
                    step += self._tree(path)
                elif has_wildcard(part):
                    step += [
                        child
                        for child, is_dir in self._children(path)
                        if fnmatch.fnmatchcase(posixpath.basename(child), part) and (is_dir or not dirs_only)
                    ]
                elif self.exists(join(path, part), dir_only=dirs_only):
                    step.append(join(path, part))
            found = step
        return sorted(set(found))

    def exists(self, path: str, *, dir_only: bool = False) -> bool:
        """True if ``path`` is there (a symlink counts, unless ``dir_only`` asks for a real directory).

        An error other than absence is noted.
        """
        try:
            info = self.fs.lstat(path)
        except OSError as exc:
            if exc.errno not in ABSENT:
                self.errors.append((posixpath.dirname(path), exc))
            return False
        return info.is_dir or not dir_only

    def _children(self, path: str) -> list[tuple[str, bool]]:
        """``path``'s entries and whether each is a directory (not a symlink to one)."""
        try:
            return [(join(path, name), is_dir) for name, is_dir in self.fs.scandir(path)]
        except OSError as exc:
            if exc.errno not in ABSENT:
                self.errors.append((path, exc))
            return []

    def _tree(self, path: str) -> list[str]:
        """``path`` and every directory below it, without entering symlinks or an ancestor again."""
        above = tuple(sig for parent in _parents(path, self._top) if (sig := self._signature(parent)) is not None)
        found: list[str] = []
        pending: list[tuple[str, tuple[Signature, ...]]] = [(path, above)]
        while pending:
            current, ancestors = pending.pop()
            children = self._children(current)
            signature = self._signature_of(current, children)
            if signature is None or signature in ancestors or len(ancestors) - len(above) > MAX_GLOB_DEPTH:
                continue
            found.append(current)
            pending += [(child, (*ancestors, signature)) for child, is_dir in children if is_dir]
        return found

    def _signature(self, path: str) -> Signature | None:
        """An ancestor's signature; an ancestor that cannot be read is not compared (nor noted)."""
        try:
            return self._signature_of(path, [(join(path, name), False) for name, _ in self.fs.scandir(path)])
        except OSError:
            return None

    def _signature_of(self, path: str, children: list[tuple[str, bool]]) -> Signature | None:
        """What identifies a device directory: its attributes and its entries."""
        try:
            info = self.fs.stat(path)
        except OSError:
            return None
        names = tuple(sorted(posixpath.basename(child) for child, _ in children))
        return (info.mode, info.size, info.mtime_ns, info.nlink, info.uid, info.gid, names)


def _parents(path: str, top: str | None) -> list[str]:
    """``path``'s parents up to and including ``top`` (none without ``top``)."""
    if top is None:
        return []
    top = posixpath.normpath(top)
    inside = top == "/" or path == top or path.startswith(top + "/")
    if not inside:
        return []
    parents = []
    current = path
    while current != top and current != "/":
        current = posixpath.dirname(current)
        parents.append(current)
    return parents
