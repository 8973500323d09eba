"""Many device files over SFTP at once: every look and read in flight together, the cap held in order.

``SftpFS.read_many`` would otherwise cost a few round trips per file (look, open, read), one file after
the other. Here all files are looked at together, then those whose reported size fits what is left of
the cap are read together, each at most its reported size plus one byte, so the bytes in flight stay
within the cap (plus one byte a file). What this cannot settle exactly (a file over the cap by its
report, one that held more than it reported, ``/proc``'s size-0 files, a lost connection) is read
the ordinary way, one after the other: the result is ``boundedread.read_each``'s, file for file.
"""

from __future__ import annotations

import asyncio
import errno
import os
from typing import Any

import asyncssh

from jumpstarter_driver_ssh_mount.devicefiles.fs import FileStat, NotRegularFile
from jumpstarter_driver_ssh_mount.sftp.errno_map import as_oserror

IN_FLIGHT = 32  # files read at once
SFTP_ERRORS = (asyncssh.Error, ConnectionError, EOFError)


async def _look(sftp: asyncssh.SFTPClient, path: str, to_stat: Any) -> FileStat | OSError:
    try:
        info: FileStat = to_stat(await sftp.lstat(os.fsencode(path)))
    except SFTP_ERRORS as exc:
        return as_oserror(exc, path)
    if info.is_symlink:
        return OSError(errno.ELOOP, os.strerror(errno.ELOOP), path)  # as ``open_regular`` without ``follow``
    if not info.is_regular:
        return NotRegularFile(f"{path} is not a regular file")
    return info


async def _read(sftp: asyncssh.SFTPClient, path: str, size: int, gate: asyncio.Semaphore, to_stat: Any) -> Any:
    """At most ``size + 1`` bytes of ``path``; None when what was opened is not a regular file any more."""
    async with gate:
        try:
            handle: Any = await sftp.open(os.fsencode(path), "rb")
            try:
                if not to_stat(await handle.stat()).is_regular:
                    return None
                data: bytes = await handle.read(size + 1, 0)
                return data
            finally:
                await handle.close()
        except SFTP_ERRORS as exc:
            return as_oserror(exc, path)


async def fetch_many(
    sftp: asyncssh.SFTPClient, paths: list[str], max_bytes: int, to_stat: Any
) -> dict[str, bytes | OSError | None]:
    """What the looks and reads in flight settle: a path's bytes (no more than it reported), its error, or
    None (read it the ordinary way)."""
    looks = await asyncio.gather(*(_look(sftp, path, to_stat) for path in paths))
    settled: dict[str, bytes | OSError | None] = {}
    sizes: dict[str, int] = {}
    left = max_bytes
    for path, look in zip(paths, looks, strict=True):
        if isinstance(look, OSError):
            settled[path] = look
        elif look.size <= left and path not in sizes:
            sizes[path] = look.size
            left -= look.size
        else:
            settled[path] = None
    gate = asyncio.Semaphore(IN_FLIGHT)
    reads = await asyncio.gather(*(_read(sftp, path, size, gate, to_stat) for path, size in sizes.items()))
    for (path, size), got in zip(sizes.items(), reads, strict=True):
        if isinstance(got, bytes) and (len(got) > size or size == 0):
            got = None  # it held more than it said (or says 0, as /proc does): read the ordinary way
        settled[path] = got
    return settled


def lost_connection(settled: dict[str, bytes | OSError | None]) -> bool:
    """True when the connection went away while the files were read (the ordinary way logs in again)."""
    return any(isinstance(got, OSError) and got.errno == errno.ENOTCONN for got in settled.values())
