"""What the device did during one test, from readings at its boundaries: log lines and ``+ ~ -`` file changes.

``WatchedTest`` holds a test's sources (log files, log commands, watched directories), the
reading at its start and the last one since. Each new reading turns into one ``Section`` per
source: the bytes each log gained (rotation, truncation, a file that appeared, the cap per
test), each command's output since the last reading (``{start}`` is that reading's device
clock), and the files created, modified (size, mtime or mode) and deleted under each
directory. ``whole`` gives the same from the test's start to its last reading.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from jumpstarter_driver_ssh_mount.common.defaults import DEVICE_CHANGES_SHOWN, DEVICE_LOG_CAP
from jumpstarter_driver_ssh_mount.devicefiles.devicestate import (
    CommandRead,
    Entry,
    Listing,
    LogFile,
    LogRead,
    LogRequest,
    Reading,
)

START = "{start}"
NOT_FOUND = 127  # the shell's exit status for a command it cannot find
EMPTY = ("(nothing appended)", "(no output)")
LOG, COMMAND, FILES = "device log", "device log", "device files changed"


@dataclass(frozen=True)
class Sources:
    """What to read on the device for a test: log files, log commands (``{start}`` in them), directories."""

    logs: tuple[str, ...] = ()
    commands: tuple[str, ...] = ()
    watch: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.logs or self.commands or self.watch)

    def titles(self) -> list[str]:
        """Every source's section title, in reading order."""
        return [f"{LOG}: {p}" for p in self.logs + self.commands] + [f"{FILES}: {d}" for d in self.watch]


@dataclass(frozen=True)
class Section:
    """One source's account of a stretch of the test: ``title`` (e.g. ``device log: /var/log/app.log``) and text."""

    title: str
    text: str


class WatchedTest:
    """One test's readings and what each source has shown so far (against the cap per test)."""

    def __init__(self, sources: Sources, start: Reading, cap: int = DEVICE_LOG_CAP) -> None:
        self.sources, self.cap = sources, cap
        self.start = self.last = start
        self.used = [0] * (len(sources.logs) + len(sources.commands))
        self.texts: list[list[str]] = [[] for _ in sources.titles()]

    def requests(self) -> tuple[list[LogRequest], list[tuple[str, int]], list[str]]:
        """The next reading's log requests, command lines (``{start}`` filled in) with caps, directories."""
        n = len(self.sources.logs)
        logs = [
            LogRequest(path, self._log_state(i), self.cap - self.used[i]) for i, path in enumerate(self.sources.logs)
        ]
        clock = self.last.clock or "0"
        commands = [(c.replace(START, clock), self.cap - self.used[n + i]) for i, c in enumerate(self.sources.commands)]
        return logs, commands, list(self.sources.watch)

    def _log_state(self, index: int) -> LogFile:
        read = self.last.logs.get(index)
        return read.now if read is not None else LogFile(None, 0)

    def advance(self, reading: Reading) -> list[Section]:
        """The sections for what happened between the last reading and ``reading`` (which becomes the last)."""
        texts = [self._log_text(i, reading.logs.get(i)) for i in range(len(self.sources.logs))]
        n = len(self.sources.logs)
        texts += [self._command_text(n + i, reading.commands.get(i)) for i in range(len(self.sources.commands))]
        texts += [
            changes(self.last.listings.get(i), reading.listings.get(i), d) for i, d in enumerate(self.sources.watch)
        ]
        self.last = reading
        for kept, text in zip(self.texts, texts, strict=True):
            kept.append(text)
        return [Section(t, x) for t, x in zip(self.sources.titles(), texts, strict=True)]

    def not_read(self, why: str) -> list[Section]:
        """Every source's section when a reading failed (the device gone, no answer)."""
        text = f"(not read: {why})"
        for kept in self.texts:
            kept.append(text)
        return [Section(t, text) for t in self.sources.titles()]

    def whole(self) -> list[Section]:
        """Each source's account from the test's start to its last reading (files: start against last)."""
        n = len(self.sources.logs) + len(self.sources.commands)
        texts = ["\n".join([t for t in kept if t not in EMPTY] or kept[:1]) for kept in self.texts[:n]]
        texts += [
            changes(self.start.listings.get(i), self.last.listings.get(i), d) for i, d in enumerate(self.sources.watch)
        ]
        return [Section(t, x) for t, x in zip(self.sources.titles(), texts, strict=True)]

    def _log_text(self, index: int, read: LogRead | None) -> str:
        if read is None:
            return "(not read: the device's answer had no section for it)"
        before = self._log_state(index)
        notes = []
        expected = before.size
        if read.now.ino is None:
            return "(the file does not exist on the device)" if before.ino is None else "(the file was removed)"
        if before.ino is None:
            notes.append("(the file appeared during the test: from its start)")
            expected = 0
        elif read.now.ino != before.ino or read.now.size < before.size:
            notes.append("(rotated: a new or truncated file, shown from its start)")
            expected = 0
        if self.used[index] >= self.cap and read.offset > expected:
            return _join(notes, f"(cap of {_kib(self.cap)} per test reached earlier: nothing more shown)")
        notes += self._cap_notes(index, read.offset - expected, len(read.data))
        return _join(notes, _text(read.data, clipped=read.offset > expected) or "(nothing appended)")

    def _command_text(self, index: int, read: CommandRead | None) -> str:
        if read is None:
            return "(not read: the device's answer had no section for it)"
        notes = []
        if self.last.clock is None:
            notes.append("(the device's clock was not known at the start: {start} was 0)")
        budget = self.cap - self.used[index]
        if budget <= 0:
            return f"(cap of {_kib(self.cap)} per test reached earlier: nothing more shown)"
        self.used[index] += len(read.output)
        full = len(read.output) >= budget
        if read.returncode == NOT_FOUND:
            notes.append("(the command is missing on the device: exit 127)")
        elif read.returncode and not full:
            notes.append(f"(the command exited with {read.returncode})")
        if full:
            notes.append(f"(cap of {_kib(self.cap)} per test reached: the rest of its output left out)")
        return _join(notes, _text(read.output, clipped=False) or "(no output)")

    def _cap_notes(self, index: int, left_out: int, shown: int) -> list[str]:
        self.used[index] += shown
        if left_out <= 0:
            return []
        return [f"(cap of {_kib(self.cap)} per test reached: the first {left_out} bytes of these lines left out)"]


