"""Is the process that wrote a record still alive, and can this process tell? The one rule.

Every record the project leaves on disk for a later process to judge (a run directory's
owner record, a lease record, a restore journal, a known-hosts folder) names the process
that wrote it with ``ProcessIdentity``: its pid and start time, the PID namespace those
numbers belong to (the inode of ``/proc/self/ns/pid``), the boot (``/proc/sys/kernel/random/boot_id``)
and the host name. ``judge`` tells from it what a walker may do:

- this host name, this boot and this PID namespace: alive while a process with that pid and
  start time exists, else dead (records written before the other fields were kept are judged
  this way too, by pid and start time alone, as they always were);
- this host name, another boot, and the record was last written before this machine booted:
  **dead** (the machine has rebooted since; the time check keeps another machine of the same
  name that shares the directory from looking like an earlier boot);
- anything else (a container in another PID namespace sharing the temp dir, another host
  sharing the directory): **unseen**. An unseen record is never acted on: not swept, not
  released, not taken over.

Linux only in full: elsewhere there is no ``/proc``, every start time is unknown, and every
record but one of this very process is unseen.
"""

from __future__ import annotations

import contextlib
import enum
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass

from jumpstarter_driver_ssh_mount.common.procfs import PROC, start_time

PID_NAMESPACE = PROC / "self" / "ns" / "pid"
BOOT_ID = PROC / "sys" / "kernel" / "random" / "boot_id"


def _pid_namespace() -> int | None:
    """The inode of this process's PID namespace; None when /proc shows another one (or none)."""
    try:
        if os.readlink(PROC / "self") != str(os.getpid()):
            return None  # /proc was mounted for another PID namespace: its pids are not ours
        return os.stat(PID_NAMESPACE).st_ino
    except OSError:
        return None


def boot_time() -> float | None:
    """When this machine booted (``btime`` in ``/proc/stat``, seconds since the epoch)."""
    with contextlib.suppress(OSError, ValueError):
        for line in (PROC / "stat").read_text().splitlines():
            if line.startswith("btime "):
                return float(line.split()[1])
    return None


def _boot_id() -> str | None:
    with contextlib.suppress(OSError):
        return BOOT_ID.read_text().strip() or None
    return None


@dataclass(frozen=True)
class ProcessIdentity:
    """What proves a process is the same one: pid, start time, PID namespace, boot and host name."""

    pid: int
    start: int | None  # clock ticks after boot (``/proc/PID/stat``); None when unknown
    pidns: int | None = None  # inode of the PID namespace; None in records written before it was kept
    boot: str | None = None
    host: str | None = None

    @classmethod
    def current(cls) -> ProcessIdentity:
        """This process now."""
        pidns = _pid_namespace()
        pid = os.getpid()
        return cls(pid, start_time(pid) if pidns is not None else None, pidns, _boot_id(), os.uname().nodename)

    @classmethod
    def from_record(cls, record: Mapping[str, object]) -> ProcessIdentity | None:
        """The identity stored in ``record`` (the fields ``to_record`` wrote); None without a pid."""
        try:
            pid = int(str(record["pid"]))
            start = record.get("start")
            pidns = record.get("pidns")
            return cls(
                pid,
                None if start is None else int(str(start)),
                None if pidns is None else int(str(pidns)),
                _text(record.get("boot")),
                _text(record.get("host")),
            )
        except (KeyError, TypeError, ValueError):
            return None

    def to_record(self) -> dict[str, object]:
        """The fields every record carries (merged into its own): pid, start, pidns, boot, host."""
        return asdict(self)

    @property
    def legacy(self) -> bool:
        """True for a record written before namespace, boot and host were kept (judged by pid and start)."""
        return self.pidns is None and self.boot is None and self.host is None


def _text(value: object) -> str | None:
    return None if value is None else str(value)


class Liveness(enum.Enum):
    """What a walker may do with a record: act on it (dead), leave it (alive, unseen)."""

    ALIVE = "alive"
    DEAD = "dead"
    UNSEEN = "unseen"


