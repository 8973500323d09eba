"""The restore journal on disk: the originals of preserved device files, until they are put back.

One file per device and process, ``journal-<device digest>[-<suffix>].json`` in the run's
own directory (see ``mountdir``), a ``runstore`` record (0600, replaced atomically on every change), never
larger than ``JOURNAL_MAX_BYTES`` (a preserve that would pass it is refused; a larger file
is not read). It holds the device's identity and label and, for every file a test may
change, its device path and original content and mode (or that it was absent), and the identity of the run that
preserved them (``sshfs.liveness.ProcessIdentity``, as every record carries it). A run that
cannot put a file back leaves its journal; the directory's owner record says whether that
run is alive, dead, or one this process cannot see (then its journals are never taken over).
"""

from __future__ import annotations

import base64
import contextlib
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from jumpstarter_driver_ssh_mount.common.defaults import JOURNAL_MAX_BYTES
from jumpstarter_driver_ssh_mount.common.liveness import ProcessIdentity, Verdict
from pytest_jumpstarter_mount.runstate.runstore import RecordTooLarge, RunDir, read_record, runs, write_record

JOURNAL_PREFIX = "journal-"


class JournalTooLarge(RecordTooLarge):
    """A journal would hold, or holds, more than ``JOURNAL_MAX_BYTES``."""


UNTRIED = "its mount was gone before the restore"


@dataclass
class Entry:
    """One preserved device file: its original (``content`` None: it did not exist), and why it is not back."""

    path: str
    content: bytes | None
    mode: int | None
    snapshot: int = 0  # which preserve() it came from, to drop it once that snapshot is put back
    reason: str = UNTRIED

    def to_dict(self) -> dict[str, object]:
        content = None if self.content is None else base64.b64encode(self.content).decode()
        return {
            "path": self.path,
            "content": content,
            "mode": self.mode,
            "snapshot": self.snapshot,
            "reason": self.reason,
        }

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> Entry:
        content = data.get("content")
        mode = data.get("mode")
        return cls(
            str(data["path"]),
            None if content is None else base64.b64decode(str(content)),
            None if mode is None else int(str(mode)),
            int(str(data.get("snapshot", 0))),
            str(data.get("reason", UNTRIED)),
        )


@dataclass
class JournalFile:
    """A journal: ``device`` (how messages name it), ``digest`` (its identity) and ``entries``, oldest first."""

    path: Path
    device: str
    digest: str
    entries: list[Entry] = field(default_factory=list)
    created: float = field(default_factory=time.time)
    owner: ProcessIdentity = field(default_factory=ProcessIdentity.current)  # the run that preserved the files

    @property
    def pid(self) -> int:
        """The pid of the run that preserved the files (how messages name it)."""
        return self.owner.pid

    def save(self) -> None:
        """Write it (0600, atomically), or remove the file when nothing is left to restore."""
        if not self.entries:
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()
            return
        data = {
            "device": self.device,
            "digest": self.digest,
            "created": self.created,
            **self.owner.to_record(),
            "entries": [e.to_dict() for e in self.entries],
        }
        try:
            write_record(self.path, data, JOURNAL_MAX_BYTES)
        except RecordTooLarge:
            raise JournalTooLarge(f"the restore journal {self.path} would exceed {JOURNAL_MAX_BYTES} bytes") from None

    @classmethod
    def load(cls, path: Path) -> JournalFile:
        """Read a journal; ValueError if it is missing, partial, garbled or larger than ``JOURNAL_MAX_BYTES``."""
        data = read_record(path, JOURNAL_MAX_BYTES)
        if data is None:
            with contextlib.suppress(OSError):
                if path.stat().st_size > JOURNAL_MAX_BYTES:
                    raise JournalTooLarge(f"it holds more than {JOURNAL_MAX_BYTES} bytes; not read")
            raise ValueError("missing, partial or garbled; not read")
        entries = [Entry.from_dict(e) for e in data.get("entries", ())]
        owner = ProcessIdentity.from_record(data) or ProcessIdentity(0, None)
        return cls(path, str(data["device"]), str(data["digest"]), entries, float(data.get("created", 0)), owner)

    def paths(self) -> list[str]:
        """The device paths still to restore, each once, in the order they were preserved."""
        return list(dict.fromkeys(e.path for e in self.entries))


def journal_path(run_dir: Path, digest: str, suffix: str = "") -> Path:
    """Where a journal for the device ``digest`` lives in ``run_dir``."""
    return run_dir / f"{JOURNAL_PREFIX}{digest}{'-' + suffix if suffix else ''}.json"


def journals_in(run_dir: Path, digest: str | None = None) -> list[Path]:
    """The journal files in ``run_dir`` (for the device ``digest`` only, if given)."""
    pattern = f"{JOURNAL_PREFIX}{digest or ''}*.json"
    with contextlib.suppress(OSError):
        return sorted(p for p in run_dir.glob(pattern) if p.is_file() and not p.is_symlink())
    return []


@dataclass(frozen=True)
class OtherRun:
    """Another run's directory under the mount base that holds journals for a device, and its liveness."""

    run_dir: Path
    verdict: Verdict
    journals: list[Path]

    @property
    def pid(self) -> int:
        return self.verdict.owner.pid


def other_runs(base: Path, digest: str, mine: str) -> Iterator[OtherRun]:
    """Runs under ``base`` (not those whose directory name starts with ``mine``) with journals for ``digest``."""
    for run in runs(base, skip_prefix=mine):
        journals = journals_in(run.path, digest)
        verdict = run.verdict if journals else None
        if verdict is not None:
            yield OtherRun(run.path, verdict, journals)


def runs_with_journals(base: Path, mine: str) -> Iterator[RunDir]:
    """Runs under ``base`` other than the one named ``mine`` that hold any journal (no liveness asked)."""
    return (run for run in runs(base) if run.path.name != mine and journals_in(run.path))
