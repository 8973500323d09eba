"""One shell script reads everything the device's logs and watched directories hold: built and parsed here.

A reading gives the device's clock, each log file's inode and size (and the bytes appended
since an earlier reading), each log command's output, and each watched directory's listing
(type, mode, size, mtime of every entry). It runs in the shell of ``remote_shell`` and
prints sections between marker lines ``<nonce> KIND INDEX ...``, the nonce new for every
reading. It uses only POSIX sh and what BusyBox has: ``find -printf`` where the device's
find has it (GNU), else ``find -exec stat -c ... {} +``; odd names (newlines) are listed
NUL-separated, never parsed from lines. Nothing here runs anything or knows pytest.
"""

from __future__ import annotations

import os
import re
import shlex
import stat
from collections.abc import Sequence
from dataclasses import dataclass, field

#: Sent once when the shell starts: quiet stderr, the C locale, and the functions the readings call.
PREAMBLE = r"""exec 2>/dev/null
export LC_ALL=C
NL='
'
if find /. -maxdepth 0 -printf '' >/dev/null 2>&1; then _jmp_gnu=1; else _jmp_gnu=; fi
_jmp_st() {
  stat -L -c '%i %s' -- "$1" 2>/dev/null || { set -- $(ls -Lind -- "$1" 2>/dev/null) && [ -n "$1" ] && echo "$1 $6"; }
}
_jmp_stats() {
  printf '\n%s STATS\n' "$1"; shift
  if command -v stat >/dev/null; then stat -L -c '%i %s %n' -- "$@"; return; fi
  for f; do set -- $(ls -Lind -- "$f" 2>/dev/null) && [ -n "$1" ] && printf '%s %s %s\n' "$1" "$6" "$f"; done
}
_jmp_log() {
  set -- "$1" "$2" "$3" "$4" "$5" "$6" $(_jmp_st "$3")
  if [ -z "$7" ]; then printf '\n%s LOG %s - - 0\n' "$1" "$2"; return; fi
  if [ "$7" = "$4" ] && [ "$8" -ge "$5" ]; then o=$5; else o=0; fi
  n=$(($8 - o)); if [ "$n" -gt "$6" ]; then o=$(($8 - $6)); n=$6; fi
  printf '\n%s LOG %s %s %s %s\n' "$1" "$2" "$7" "$8" "$o"
  if [ "$n" -gt 0 ]; then tail -c +$((o + 1)) -- "$3" | head -c "$n"; fi
}
_jmp_cmd() {
  printf '\n%s CMD %s\n' "$1" "$2"
  { _jmp_rc=$( { { { eval "$4"; } 2>&1 </dev/null; echo $? >&4; } | head -c "$3" >&3; } 4>&1 ); } 3>&1
  printf '\n%s RC %s %s\n' "$1" "$2" "$_jmp_rc"
}
_jmp_list() {
  if [ ! -d "$3" ]; then printf '\n%s NODIR %s\n' "$1" "$2"; return; fi
  if [ -n "$_jmp_gnu" ]; then
    printf '\n%s WATCH %s gnu\n' "$1" "$2"
    find "$3/." -printf '%y %m %s %T@ %P\0' | head -c "$4"
  else
    printf '\n%s WATCH %s stat\n' "$1" "$2"
    find "$3/." ! -path "*$NL*" -exec stat -c '%f %s %Y %n' -- {} + | head -c "$4"
    printf '\n%s ODDNAMES %s\n' "$1" "$2"
    find "$3/." -path "*$NL*" -exec sh -c 'for f; do printf "%s %s\0" "$(stat -c "%f %s %Y" -- "$f")" "$f"; done' \
      sh {} + | head -c "$4"
  fi
}
"""


def ready_script(nonce: str) -> bytes:
    """The preamble, then a line saying the shell is ready."""
    return (PREAMBLE + f"printf '%s READY\\n' {nonce}\n").encode()


def ready_marker(nonce: str) -> bytes:
    """The end of ``ready_script``'s reply."""
    return f"{nonce} READY\n".encode()