@dataclass(frozen=True)
class Verdict:
    """``judge``'s answer: the record's process, whether it lives, and (unseen) why this process cannot tell."""

    owner: ProcessIdentity
    liveness: Liveness
    why: str = ""  # for UNSEEN: "pid 7 in PID namespace 4026532301", "pid 7 on host build-2"

    @property
    def alive(self) -> bool:
        return self.liveness is Liveness.ALIVE

    @property
    def dead(self) -> bool:
        """True only when the process is known to be gone: the one case a walker may act on."""
        return self.liveness is Liveness.DEAD

    @property
    def unseen(self) -> bool:
        return self.liveness is Liveness.UNSEEN


def judge(owner: ProcessIdentity, written: float | None = None, me: ProcessIdentity | None = None) -> Verdict:
    """The liveness rule (see the module docstring), for every walker of every record kind.

    ``written``: when the record was last written (its file's mtime), if known. ``me`` is this
    process (``ProcessIdentity.current()`` by default; pass it once when judging many).
    """
    me = me or ProcessIdentity.current()
    elsewhere = None if owner.legacy else _elsewhere(owner, written, me)
    if elsewhere is not None:
        return elsewhere
    if me.pidns is None or owner.start is None:  # no pid and start time to compare: only this process is known
        if owner.pid == me.pid and owner.start == me.start:
            return Verdict(owner, Liveness.ALIVE)
        return Verdict(owner, Liveness.UNSEEN, f"pid {owner.pid}, whose start time cannot be compared here")
    return Verdict(owner, Liveness.ALIVE if start_time(owner.pid) == owner.start else Liveness.DEAD)


def _elsewhere(owner: ProcessIdentity, written: float | None, me: ProcessIdentity) -> Verdict | None:
    """The verdict on a record of another boot, host or PID namespace; None when it is this one's."""
    if owner.host != me.host:
        return Verdict(owner, Liveness.UNSEEN, f"pid {owner.pid} on host {owner.host or 'unknown'}")
    if owner.boot != me.boot:
        if _before_this_boot(owner, written, me):
            return Verdict(owner, Liveness.DEAD)  # an earlier boot of this machine
        why = f"pid {owner.pid} on another machine named {owner.host} (another boot id, written since this boot)"
        return Verdict(owner, Liveness.UNSEEN, why)
    if owner.pidns is None or owner.pidns != me.pidns:
        where = f"PID namespace {owner.pidns}" if owner.pidns is not None else "a PID namespace it cannot name"
        return Verdict(owner, Liveness.UNSEEN, f"pid {owner.pid} in {where}")
    return None


def _before_this_boot(owner: ProcessIdentity, written: float | None, me: ProcessIdentity) -> bool:
    """Whether a record of another boot id can only be from an earlier boot of this machine."""
    if owner.boot is None or me.boot is None:
        return False
    booted = boot_time()
    return written is None or booted is None or written < booted


def judge_record(
    record: Mapping[str, object], written: float | None = None, me: ProcessIdentity | None = None
) -> Verdict | None:
    """``judge`` of the identity in ``record``; None when it names no process."""
    owner = ProcessIdentity.from_record(record)
    return None if owner is None else judge(owner, written, me)


def describe_unseen(verdicts: list[Verdict], where: list[str]) -> str:
    """The one notice for records left alone: ``N record(s) in DIRS belong to ... (why); left alone``."""
    reasons = list(dict.fromkeys(v.why for v in verdicts))
    shown = ", ".join(reasons[:3]) + (f" and {len(reasons) - 3} more" if len(reasons) > 3 else "")
    many = len(verdicts) != 1
    return (
        f"jumpstarter mount: {len(verdicts)} record{'s' if many else ''} in {', '.join(dict.fromkeys(where))} "
        f"belong{'' if many else 's'} to {'processes' if many else 'a process'} this run cannot see "
        f"({shown}); left alone"
    )
