"""The one /proc process scanner (Linux); empty answers elsewhere. Imports nothing heavy.

Everything is read from ``/proc`` links and small text files, never from a mount, so it
is safe to call while a FUSE filesystem hangs.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

PROC = Path("/proc")


@dataclass(frozen=True)
class ProcessInfo:
    """One process, as ``/proc/PID/stat`` described it when it was scanned."""

    pid: int
    name: str  # the command name (``/proc/PID/comm``)
    state: str  # "R", "S", "Z", ...
    ppid: int
    pgrp: int
    start_time: int  # clock ticks after boot; tells it from a later process with its PID

    def argv(self) -> list[str]:
        """The command line (``/proc/PID/cmdline`` split on NUL); [] if unreadable or a kernel thread."""
        try:
            raw = (PROC / str(self.pid) / "cmdline").read_bytes()
        except OSError:
            return []
        if not raw:
            return []
        return [arg.decode(errors="replace") for arg in raw.removesuffix(b"\0").split(b"\0")]

    def open_paths(self) -> list[str]:
        """Where its cwd, root and every open file descriptor point (unreadable links skipped)."""
        base = PROC / str(self.pid)
        links = [base / "cwd", base / "root"]
        with contextlib.suppress(OSError):
            links += list((base / "fd").iterdir())
        paths = []
        for link in links:
            with contextlib.suppress(OSError):
                paths.append(os.readlink(link))
        return paths


def _read(pid: int | str) -> ProcessInfo | None:
    """Parse ``/proc/PID/stat``; the name sits in parentheses and may hold spaces or ')'."""
    try:
        text = (PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    head, sep, tail = text.rpartition(")")
    fields = tail.split()
    if not sep or len(fields) < 20:
        return None
    return ProcessInfo(
        pid=int(pid),
        name=head.partition("(")[2],
        state=fields[0],
        ppid=int(fields[1]),
        pgrp=int(fields[2]),
        start_time=int(fields[19]),
    )


def processes(*, include_zombies: bool = False) -> Iterator[ProcessInfo]:
    """Every process visible in ``/proc`` (live ones only, unless ``include_zombies``)."""
    try:
        entries = [entry.name for entry in PROC.iterdir() if entry.name.isdigit()]
    except OSError:
        return
    for pid in entries:
        info = _read(pid)
        if info is not None and (include_zombies or info.state != "Z"):
            yield info


def start_time(pid: int) -> int | None:
    """When a live (non-zombie) process started, to tell it from a later one with its PID."""
    info = _read(pid)
    return None if info is None or info.state == "Z" else info.start_time


def child_pids(pid: int) -> list[int]:
    """Direct children of ``pid``, whichever of its threads started them."""
    children: list[int] = []
    with contextlib.suppress(OSError):
        for task in (PROC / str(pid) / "task").iterdir():
            with contextlib.suppress(OSError):
                children += [int(p) for p in (task / "children").read_text().split()]
    return children


def live_group_members(pgid: int) -> list[int]:
    """PIDs of live (non-zombie) processes in process group ``pgid``."""
    return [p.pid for p in processes() if p.pgrp == pgid]
