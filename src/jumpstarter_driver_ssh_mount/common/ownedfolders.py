"""Per-user private folders in the temp dir that a ``kill -9`` cannot leave behind for good.

``<tmp>/jmp-mount-<kind>-<uid>/`` (mode 0700, ours) holds one folder per open object (e.g. a
known-hosts file, ``kind`` "known-hosts"), each with an ``owner`` record naming its process
(``liveness.ProcessIdentity``). ``OwnedFolders.remove`` takes one away (and the parent once
it is empty) on every orderly exit path; ``OwnedFolders.sweep`` removes what dead processes
left (the next pytest run and ``j mount`` call it at start), never a folder of a live process or of a process
this one cannot see (another PID namespace or host sharing the temp dir).

When the parent cannot be used (it exists but is not a private directory of ours), the folder
is made directly in the temp dir, as ``mkdtemp`` would: then a ``kill -9`` leaves it behind.
"""

from __future__ import annotations

import contextlib
import json
import os
import stat
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from jumpstarter_driver_ssh_mount.common.liveness import ProcessIdentity, Verdict, judge_record

OWNER_FILE = "owner"
OWNER_TAG = "jumpstarter-driver-ssh-mount"
_ATTEMPTS = 5  # a concurrent process may remove the empty parent between our mkdir and mkdtemp


@dataclass
class SweptFolders:
    """What ``OwnedFolders.sweep`` did: the folders it removed, and those of processes it cannot see."""

    parent: Path
    removed: list[str] = field(default_factory=list)
    unseen: list[Verdict] = field(default_factory=list)


class OwnedFolders:
    """The private folders of one ``kind`` ("known-hosts"): made, removed, and swept after a ``kill -9``."""

    def __init__(self, kind: str) -> None:
        self.kind = kind

    @property
    def parent(self) -> Path:
        """``<tmp>/jmp-mount-<kind>-<uid>``: where every folder of this kind of this user lives."""
        return Path(tempfile.gettempdir()) / f"jmp-mount-{self.kind}-{os.getuid()}"

    def make(self) -> Path:
        """A new private (0700) folder, with this process's owner record in it."""
        parent = self.parent
        for _ in range(_ATTEMPTS):
            if not _private_parent(parent):
                break
            try:
                folder = Path(tempfile.mkdtemp(dir=parent))
                _write_owner(folder)
            except FileNotFoundError:  # the parent (or the folder) was removed under us: again
                continue
            return folder
        return Path(tempfile.mkdtemp(prefix=f"jmp-mount-{self.kind}-"))  # no owner record: not swept

    def remove(self, folder: str | os.PathLike[str]) -> None:
        """Remove ``folder``'s files (the owner record last), the folder, and the parent if now empty."""
        path = Path(folder)
        for name in sorted(os.listdir(path), key=lambda name: name == OWNER_FILE):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path / name)
        with contextlib.suppress(FileNotFoundError):  # a sweep took the empty folder first
            os.rmdir(path)
        if path.parent == self.parent:
            with contextlib.suppress(OSError):  # still holds another process's folder, or already gone
                path.parent.rmdir()

    def sweep(self) -> SweptFolders:
        """Remove the folders whose process is dead; leave live and unseen ones alone (and list the unseen)."""
        swept = SweptFolders(self.parent)
        try:
            folders = sorted(swept.parent.iterdir()) if _ours(swept.parent) else []
        except OSError:
            return swept
        me = ProcessIdentity.current()
        for folder in folders:
            if folder.is_symlink() or not folder.is_dir():
                continue
            verdict = _owner_verdict(folder, me)
            if verdict is not None and verdict.unseen:
                swept.unseen.append(verdict)
            elif verdict is not None and verdict.dead:
                with contextlib.suppress(OSError):
                    self.remove(folder)
                    swept.removed.append(str(folder))
        return swept


def _owner_verdict(folder: Path, me: ProcessIdentity) -> Verdict | None:
    """Judge the folder's owner record; a folder without one is being made or removed (only if empty, it goes)."""
    owner = folder / OWNER_FILE
    try:
        record = json.loads(owner.read_text())
        written = owner.stat().st_mtime
    except FileNotFoundError:
        with contextlib.suppress(OSError):
            folder.rmdir()  # its maker, if alive, notices and makes another
        return None
    except (OSError, ValueError):
        return None
    if not isinstance(record, dict) or record.get("tag") != OWNER_TAG:
        return None
    return judge_record(record, written, me)


def _write_owner(folder: Path) -> None:
    data = json.dumps({"tag": OWNER_TAG, **ProcessIdentity.current().to_record()})
    fd = os.open(folder / OWNER_FILE, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(data)


def _private_parent(parent: Path) -> bool:
    """Make ``parent`` (0700) if missing; True when it is a directory of ours that no one else can enter."""
    with contextlib.suppress(OSError):  # exists already, or cannot be made: checked below
        os.mkdir(parent, 0o700)
    return _ours(parent)


def _ours(path: Path) -> bool:
    try:
        info = path.lstat()
    except OSError:
        return False
    return stat.S_ISDIR(info.st_mode) and info.st_uid == os.getuid() and not stat.S_IMODE(info.st_mode) & 0o077


#: The folders of ``hostkeys.KnownHosts``: ``<tmp>/jmp-mount-known-hosts-<uid>/<random>/``.
KNOWN_HOSTS_FOLDERS = OwnedFolders("known-hosts")