def changes(before: Listing | None, after: Listing | None, directory: str, shown: int = DEVICE_CHANGES_SHOWN) -> str:
    """``+ created``, ``~ modified (size, mtime, mode)``, ``- deleted`` under ``directory``, sorted, capped."""
    if before is None or after is None:
        return "(not read: the device's answer had no section for it)"
    if before.cut or after.cut:
        return f"(not compared: {directory} holds too many files to list)"
    notes = []
    if before.missing and after.missing:
        return f"({directory} does not exist on the device)"
    if before.missing or after.missing:
        notes.append(f"({directory} was {'created' if before.missing else 'removed'})")
    lines = []
    for path in sorted(before.entries.keys() | after.entries.keys()):
        old, new = before.entries.get(path), after.entries.get(path)
        if old is None and new is not None:
            lines.append(f"+ {_name(path, new)}")
        elif new is None and old is not None:
            lines.append(f"- {_name(path, old)}")
        elif old is not None and new is not None and (what := _modified(old, new)):
            lines.append(f"~ {_name(path, new)} ({what})")
    if len(lines) > shown:
        lines[shown:] = [f"... and {len(lines) - shown} more"]
    return _join(notes, "\n".join(lines) or "(no changes)")


def _modified(old: Entry, new: Entry) -> str:
    """What changed: a directory's size and mtime change with its files, so only its mode counts."""
    parts = []
    if old.kind != new.kind:
        parts.append(f"type {old.kind} -> {new.kind}")
    if old.size != new.size and new.kind != "d":
        parts.append(f"size {old.size} -> {new.size}")
    if old.mtime != new.mtime and new.kind != "d" and old.size == new.size:
        parts.append("mtime")
    if old.mode != new.mode:
        parts.append(f"mode {old.mode} -> {new.mode}")
    return ", ".join(parts)


def _name(path: str, entry: Entry) -> str:
    shown = path.encode("unicode_escape").decode() if not path.isprintable() else path
    return shown + ("/" if entry.kind == "d" else "")


def _text(data: bytes, *, clipped: bool) -> str:
    text = data.decode(errors="replace")
    if clipped and "\n" in text:
        text = text.split("\n", 1)[1]  # the first line was cut in the middle
    return text.rstrip("\n")


def _join(notes: Sequence[str], body: str) -> str:
    return "\n".join([*notes, body])


def _kib(n: int) -> str:
    return f"{n / 1024:g} KiB"
