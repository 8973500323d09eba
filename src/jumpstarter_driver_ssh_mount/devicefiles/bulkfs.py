"""Device-file work that costs round trips, not round trips per file: ``BulkFS``.

Through a FUSE mount every file costs several round trips (lookup, open, read, close): 300
files at 40 ms are half a minute. ``BulkFS`` wraps a backend's ``DeviceFS`` and a way to run
one shell script on the device over an open connection (``ScriptRunner``: the reused ssh
connection of ``reach.device_connection``). Before a chore reads many files it asks for a
``prefetched`` view: one script ``stat``s every path and streams every regular file's bytes
back (``shellscripts``), and the view answers the chore's ``lstat``, ``open_regular`` and
``contains`` from that, for that chore only (the device as it was a moment ago, never a cache
kept). Restoring many files is one script too (``put_back_many``). The chores' own code decides
exactly as before (caps, symlinks, odd names, notes): only where their bytes come from changes.

Whatever the script could not answer (a device without ``stat -c``/``head -c``, no
connection, a record cut off by the output bound, a file claimed too big to read here) goes
to the wrapped backend, file by file, as before.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import posixpath
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager

from jumpstarter_driver_ssh_mount.common.defaults import BULK_TIMEOUT
from jumpstarter_driver_ssh_mount.devicefiles.boundedread import read_each
from jumpstarter_driver_ssh_mount.devicefiles.fs import DeviceFS, FileStat, NotRegularFile, Reader
from jumpstarter_driver_ssh_mount.devicefiles.roundtrip import round_trip
from jumpstarter_driver_ssh_mount.devicefiles.shellscripts import (
    Nonce,
    ReadRecord,
    parse_read,
    parse_restore,
    read_script,
    restore_script,
)

logger = logging.getLogger("jumpstarter_driver_ssh_mount")

#: ``runner(script, timeout, max_bytes)``: the script's output (at most ``max_bytes``), or None
#: when no script can run (no connection): then the work goes file by file.
ScriptRunner = Callable[[bytes, float, int], bytes | None]
#: Round trips one file costs done on its own through a mount: read (lookup, open, read) and put back
#: (lookup, open with truncation, write, close, stat).
READ_TRIPS, RESTORE_TRIPS = 3, 5
#: What one script costs beyond its two round trips before any was timed: a shell started on the device.
SCRIPT_START_GUESS = 0.05
#: Output bytes allowed per path beyond the content (the records' markers and stat lines).
RECORD_OVERHEAD = 160
ELOOP_TEXT = "Too many levels of symbolic links"


class BytesReader:
    """A ``Reader`` over content already read."""

    def __init__(self, content: bytes) -> None:
        self._content = content
        self._position = 0

    def read(self, size: int) -> bytes:
        chunk = self._content[self._position : self._position + size]
        self._position += len(chunk)
        return chunk

    def seek(self, offset: int) -> None:
        self._position = offset


class _Delegating:
    """Every ``DeviceFS`` call goes to ``base`` unless a subclass answers it."""

    base: DeviceFS
    where: str

    def lstat(self, path: str) -> FileStat:
        return self.base.lstat(path)

    def stat(self, path: str) -> FileStat:
        return self.base.stat(path)

    def scandir(self, path: str) -> list[tuple[str, bool]]:
        return self.base.scandir(path)

    def open_regular(self, path: str, *, follow: bool = False) -> AbstractContextManager[tuple[Reader, FileStat]]:
        return self.base.open_regular(path, follow=follow)

    def write_bytes(self, path: str, data: bytes) -> None:
        self.base.write_bytes(path, data)

    def chmod(self, path: str, mode: int) -> None:
        self.base.chmod(path, mode)

    def unlink(self, path: str) -> None:
        self.base.unlink(path)

    def mkdir(self, path: str, mode: int = 0o777) -> None:
        self.base.mkdir(path, mode)

    def rmdir(self, path: str) -> None:
        self.base.rmdir(path)

    def rename(self, source: str, target: str) -> None:
        self.base.rename(source, target)

    def readlink(self, path: str) -> str:
        return self.base.readlink(path)

    def present(self, path: str) -> bool:
        return self.base.present(path)

    def contains(self, path: str) -> bool:
        return self.base.contains(path)


class BulkFS(_Delegating):
    """``base`` with bulk reads and restores over ``runner``; every other call goes to ``base``."""

    def __init__(
        self,
        base: DeviceFS,
        runner: ScriptRunner,
        *,
        top: str = "/",
        timeout: float = BULK_TIMEOUT,
        always: bool = False,
    ) -> None:
        self.base = base
        self.runner = runner
        self.timeout = timeout
        self.where = base.where
        self._top = top  # a device directory of ``base``: where the round trip is measured
        self._rtt: float | None = None
        self._script_cost: float | None = None  # the quickest script so far, seconds
        self.always = always  # one script whatever the distance (a caller that knows better than ``worth_it``)

    def worth_it(self, files: int, trips_per_file: int) -> bool:
        """True when ``files`` files done one by one (``trips_per_file`` round trips each) would cost more than
        one script: at a distance, always; next to the device (a loopback one), only for many files."""
        if self.always:
            return True
        if self._rtt is None:
            self._rtt = round_trip(self.base, self._top) or 0.0
        cost = self._script_cost if self._script_cost is not None else 2 * self._rtt + SCRIPT_START_GUESS
        return files * trips_per_file * self._rtt > cost

    def _run(self, script: bytes, timeout: float, max_bytes: int) -> bytes | None:
        """The runner's answer; None (file by file, as without it) when it cannot run or fails."""
        started = time.monotonic()
        try:
            output = self.runner(script, timeout, max_bytes)
        except Exception as exc:  # no connection, a refused host key...: the files' own backend says what is wrong
            logger.info("bulk device-file work unavailable (%s): file by file", exc)
            return None
        took = time.monotonic() - started
        if output is not None:
            self._script_cost = took if self._script_cost is None else min(self._script_cost, took)
        return output

    def records(self, paths: Sequence[str], max_bytes: int, timeout: float | None = None) -> dict[str, ReadRecord]:
        """What one script says of ``paths`` (each regular file read to ``max_bytes + 1``); {} if it cannot run."""
        paths = list(dict.fromkeys(paths))
        if not paths:
            return {}
        nonce = Nonce()
        limit = max(0, int(max_bytes)) + 1
        bound = 2 * limit + RECORD_OVERHEAD * len(paths) + 4096
        output = self._run(read_script(nonce, paths, limit), self.timeout if timeout is None else timeout, bound)
        if output is None:
            return {}
        found = parse_read(nonce, paths, output)
        if found is None:
            logger.info("the device lacks stat -c or head -c: reading its files one by one")
            return {}
        return found

    def prefetched(self, paths: Sequence[str], max_bytes: int, timeout: float | None = None) -> DeviceFS:
        """A view of ``base`` that knows ``paths`` as the device has them now (see the module docstring);
        ``base`` itself where one script would cost more (``worth_it``)."""
        if not self.worth_it(len(paths), READ_TRIPS):
            return self.base
        return Prefetched(self, self.records(paths, max_bytes, timeout))

    def read_many(self, paths: Sequence[str], max_bytes: int) -> dict[str, bytes | OSError]:
        """``DeviceFS.read_many`` in one script (the rules of ``boundedread.read_each``, on the view)."""
        return read_each(self.prefetched(paths, max_bytes), paths, max_bytes)

    def put_back_many(self, files: Sequence[tuple[str, bytes | None, int | None]]) -> dict[int, OSError | None]:
        """Put each (device path, content or None, mode) back in one script; each index's outcome.

        An index missing from the answer was not handled (the caller puts that file back itself).
        """
        if not files or not self.worth_it(len(files), RESTORE_TRIPS):
            return {}
        nonce = Nonce()
        output = self._run(restore_script(nonce, files), self.timeout, RECORD_OVERHEAD * len(files) + 4096)
        found = None if output is None else parse_restore(nonce, files, output)
        return found or {}


