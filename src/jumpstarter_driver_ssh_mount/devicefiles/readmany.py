"""``read_many``: the content of many device files at once, by names and globs (``DeviceFiles.read_many``)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from jumpstarter_driver_ssh_mount.devicefiles.bulkfs import prefetched
from jumpstarter_driver_ssh_mount.devicefiles.collection import split_glob
from jumpstarter_driver_ssh_mount.devicefiles.fs import DeviceFS
from jumpstarter_driver_ssh_mount.devicefiles.matching import Matcher


def read_many(
    fs: DeviceFS,
    chore_fs: DeviceFS,
    top: str,
    resolve: Callable[[str, str], str],
    device_paths_or_globs: Sequence[str],
    max_bytes: int,
) -> dict[str, bytes]:
    """Each named file's and each regular file a glob matches: content by absolute device path.

    ``fs`` lists directories for the globs, ``chore_fs`` reads (in one script where it can);
    ``resolve`` makes a given path absolute (and refuses one outside ``top``).

    :raises OSError: a file could not be read, a directory a glob needs could not be listed,
        or the files hold more than ``max_bytes`` in all (``EFBIG``, naming the file).
    """
    named: list[str] = []
    matched: list[str] = []
    for given in device_paths_or_globs:
        full = resolve(given, "read_many")
        static, pattern = split_glob(full)
        if not pattern:
            named.append(full)
            continue
        matcher = Matcher(fs, top=top)
        matched += matcher.match(static, pattern)
        for where, error in matcher.errors:
            raise OSError(error.errno, f"cannot list {where}: {error.strerror or error}", where)
    view = prefetched(chore_fs, list(dict.fromkeys([*named, *matched])), max_bytes)
    paths = list(dict.fromkeys([*named, *(path for path in matched if _is_regular(view, path))]))
    found = view.read_many(paths, max_bytes)  # the prefetched view's, or the backend's own bulk read
    for path, content in found.items():
        if isinstance(content, OSError):
            raise content if content.filename else OSError(content.errno, content.strerror, path)
    return {path: content for path, content in found.items() if isinstance(content, bytes)}


def _is_regular(fs: DeviceFS, path: str) -> bool:
    """True when ``path`` is a regular file (not a link to one): what a glob of ``read_many`` reads."""
    try:
        return fs.lstat(path).is_regular
    except OSError:
        return True  # read, so that its error is raised
