"""SFTP's status codes and asyncssh's connection errors as the ``OSError`` a local filesystem would raise.

The device-file chores tell a missing file (``ENOENT``), a refusal (``EACCES``) and a device that
went away (``ENOTCONN``: stop this glob, the rest would fail alike) apart by errno, on every backend.
SFTP version 3 (OpenSSH's and Dropbear's servers) has one code for every other failure: ``EIO``.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Awaitable, Callable
from typing import TypeVar

import asyncssh

T = TypeVar("T")

BY_CODE = {
    asyncssh.FX_EOF: errno.EIO,
    asyncssh.FX_NO_SUCH_FILE: errno.ENOENT,
    asyncssh.FX_PERMISSION_DENIED: errno.EACCES,
    asyncssh.FX_FAILURE: errno.EIO,
    asyncssh.FX_BAD_MESSAGE: errno.EBADMSG,
    asyncssh.FX_NO_CONNECTION: errno.ENOTCONN,
    asyncssh.FX_CONNECTION_LOST: errno.ENOTCONN,
    asyncssh.FX_OP_UNSUPPORTED: errno.EOPNOTSUPP,
    asyncssh.FX_NO_SUCH_PATH: errno.ENOENT,
    asyncssh.FX_FILE_ALREADY_EXISTS: errno.EEXIST,
    asyncssh.FX_WRITE_PROTECT: errno.EROFS,
    asyncssh.FX_NO_SPACE_ON_FILESYSTEM: errno.ENOSPC,
    asyncssh.FX_QUOTA_EXCEEDED: errno.EDQUOT,
    asyncssh.FX_DIR_NOT_EMPTY: errno.ENOTEMPTY,
    asyncssh.FX_NOT_A_DIRECTORY: errno.ENOTDIR,
    asyncssh.FX_FILE_IS_A_DIRECTORY: errno.EISDIR,
    asyncssh.FX_LINK_LOOP: errno.ELOOP,
    asyncssh.FX_INVALID_FILENAME: errno.EINVAL,
}


def as_oserror(exc: BaseException, path: str) -> OSError:
    """``exc`` (from asyncssh, or a lost connection) as an ``OSError`` about ``path``; ``exc`` itself otherwise."""
    if isinstance(exc, asyncssh.SFTPError):
        code = BY_CODE.get(exc.code, errno.EIO)
    elif isinstance(exc, asyncssh.Error | ConnectionError | EOFError):
        code = errno.ENOTCONN
    elif isinstance(exc, OSError):
        return exc
    else:
        raise exc
    return OSError(code, os.strerror(code), path)  # OSError picks the subclass: FileNotFoundError...


async def oserrors(call: Callable[[], Awaitable[T]], path: str) -> T:
    """Await ``call()``; what it raises comes out as ``as_oserror`` makes it."""
    try:
        return await call()
    except (asyncssh.Error, ConnectionError, EOFError) as exc:
        raise as_oserror(exc, path) from None