class Prefetched(_Delegating):
    """``fs`` (a ``BulkFS``) answering from what one script said of some paths; the rest from its backend."""

    def __init__(self, fs: BulkFS, records: dict[str, ReadRecord]) -> None:
        self.fs = fs
        self.base = fs.base
        self.where = fs.where
        self._records = records
        self._contained: dict[str, bool] = {}

    def lstat(self, path: str) -> FileStat:
        record = self._records.get(path)
        if record is None:
            return self.base.lstat(path)
        if record.error is not None:
            raise record.error
        assert record.info is not None
        return record.info

    def stat(self, path: str) -> FileStat:
        record = self._records.get(path)
        if record is None or record.info is None or record.info.is_symlink:
            return self.base.stat(path)
        return record.info

    def open_regular(self, path: str, *, follow: bool = False) -> AbstractContextManager[tuple[Reader, FileStat]]:
        record = self._records.get(path)
        if record is None or record.info is None or (follow and record.info.is_symlink):
            return self.base.open_regular(path, follow=follow)
        if record.info.is_symlink:
            return _failing(OSError(errno.ELOOP, ELOOP_TEXT, path))  # as open(O_NOFOLLOW): ELOOP
        if not record.info.is_regular:
            return _failing(NotRegularFile(f"{path} is not a regular file"))
        if record.open_error is not None:
            return _failing(record.open_error)
        if record.content is None:  # not read here: too big to read ahead
            return self.base.open_regular(path, follow=follow)
        return _opened(BytesReader(record.content), record.info)

    def contains(self, path: str) -> bool:
        record = self._records.get(path)
        if record is None or record.info is None or record.info.is_symlink:
            return self.base.contains(path)
        parent = posixpath.dirname(path)  # a file that is no link is where its directory is
        if parent not in self._contained:
            self._contained[parent] = self.base.contains(parent)
        return self._contained[parent]

    def read_many(self, paths: Sequence[str], max_bytes: int) -> dict[str, bytes | OSError]:
        return read_each(self, paths, max_bytes)


def prefetched(fs: DeviceFS, paths: Sequence[str], max_bytes: int, timeout: float | None = None) -> DeviceFS:
    """``fs.prefetched(...)`` where ``fs`` reads in bulk (a ``BulkFS``), else ``fs`` itself."""
    return fs.prefetched(paths, max_bytes, timeout) if isinstance(fs, BulkFS) else fs


@contextlib.contextmanager
def _opened(reader: Reader, info: FileStat) -> Iterator[tuple[Reader, FileStat]]:
    yield reader, info


@contextlib.contextmanager
def _failing(error: OSError) -> Iterator[tuple[Reader, FileStat]]:
    raise error
    yield  # pragma: no cover - a generator that raises on entry
