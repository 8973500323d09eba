"""Controller leases: what we took, recorded beside the run's owner record, and releasing what a dead process left.

Every lease the plugin creates (``--jmp-mount-selector``; never a shared ``--jmp-mount-lease``)
is written (``runstore.write_record``) to ``<run dir>/lease-<name>.json`` with its client alias and the identity of the
process holding it (``sshfs.liveness.ProcessIdentity``) once acquired, and marked released
once released. The run directory's owner record tells a live run from a dead one (and from
one this process cannot see, which is left alone); the stale sweep hands only a dead run's
directory to ``release_left``, which deletes its unreleased leases through the controller
(``ClientConfigV1Alpha1.load(alias).delete_lease(name)``).
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from jumpstarter_driver_ssh_mount.common.liveness import ProcessIdentity
from pytest_jumpstarter_mount.runstate.mountdir import directory_lock
from pytest_jumpstarter_mount.runstate.runstore import read_record, write_record

RECORD_PREFIX = "lease-"
RECORD_SUFFIX = ".json"
WAIT_FIRST_NOTICE = 2.0  # seconds pending before the first "waiting" line
WAIT_NOTICE_EVERY = 10.0  # seconds between "waiting" lines


@dataclass(frozen=True)
class LeaseInfo:
    """A lease we hold: its name, the exporter it got, the client alias, and whether we release it."""

    name: str
    exporter: str
    alias: str
    selector: str | None = None
    owned: bool = True  # False for a shared --jmp-mount-lease: never released by us
    until: float = 0.0  # wall-clock end of the lease (its duration from acquisition)

    def describe(self) -> str:
        """``lease NAME on EXPORTER (client ALIAS)``, for headers, reports and notices."""
        return f"lease {self.name} on {self.exporter} (client {self.alias})"


def record_path(run_dir: Path, name: str) -> Path:
    return run_dir / f"{RECORD_PREFIX}{name}{RECORD_SUFFIX}"


def record(run_dir: Path, lease: LeaseInfo, worker: str) -> None:
    """Write the lease's record (unreleased) into this process's run directory."""
    data = {**asdict(lease), "worker": worker, "released": False, **ProcessIdentity.current().to_record()}
    write_record(record_path(run_dir, lease.name), data)


def mark_released(run_dir: Path, lease: LeaseInfo) -> None:
    """Mark the lease's record released (a later sweep leaves it alone)."""
    path = record_path(run_dir, lease.name)
    data = read_record(path)
    if data is not None:
        write_record(path, {**data, "released": True})


def forget_released(run_dir: Path) -> None:
    """Remove the records of released leases, so the run directory can go."""
    for path in _records(run_dir):
        data = read_record(path)
        if data is not None and data.get("released"):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()


def release_left(run_dir: Path, delete: Callable[[str, str], None] | None = None) -> list[str]:
    """Release every unreleased lease recorded in a dead process's ``run_dir``; one line per lease.

    ``delete(alias, name)`` defaults to ``ClientConfigV1Alpha1.load(alias).delete_lease(name)``.
    A directory another run is sweeping right now (it holds the lock) is skipped. A lease
    that cannot be deleted keeps its record for the next run, unless its duration has passed.
    """
    lines: list[str] = []
    with directory_lock(run_dir, wait=False) as held:
        if not held:  # gone, or another run is sweeping it right now
            return lines
        for path in _records(run_dir):
            data = read_record(path)
            if data is not None and not data.get("released"):
                lines.append(_release_one(path, data, delete or _delete_lease))
        forget_released(run_dir)
    return lines


def _release_one(path: Path, data: dict[str, Any], delete: Callable[[str, str], None]) -> str:
    what = f"lease {data.get('name')} on {data.get('exporter')} (client {data.get('alias')})"
    whose = f"worker {data['worker']}" if data.get("worker", "main") != "main" else "run"
    try:
        delete(str(data["alias"]), str(data["name"]))
    except Exception as exc:
        if float(data.get("until") or 0) < time.time():
            write_record(path, {**data, "released": True})
            return f"jumpstarter mount: {what} of a dead {whose} has expired ({_first_line(exc)})"
        return f"jumpstarter mount: could not release {what} of a dead {whose}: {_first_line(exc)}; will retry"
    write_record(path, {**data, "released": True})
    return f"jumpstarter mount: released {what} left by a dead {whose}"


def _delete_lease(alias: str, name: str) -> None:
    from jumpstarter.config.client import ClientConfigV1Alpha1

    ClientConfigV1Alpha1.load(alias).delete_lease(name)


def _records(run_dir: Path) -> list[Path]:
    try:
        return sorted(p for p in run_dir.iterdir() if p.name.startswith(RECORD_PREFIX) and p.suffix == RECORD_SUFFIX)
    except OSError:
        return []


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


@contextlib.contextmanager
def waiting_notices(
    say: Callable[[float], None], first: float = WAIT_FIRST_NOTICE, every: float = WAIT_NOTICE_EVERY
) -> Iterator[None]:
    """While the block runs, call ``say(seconds waited)`` after ``first`` s, then every ``every`` s."""
    done = threading.Event()
    started = time.monotonic()

    def tell() -> None:
        delay = first
        while not done.wait(delay):
            say(time.monotonic() - started)
            delay = every

    thread = threading.Thread(target=tell, name="jmp-mount-lease-wait", daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join()
