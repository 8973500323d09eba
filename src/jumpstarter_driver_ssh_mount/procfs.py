"""Facts about processes, read from /proc (Linux); empty answers elsewhere. Imports nothing heavy."""

from __future__ import annotations

import contextlib
from pathlib import Path

PROC = Path("/proc")


def _stat_fields(pid: int | str) -> list[str] | None:
    """``/proc/PID/stat`` from the state field on (the command name may hold spaces)."""
    try:
        return (PROC / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def start_time(pid: int) -> int | None:
    """When a live (non-zombie) process started, to tell it from a later one with its PID."""
    fields = _stat_fields(pid)
    return None if fields is None or fields[0] == "Z" else int(fields[19])


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
    members = []
    with contextlib.suppress(OSError):
        for entry in PROC.iterdir():
            if entry.name.isdigit():
                fields = _stat_fields(entry.name)  # state ppid pgrp ...
                if fields is not None and fields[0] != "Z" and int(fields[2]) == pgid:
                    members.append(int(entry.name))
    return members