@dataclass(frozen=True)
class LogFile:
    """A log file's identity and length; ``ino`` None when it does not exist."""

    ino: str | None
    size: int


@dataclass(frozen=True)
class LogRead:
    """A log file as read: its state now, and ``data`` from byte ``offset`` on (empty for a stat only)."""

    now: LogFile
    offset: int
    data: bytes = b""


@dataclass(frozen=True)
class CommandRead:
    """A log command's output (stdout and stderr, capped) and its exit status (None if unknown)."""

    output: bytes
    returncode: int | None


@dataclass(frozen=True)
class Entry:
    """One file under a watched directory: type (f, d, l, ...), permission bits (octal), size, mtime."""

    kind: str
    mode: str
    size: int
    mtime: str


@dataclass(frozen=True)
class Listing:
    """A watched directory's entries by relative path; ``missing``: not a directory; ``cut``: too long to list."""

    entries: dict[str, Entry] = field(default_factory=dict)
    missing: bool = False
    cut: bool = False


@dataclass(frozen=True)
class LogRequest:
    """Read ``path``: ``since`` its state at an earlier reading; ``budget`` bytes at most (None: state only)."""

    path: str
    since: LogFile | None = None
    budget: int | None = None


@dataclass
class Reading:
    """What one script printed, by kind and index."""

    clock: str | None = None
    logs: dict[int, LogRead] = field(default_factory=dict)
    commands: dict[int, CommandRead] = field(default_factory=dict)
    listings: dict[int, Listing] = field(default_factory=dict)


def reading_script(
    nonce: str,
    logs: Sequence[LogRequest] = (),
    commands: Sequence[tuple[str, int]] = (),
    watch: Sequence[str] = (),
    listing_cap: int = 1 << 20,
    *,
    clock: bool = True,
) -> bytes:
    """One compound command reading the clock, ``logs``, ``commands`` (line, byte cap) and ``watch`` dirs.

    A log request without a budget gets only its state (all of them with one ``stat``).
    """
    q = shlex.quote
    parts = [f"printf '\\n%s BEGIN\\n' {nonce}"]
    if clock:
        parts += [f"printf '\\n%s CLOCK\\n' {nonce}", "date +%s.%N"]
    states_only = [log.path for log in logs if log.budget is None]
    if states_only:  # one process for every log's inode and size
        parts.append(f"_jmp_stats {nonce} " + " ".join(q(path) for path in states_only))
    for i, log in enumerate(logs):
        if log.budget is None:
            continue
        since = log.since or LogFile(None, 0)
        parts.append(f"_jmp_log {nonce} {i} {q(log.path)} {since.ino or '-'} {since.size} {max(log.budget, 0)}")
    for i, (line, cap) in enumerate(commands):
        parts.append(f"_jmp_cmd {nonce} {i} {max(cap, 0)} {q(line)}")
    for i, directory in enumerate(watch):
        parts.append(f"_jmp_list {nonce} {i} {q(os.path.normpath(directory))} {listing_cap}")
    parts.append(f"printf '\\n%s END\\n' {nonce}")
    return ("{ " + "\n".join(parts) + "\n} </dev/null\n").encode()


def end_marker(nonce: str) -> bytes:
    """The end of a reading's reply."""
    return f"\n{nonce} END\n".encode()


def parse_reading(reply: bytes, nonce: str, listing_cap: int = 1 << 20, logs: Sequence[LogRequest] = ()) -> Reading:
    """The sections of ``reply`` (what ``reading_script`` printed for ``logs``...); malformed ones are left out."""
    marker = re.compile(rb"\n" + re.escape(nonce.encode()) + rb" ([A-Z]+) ?([^\n]*)\n")
    matches = list(marker.finditer(reply))
    reading = Reading()
    held: dict[int, bytes] = {}  # parsed once all is read: odd names by listing index; -1: the log states
    for m, after in zip(matches, [*matches[1:], None], strict=True):
        kind, fields = m.group(1).decode(), m.group(2).decode(errors="replace").split()
        body = reply[m.end() : after.start() if after else len(reply)]
        try:
            _take(reading, held, kind, fields, body, listing_cap)
        except (ValueError, IndexError):
            continue  # a malformed section (a hostile or broken device): left out
    for index, body in held.items():
        if index in reading.listings:
            reading.listings[index].entries.update(_records(body, stat_raw=True, split_at=b"\0"))
    states = _states(held.get(-1, b""))
    for i, log in enumerate(logs):
        if log.budget is None:
            now = states.get(log.path, LogFile(None, 0))
            reading.logs[i] = LogRead(now, now.size)
    return reading


