"""The run directory on disk: one record format, one walker over the runs under the mount base.

Every record a run keeps there (its ``owner`` record, ``lease-*.json``, ``journal-*.json``)
is a JSON object written by ``write_record``: a temp file in the same directory (mode 0600),
fsynced, renamed over the record, and the directory fsynced, so a kill at any moment leaves
either the old record or the new one. ``read_record`` reads at most a bounded number of
bytes and treats a missing, oversized, partial or garbled file as absent (None).

``runs`` walks the run directories under a base; each ``RunDir`` judges its owner record
by the one liveness rule (``sshfs.liveness``) when asked.
"""

from __future__ import annotations

import ast
import contextlib
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

from jumpstarter_driver_ssh_mount.common.liveness import ProcessIdentity, Verdict, judge_record

OWNER_FILE = "owner"
OWNER_TAG = "pytest-jumpstarter-mount"
RECORD_MAX_BYTES = 1 << 20  # owner and lease records are a few hundred bytes; journals pass their own bound


class RecordTooLarge(ValueError):
    """A record would be larger than the bound it is written with."""


def write_record(path: Path, data: dict[str, object], max_bytes: int = RECORD_MAX_BYTES) -> None:
    """Replace ``path`` with ``data`` as JSON, atomically and durably (0600); RecordTooLarge past ``max_bytes``."""
    text = json.dumps(data).encode()
    if len(text) > max_bytes:
        raise RecordTooLarge(f"{path} would exceed {max_bytes} bytes")
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, text)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    _sync_directory(path.parent)


def _sync_directory(directory: Path) -> None:
    """Make a rename in ``directory`` durable (best effort: some file systems refuse a directory fsync)."""
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def read_text(path: Path, max_bytes: int = RECORD_MAX_BYTES) -> str | None:
    """The file's text, or None when it is missing, unreadable, not a regular file or larger than ``max_bytes``."""
    from jumpstarter_driver_ssh_mount.devicefiles.boundedread import read_local_at_most  # no FIFO wait, no symlinks

    try:
        raw, _ = read_local_at_most(path, max_bytes)
    except OSError:
        return None
    if len(raw) > max_bytes:
        return None
    return raw.decode("utf-8", errors="replace")


def read_record(path: Path, max_bytes: int = RECORD_MAX_BYTES) -> dict[str, Any] | None:
    """The JSON object in ``path``; None when missing, too large, partial or garbled (treated as absent)."""
    text = read_text(path, max_bytes)
    if text is None:
        return None
    try:
        data = json.loads(text)
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


def write_owner(run_dir: Path) -> None:
    """Record that this process (this plugin, this user) made ``run_dir``."""
    record = {"tag": OWNER_TAG, "uid": os.getuid(), **ProcessIdentity.current().to_record()}
    write_record(run_dir / OWNER_FILE, record)


def read_owner(run_dir: Path) -> dict[str, Any] | None:
    """The owner record of ``run_dir``, in JSON or in the older Python-literal format.

    Versions before the JSON record wrote ``repr(dict)``; a run after an upgrade must still
    sweep what they left, so that format stays readable (never written any more).
    """
    path = run_dir / OWNER_FILE
    data = read_record(path)
    if data is None:
        text = read_text(path)
        with contextlib.suppress(ValueError, SyntaxError, MemoryError, RecursionError):
            legacy = ast.literal_eval(text) if text else None
            data = legacy if isinstance(legacy, dict) else None
    if data is None or data.get("tag") != OWNER_TAG or data.get("uid") != os.getuid():
        return None
    return data


def owner_verdict(run_dir: Path, me: ProcessIdentity | None = None) -> Verdict | None:
    """Whether the run that made ``run_dir`` is alive, dead or unseen; None unless this plugin made it for this user."""
    record = read_owner(run_dir)
    if record is None:
        return None
    try:
        written = (run_dir / OWNER_FILE).stat().st_mtime
    except OSError:
        return None
    return judge_record(record, written, me)


@dataclass
class RunDir:
    """A run's directory under the mount base; ``verdict`` (its owner's liveness) is judged on first use."""

    path: Path
    me: ProcessIdentity

    @cached_property
    def verdict(self) -> Verdict | None:
        """Alive, dead or unseen; None when no owner record of this plugin and user is there."""
        return owner_verdict(self.path, self.me)


def runs(base: Path, skip_prefix: str | None = None) -> Iterator[RunDir]:
    """The run directories under ``base`` in name order (real directories only, not names starting ``skip_prefix``)."""
    try:
        entries = sorted(base.iterdir())
    except OSError:
        return
    me = ProcessIdentity.current()
    for path in entries:
        if skip_prefix is not None and path.name.startswith(skip_prefix):
            continue
        if path.is_dir() and not path.is_symlink():
            yield RunDir(path, me)
