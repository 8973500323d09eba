"""The device shell scripts of bulk file work, and what their output means.

One script reads many files (``read_script``): for each path, ``stat -c`` of the path itself (a
symlink is not followed), and for a regular file that can be read, at most ``limit`` bytes of
it (``head -c``). One script puts many files back (``restore_script``): content written with
``printf`` octal escapes, the mode set where it differs, a file absent before removed again.
Both need only a POSIX shell, ``stat -c``, ``head -c``, ``rm`` and ``chmod`` (GNU coreutils or
BusyBox with its default features); a device without them answers ``NOTOOLS`` first and the
caller works file by file.

Every record of the output starts with a random marker (``Nonce``) and the index of its path,
so no path, however odd (newlines, quotes, bytes that are not UTF-8), is ever parsed from the
output: paths go into the script single-quoted, and come back as indexes. Content is read to
the marker that follows it. Only a regular file is ever opened: never a FIFO or a device
(a race that swaps one in between the ``stat`` and the read is bounded by the caller's timeout).
"""

from __future__ import annotations

import errno
import os
import secrets
import stat
from collections.abc import Sequence
from dataclasses import dataclass

from jumpstarter_driver_ssh_mount.devicefiles.fs import FileStat

#: Answered first by a device that lacks ``stat -c`` or ``head -c``.
NO_TOOLS = b"NOTOOLS"
#: Bytes of content per ``printf`` in a restore script.
PRINTF_CHUNK = 2048
_SAFE = frozenset(b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 .,_/:=+-@#")
_ERRNO_BY_TEXT = {os.strerror(code): code for code in sorted(errno.errorcode, reverse=True)}
_ERRNO_BY_TEXT |= {"Directory nonexistent": errno.ENOENT, "nonexistent directory": errno.ENOENT}  # dash, BusyBox sh

_READ_PRELUDE = b"""\
command -v stat >/dev/null 2>&1 && command -v head >/dev/null 2>&1 && stat -c %f / >/dev/null 2>&1 \\
  && head -c 1 /dev/null >/dev/null 2>&1 || { printf '%s NOTOOLS\\n' "$N"; exit 0; }
r() {
  if s=$(stat -c '%f %s %Y %h %u %g' -- "$2" 2>&1 </dev/null); then
    printf '%s %s S %s\\n' "$N" "$1" "$s"
    case $s in 8???' '*) ;; *) return 0 ;; esac
    z=${s#* }; z=${z%% *}
    if [ $((t + z)) -gt "$M" ]; then printf '%s %s L\n' "$N" "$1"; return 0; fi
    t=$((t + z))
    if [ ! -r "$2" ]; then printf '%s %s X Permission denied\\n' "$N" "$1"; return 0; fi
    head -c "$M" -- "$2" </dev/null 2>/dev/null
    printf '%s %s D %s\\n' "$N" "$1" "$?"
  else
    printf '%s %s E %s\\n' "$N" "$1" "$s" | tr '\\n' ' '; printf '\\n'
  fi
}
"""

_RESTORE_PRELUDE = b"""\
command -v stat >/dev/null 2>&1 && stat -c %a / >/dev/null 2>&1 || { printf '%s NOTOOLS\\n' "$N"; exit 0; }
f() { printf '%s %s R %s\\n' "$N" "$1" "$2" | tr '\\n' ' '; printf '\\n'; }
"""


def quote(path: str) -> bytes:
    """``path`` (a device path, ``os.fsdecode``'d) as one single-quoted shell word, byte for byte."""
    return b"'" + os.fsencode(path).replace(b"'", b"'\\''") + b"'"


def error_of(text: str, path: str) -> OSError:
    """The ``OSError`` a message of ``stat``/``sh`` stands for (its last ``: `` part names the errno's text)."""
    said = text.strip().rsplit(": ", 1)[-1]
    code = _ERRNO_BY_TEXT.get(said, errno.EISDIR if said.endswith("is a directory") else errno.EIO)
    return OSError(code, os.strerror(code) if code != errno.EIO else said or os.strerror(code), path)


class Nonce:
    """A fresh random marker for one script's records."""

    def __init__(self) -> None:
        self.text = secrets.token_hex(16).encode()

    def record(self, index: int, kind: bytes) -> bytes:
        return self.text + b" " + str(index).encode() + b" " + kind + b" "


@dataclass
class ReadRecord:
    """What the device said of one path: its ``stat``, or why not; its content (to the limit), or why not."""

    info: FileStat | None = None
    error: OSError | None = None  # lstat failed
    content: bytes | None = None  # a regular file, read (up to the limit)
    open_error: OSError | None = None  # a regular file that could not be read


def read_script(nonce: Nonce, paths: Sequence[str], limit: int) -> bytes:
    """The script that ``stat``s each path and reads at most ``limit`` bytes of each regular file.

    A file whose claimed size would take the claimed sizes read so far past ``limit`` is not read
    (an ``L`` record: the caller reads it itself, if at all).
    """
    lines = [b"N=" + nonce.text, b"M=" + str(int(limit)).encode(), b"t=0", _READ_PRELUDE]
    lines += [b"r " + str(i).encode() + b" " + quote(path) for i, path in enumerate(paths)]
    return b"\n".join(lines) + b"\n"


def parse_read(nonce: Nonce, paths: Sequence[str], output: bytes) -> dict[str, ReadRecord] | None:
    """Each path's record from ``read_script``'s output; None when the device lacks the tools.

    A path whose record is missing or cut off (the output was truncated) is left out.
    """
    if output.startswith(nonce.text + b" " + NO_TOOLS):
        return None
    found: dict[str, ReadRecord] = {}
    position = 0
    for index, path in enumerate(paths):
        head = nonce.record(index, b"S")
        if output.startswith(head, position):
            end = output.find(b"\n", position)
            if end < 0:
                break
            info = _stat_of(output[position + len(head) : end].decode(errors="replace"), path)
            position = end + 1
            record = ReadRecord(info=info)
            if info.is_regular:
                position = _read_content(nonce, index, path, output, position, record)
                if position < 0:
                    break
            found[path] = record
            continue
        error = nonce.record(index, b"E")
        if not output.startswith(error, position):
            break
        end = output.find(b"\n", position)
        if end < 0:
            break
        found[path] = ReadRecord(error=error_of(output[position + len(error) : end].decode(errors="replace"), path))
        position = end + 1
    return found


def _read_content(nonce: Nonce, index: int, path: str, output: bytes, position: int, record: ReadRecord) -> int:
    """Fill ``record``'s content or open error from ``position``; where the next record starts (-1: cut off)."""
    later = nonce.record(index, b"L")[:-1] + b"\n"
    if output.startswith(later, position):
        return position + len(later)  # neither content nor error: not read here
    denied = nonce.record(index, b"X")
    if output.startswith(denied, position):
        end = output.find(b"\n", position)
        record.open_error = OSError(errno.EACCES, os.strerror(errno.EACCES), path)
        return -1 if end < 0 else end + 1
    marker = nonce.record(index, b"D")
    done = output.find(marker, position)
    if done < 0:
        return -1
    end = output.find(b"\n", done)
    if end < 0:
        return -1
    status = output[done + len(marker) : end].strip()
    if status == b"0":
        record.content = output[position:done]
    else:
        record.open_error = OSError(errno.EIO, os.strerror(errno.EIO), path)
    return end + 1


def _stat_of(text: str, path: str) -> FileStat:
    try:
        mode, size, mtime, nlink, uid, gid = text.split()
        return FileStat(int(mode, 16), int(size), int(mtime) * 1_000_000_000, int(nlink), int(uid), int(gid))
    except ValueError:
        raise OSError(errno.EIO, f"unexpected stat output {text[:80]!r}", path) from None


def printf_words(content: bytes) -> list[bytes]:
    """``content`` as ``printf`` format words (single-quoted, octal escapes), ``PRINTF_CHUNK`` bytes each."""
    words = []
    for start in range(0, len(content), PRINTF_CHUNK):
        part = content[start : start + PRINTF_CHUNK]
        escaped = b"".join(bytes([c]) if c in _SAFE else b"\\%03o" % c for c in part)
        words.append(b"'" + escaped + b"'")
    return words


def restore_script(nonce: Nonce, files: Sequence[tuple[str, bytes | None, int | None]]) -> bytes:
    """The script that puts each (device path, content or None: absent, mode) back; one ``R`` record each."""
    lines = [b"N=" + nonce.text, _RESTORE_PRELUDE]
    for index, (path, content, mode) in enumerate(files):
        i, p = str(index).encode(), quote(path)
        if content is None:
            lines.append(
                b"e=$( { if [ -e " + p + b" ] || [ -L " + p + b" ]; then rm -f -- " + p + b"; fi; } 2>&1 </dev/null )"
                b" && f " + i + b" 0 || f " + i + b' "${e:-failed}"'
            )
            continue
        body = [b"e=$( {"]
        body.append(b"if [ -L " + p + b" ]; then rm -f -- " + p + b" || exit 1; fi")
        body.append(b": > " + p + b" || exit 1")
        body += [b"printf " + word + b" >> " + p + b" || exit 1" for word in printf_words(content)]
        if mode is not None:
            octal = b"%o" % stat.S_IMODE(mode)
            body.append(b'[ "$(stat -c %a -- ' + p + b')" = ' + octal + b" ] || chmod " + octal + b" -- " + p)
        body.append(b"} 2>&1 </dev/null ) && f " + i + b" 0 || f " + i + b' "${e:-failed}"')
        lines.append(b"\n".join(body))
    return b"\n".join(lines) + b"\n"


def parse_restore(nonce: Nonce, files: Sequence[tuple[str, bytes | None, int | None]], output: bytes):
    """Each file's outcome from ``restore_script``'s output: None (put back) or the ``OSError``.

    None for the whole answer when the device lacks the tools; a file with no record is left out.
    """
    if output.startswith(nonce.text + b" " + NO_TOOLS):
        return None
    found: dict[int, OSError | None] = {}
    for line in output.split(b"\n"):
        if not line.startswith(nonce.text + b" "):
            continue
        parts = line.split(b" ", 3)
        if len(parts) < 4 or parts[2] != b"R" or not parts[1].isdigit():
            continue
        index = int(parts[1])
        if index >= len(files):
            continue
        said = parts[3].decode(errors="replace").strip()
        found[index] = None if said == "0" else error_of(said, files[index][0])
    return found
