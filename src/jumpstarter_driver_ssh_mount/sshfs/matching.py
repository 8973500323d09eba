"""Matching a glob below a directory of a mount, noting each directory it cannot read.

``pathlib.Path.glob`` silently skips a directory it may not list (a 0700 directory of
another user on the device), so a collection would report "no match" where it was
refused. ``match`` returns those errors instead. It never follows a symlink.
"""

from __future__ import annotations

import errno
import fnmatch
import os
import stat
from pathlib import Path

WILDCARDS = "*?["
ABSENT = (errno.ENOENT, errno.ENOTDIR)  # nothing there: no match, not an error


def has_wildcard(part: str) -> bool:
    """True when a path component is a pattern (``*``, ``?``, ``[...]``)."""
    return any(c in part for c in WILDCARDS)


class Matcher:
    """One glob's matching: the paths found and the errors met, as ``(local path, OSError)``."""

    def __init__(self) -> None:
        self.errors: list[tuple[Path, OSError]] = []

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
        """``path`` and every directory below it, without entering symlinks."""
        found, pending = [], [path]
        while pending:
            current = pending.pop()
            found.append(current)
            pending += [child for child, is_dir in self._children(current) if is_dir]
        return found


def _is_real_dir(entry: os.DirEntry[str]) -> bool:
    try:
        return entry.is_dir(follow_symlinks=False)  # the entry's type: no extra round trip to the device
    except OSError:
        return False