def _states(body: bytes) -> dict[str, LogFile]:
    """``stat -c '%i %s %n'`` lines -> the state of each named file."""
    found = {}
    for line in body.decode(errors="replace").splitlines():
        fields = line.split(" ", 2)
        if len(fields) == 3 and fields[0].isdigit() and fields[1].isdigit():
            found[fields[2]] = LogFile(fields[0], int(fields[1]))
    return found


def _take(reading: Reading, held: dict[int, bytes], kind: str, fields: list[str], body: bytes, cap: int) -> None:
    index = int(fields[0]) if fields else -1
    if kind == "CLOCK":
        found = re.match(rb"\s*(\d+)(\.\d{1,6})?", body)  # microseconds: what journalctl --since reads
        reading.clock = found.group(1).decode() + (found.group(2) or b"").decode() if found else None
    elif kind == "LOG":
        ino, size, offset = fields[1], fields[2], int(fields[3])
        now = LogFile(None, 0) if ino == "-" else LogFile(ino, int(size))
        reading.logs[index] = LogRead(now, offset, body)
    elif kind == "CMD":
        reading.commands[index] = CommandRead(body, None)
    elif kind == "RC" and index in reading.commands:
        code = int(fields[1]) if len(fields) > 1 and fields[1].isdigit() else None
        reading.commands[index] = CommandRead(reading.commands[index].output, code)
    elif kind == "NODIR":
        reading.listings[index] = Listing(missing=True)
    elif kind == "WATCH":
        gnu = fields[1:2] == ["gnu"]
        entries = _records(body, stat_raw=not gnu, split_at=b"\0" if gnu else b"\n")
        reading.listings[index] = Listing(entries=entries, cut=len(body) >= cap)
    elif kind == "ODDNAMES":
        held[index] = body
    elif kind == "STATS":
        held[-1] = body


def _records(body: bytes, *, stat_raw: bool, split_at: bytes) -> dict[str, Entry]:
    """Entries from ``find -printf '%y %m %s %T@ %P\\0'`` records, or ``stat -c '%f %s %Y %n'`` ones."""
    entries: dict[str, Entry] = {}
    for record in body.split(split_at):
        fields = record.split(b" ", 4 if not stat_raw else 3)
        try:
            if stat_raw:
                raw, size, mtime, name = int(fields[0], 16), fields[1], fields[2], fields[3]
                kind, mode = _kind(raw), format(stat.S_IMODE(raw), "o")
                name = _relative(name)
            else:
                kind, mode, size, mtime, name = fields[0].decode(), fields[1].decode(), *fields[2:]
            if not name:
                continue  # the watched directory itself
            entries[os.fsdecode(name)] = Entry(kind, mode, int(size), mtime.decode())
        except (ValueError, IndexError):
            continue  # the root itself, a cut-off last record, or noise
    return entries


def _relative(name: bytes) -> bytes:
    """``DIR/./sub/file`` -> ``sub/file`` (``stat %n`` names the path as find passed it); the root itself: error."""
    _, sep, rest = name.partition(b"/./")
    if not sep or not rest:
        raise ValueError("the watched directory itself")
    return rest


_KINDS = {stat.S_IFREG: "f", stat.S_IFDIR: "d", stat.S_IFLNK: "l", stat.S_IFIFO: "p", stat.S_IFSOCK: "s"}


def _kind(raw_mode: int) -> str:
    return _KINDS.get(stat.S_IFMT(raw_mode), "c" if stat.S_ISCHR(raw_mode) else "b")
