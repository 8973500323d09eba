"""The run-directory store: atomic records, reads that treat a partial file as absent, one walker. No mounts."""

from __future__ import annotations

import dataclasses
import json
import os
import stat
import subprocess
import sys
from pathlib import Path

from jumpstarter_driver_ssh_mount.common.liveness import ProcessIdentity
from pytest_jumpstarter_mount.runstate.runstore import (
    OWNER_FILE,
    OWNER_TAG,
    read_owner,
    read_record,
    runs,
    write_owner,
    write_record,
)

KILLED_BEFORE_RENAME = """
import os, sys
from pathlib import Path
from pytest_jumpstarter_mount.runstate import runstore

def killed(src, dst):
    os._exit(9)  # the process dies with the new record written and fsynced, not yet renamed

os.replace = killed
runstore.write_record(Path(sys.argv[1]), {"version": 2, "pad": "x" * 100000})
"""


def test_a_kill_between_temp_write_and_rename_leaves_the_old_record(tmp_path: Path) -> None:
    record = tmp_path / "lease-a.json"
    write_record(record, {"version": 1})
    done = subprocess.run([sys.executable, "-c", KILLED_BEFORE_RENAME, str(record)], check=False)
    assert done.returncode == 9
    assert read_record(record) == {"version": 1}
    assert (tmp_path / ".lease-a.json.tmp").stat().st_size > 100000  # the cut-short write, beside it
    write_record(record, {"version": 3})  # the next write goes through over the leftover temp file
    assert read_record(record) == {"version": 3}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lease-a.json"]


def test_records_are_private_json(tmp_path: Path) -> None:
    record = tmp_path / "journal-x.json"
    write_record(record, {"a": [1, 2]})
    assert stat.S_IMODE(record.stat().st_mode) == 0o600
    assert json.loads(record.read_text()) == {"a": [1, 2]}


def test_partial_garbled_oversized_or_odd_files_read_as_absent(tmp_path: Path) -> None:
    whole = json.dumps({"device": "board", "entries": ["x" * 50]})
    cases = {
        "partial": whole[: len(whole) // 2],
        "empty": "",
        "garbled": "\x00\xff{not json",
        "not-an-object": "[1, 2]",
    }
    for name, text in cases.items():
        (tmp_path / name).write_text(text)
        assert read_record(tmp_path / name) is None, name
    (tmp_path / "big").write_text(whole)
    assert read_record(tmp_path / "big", max_bytes=len(whole) - 1) is None
    assert read_record(tmp_path / "big", max_bytes=len(whole)) == json.loads(whole)
    os.mkfifo(tmp_path / "fifo")  # never blocks a reader
    assert read_record(tmp_path / "fifo") is None
    (tmp_path / "link").symlink_to(tmp_path / "big")  # a symlink is not followed
    assert read_record(tmp_path / "link") is None
    assert read_record(tmp_path / "missing") is None


def test_owner_records_new_and_old_format(tmp_path: Path) -> None:
    """JSON is written; the Python-literal records of earlier versions are still read (a sweep after upgrade)."""
    new, old, foreign, broken = (tmp_path / n for n in ("new", "old", "foreign", "broken"))
    for run in (new, old, foreign, broken):
        run.mkdir()
    write_owner(new)
    assert json.loads((new / OWNER_FILE).read_text())["tag"] == OWNER_TAG
    me = ProcessIdentity.current().to_record()
    (old / OWNER_FILE).write_text(repr({"tag": OWNER_TAG, "uid": os.getuid(), **me}))
    (foreign / OWNER_FILE).write_text(json.dumps({"tag": "someone-else", "uid": os.getuid(), **me}))
    (broken / OWNER_FILE).write_text(repr({"tag": OWNER_TAG, "uid": os.getuid(), **me})[:30])
    assert read_owner(new) == read_owner(old) == {"tag": OWNER_TAG, "uid": os.getuid(), **me}
    assert read_owner(foreign) is None and read_owner(broken) is None


def test_the_walker_judges_each_run_by_its_owner(tmp_path: Path) -> None:
    alive, dead, stranger = (tmp_path / n for n in ("r1-main", "r2-main", "r3-gw0"))
    for run in (alive, dead, stranger):
        run.mkdir()
    write_owner(alive)
    me = ProcessIdentity.current()
    gone = dataclasses.replace(me, start=(me.start or 0) + 1)  # same pid, another start: that process is gone
    write_record(dead / OWNER_FILE, {"tag": OWNER_TAG, "uid": os.getuid(), **gone.to_record()})
    (tmp_path / "r4-file").write_text("not a run")
    (tmp_path / "r5-link").symlink_to(alive)
    found = {run.path.name: run.verdict for run in runs(tmp_path)}
    assert sorted(found) == ["r1-main", "r2-main", "r3-gw0"]
    assert found["r1-main"] is not None and found["r1-main"].alive
    assert found["r2-main"] is not None and found["r2-main"].dead
    assert found["r3-gw0"] is None  # no owner record: never acted on
    assert [run.path.name for run in runs(tmp_path, skip_prefix="r1-")] == ["r2-main", "r3-gw0"]
    assert list(runs(tmp_path / "missing")) == []
