"""Bulk device-file work (``devicefiles.bulkfs``) decides exactly as file-by-file work does.

The scripts run in real shells on this host (``sh``, and BusyBox's ``sh`` with only BusyBox's
tools, as on an embedded device), over a real directory tree, instead of over ssh: the device
side of a script is a shell and its tools, nothing else. Each chore runs twice on the same
tree, once file by file (``LocalDirFS``) and once in bulk, and must give the same result:
files, bytes, notes, refusals; odd names, symlinks, FIFOs and caps included.
"""

from __future__ import annotations

import errno
import os
import shutil
import stat
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from jumpstarter_driver_ssh_mount.common.errors import RestoreError
from jumpstarter_driver_ssh_mount.devicefiles.bulkfs import BulkFS, ScriptRunner
from jumpstarter_driver_ssh_mount.devicefiles.collection import Collection, collect
from jumpstarter_driver_ssh_mount.devicefiles.fs import DeviceFS
from jumpstarter_driver_ssh_mount.devicefiles.localfs import LocalDirFS
from jumpstarter_driver_ssh_mount.devicefiles.readmany import read_many
from jumpstarter_driver_ssh_mount.devicefiles.snapshot import Snapshot

ODD_NAMES = ["new\nline.log", "quote'd.log", "sp ace.log", "dollar$(x).log", os.fsdecode(b"\xff-latin.log")]


class LocalShell:
    """Runs each script in a shell on this host, as a device would over ssh; counts the scripts."""

    def __init__(self, argv: list[str], env: dict[str, str] | None = None) -> None:
        self.argv, self.env, self.scripts = argv, env, 0

    def __call__(self, script: bytes, timeout: float, max_bytes: int) -> bytes | None:
        self.scripts += 1
        done = subprocess.run(self.argv, input=script, capture_output=True, timeout=timeout, env=self.env)
        return done.stdout[:max_bytes]


@pytest.fixture(params=["sh", "busybox"])
def shell(request: pytest.FixtureRequest, tmp_path: Path) -> LocalShell:
    """A POSIX shell with GNU tools, or BusyBox's shell with nothing but BusyBox's applets on its PATH."""
    if request.param == "sh":
        return LocalShell(["sh", "-s"])
    busybox = shutil.which("busybox")
    if busybox is None:
        pytest.skip("busybox is not installed (make system installs it)")
    applets = tmp_path / "busybox-bin"
    applets.mkdir()
    subprocess.run([busybox, "--install", "-s", str(applets)], check=True)
    return LocalShell([busybox, "sh", "-s"], env={"PATH": str(applets)})


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """A device directory with what collections meet: many small files, odd names, links, a FIFO, a big file."""
    root = tmp_path / "device"
    (root / "many").mkdir(parents=True)
    for i in range(30):
        (root / "many" / f"f{i:02}.log").write_bytes(bytes([i]) * (100 + i))
    for name in ODD_NAMES:
        (root / name).write_bytes(name.encode(errors="surrogateescape") * 3)
    (root / "link.log").symlink_to(root / "many" / "f00.log")
    (root / "out.log").symlink_to("/etc/hostname")
    os.mkfifo(root / "fifo.log")
    (root / "dir.log").mkdir()
    (root / "big.log").write_bytes(b"B" * 5000)
    (root / "mode.log").write_bytes(b"mode")
    os.chmod(root / "mode.log", 0o640)
    return root


def plain(tree: Path) -> DeviceFS:
    """The tree as a FUSE mount of the device directory ``tree`` shows it (device paths are the real paths)."""
    return LocalDirFS(tree, str(tree))


def collected(fs: DeviceFS, tree: Path, globs: list[str], dest: Path, max_bytes: int) -> Collection:
    result = Collection()
    for device_glob in globs:
        collect(
            fs, str(tree), lambda p: p, device_glob, dest, result, max_bytes=max_bytes, deadline=time.monotonic() + 30
        )
    return result


def shape(result: Collection, dest: Path) -> tuple[object, ...]:
    files = sorted((str(f.relative_to(dest)), f.read_bytes(), stat.S_IMODE(f.stat().st_mode)) for f in result.files)
    return files, result.notes, result.bytes, result.cut_short


@pytest.mark.parametrize("max_bytes", [20 * 1024 * 1024, 4000, 2500])
def test_collection_in_bulk_is_the_same(tree: Path, tmp_path: Path, shell: LocalShell, max_bytes: int) -> None:
    globs = [f"{tree}/*.log", f"{tree}/many/*", f"{tree}/none/*"]
    one_by_one = collected(plain(tree), tree, globs, tmp_path / "a", max_bytes)
    in_bulk = collected(BulkFS(plain(tree), shell, always=True), tree, globs, tmp_path / "b", max_bytes)
    assert shape(in_bulk, tmp_path / "b") == shape(one_by_one, tmp_path / "a")
    assert len(one_by_one.files) > 5 and one_by_one.notes
    assert shell.scripts == 2  # one per glob that matched


def test_kernel_files_that_claim_no_size_are_read_in_bulk(tmp_path: Path, shell: LocalShell) -> None:
    tree = Path("/proc/sys/kernel")
    globs = ["/proc/sys/kernel/osrelease", "/proc/sys/kernel/ostype"]
    fs = BulkFS(LocalDirFS(tree, str(tree)), shell, always=True)
    result = collected(fs, tree, globs, tmp_path / "out", 1024)
    assert [f.read_bytes() for f in result.files] == [Path(g).read_bytes() for g in globs]
    assert all(f.read_bytes() for f in result.files)


@pytest.mark.parametrize(
    "runner",
    [
        lambda script, timeout, max_bytes: None,  # no connection
        lambda script, timeout, max_bytes: b"",  # the connection broke before any answer
        lambda script, timeout, max_bytes: (_ for _ in ()).throw(ConnectionError("refused")),  # opening it failed
    ],
    ids=["no-connection", "no-answer", "failed"],
)
def test_without_answers_the_work_goes_file_by_file(tree: Path, tmp_path: Path, runner: ScriptRunner) -> None:
    globs = [f"{tree}/*.log", f"{tree}/many/*"]
    one_by_one = collected(plain(tree), tree, globs, tmp_path / "a", 4000)
    fallback = collected(BulkFS(plain(tree), runner, always=True), tree, globs, tmp_path / "b", 4000)
    assert shape(fallback, tmp_path / "b") == shape(one_by_one, tmp_path / "a")


def test_a_device_without_the_tools_is_read_file_by_file(tree: Path, tmp_path: Path) -> None:
    no_tools = LocalShell(["/bin/sh", "-s"], env={"PATH": str(tmp_path / "empty")})
    globs = [f"{tree}/many/*"]
    fallback = collected(BulkFS(plain(tree), no_tools, always=True), tree, globs, tmp_path / "b", 4000)
    assert shape(fallback, tmp_path / "b") == shape(
        collected(plain(tree), tree, globs, tmp_path / "a", 4000), tmp_path / "a"
    )
    assert no_tools.scripts == 1


def test_an_output_cut_short_is_finished_file_by_file(tree: Path, tmp_path: Path, shell: LocalShell) -> None:
    def stingy(script: bytes, timeout: float, max_bytes: int) -> bytes | None:
        out = shell(script, timeout, max_bytes)
        return None if out is None else out[: len(out) // 3]

    globs = [f"{tree}/*.log", f"{tree}/many/*"]
    one_by_one = collected(plain(tree), tree, globs, tmp_path / "a", 4000)
    cut = collected(BulkFS(plain(tree), stingy, always=True), tree, globs, tmp_path / "b", 4000)
    assert shape(cut, tmp_path / "b") == shape(one_by_one, tmp_path / "a")


def state(tree: Path) -> dict[str, tuple[object, ...]]:
    found: dict[str, tuple[object, ...]] = {}
    for path in sorted(tree.rglob("*")):
        info = path.lstat()
        kind = (
            "link"
            if path.is_symlink()
            else "dir"
            if path.is_dir()
            else "fifo"
            if stat.S_ISFIFO(info.st_mode)
            else "file"
        )
        content = os.readlink(path) if kind == "link" else path.read_bytes() if kind == "file" else None
        found[str(path.relative_to(tree))] = (kind, content, stat.S_IMODE(info.st_mode) if kind != "link" else None)
    return found


def change_everything(tree: Path) -> None:
    """What a test does to the preserved files: rewrite, chmod, replace by a link, create, delete."""
    (tree / "many" / "f01.log").write_bytes(b"changed")
    os.chmod(tree / "mode.log", 0o600)
    (tree / ODD_NAMES[0]).unlink()
    (tree / ODD_NAMES[0]).symlink_to("/etc/hostname")
    (tree / ODD_NAMES[1]).unlink()
    (tree / "created.log").write_bytes(b"new")


@pytest.mark.parametrize("bulk", [False, True], ids=["one-by-one", "bulk"])
def test_snapshot_and_restore(tree: Path, shell: LocalShell, bulk: bool) -> None:
    fs: DeviceFS = BulkFS(plain(tree), shell, always=True) if bulk else plain(tree)
    paths = [str(tree / name) for name in ("many/f01.log", "mode.log", ODD_NAMES[0], ODD_NAMES[1], "created.log")]
    before = state(tree)
    snap = Snapshot.take(fs, lambda p: p, paths, max_bytes=1 << 20)
    change_everything(tree)
    assert state(tree) != before
    snap.restore()
    assert state(tree) == before
    assert shell.scripts == (2 if bulk else 0)


@pytest.mark.parametrize("bulk", [False, True], ids=["one-by-one", "bulk"])
def test_snapshot_refusals(tree: Path, shell: LocalShell, bulk: bool) -> None:
    fs: DeviceFS = BulkFS(plain(tree), shell, always=True) if bulk else plain(tree)
    for paths, why in (
        ([str(tree / "dir.log")], "not a regular file"),
        ([str(tree / "link.log")], "not a regular file"),
        ([str(tree / "many/f01.log"), str(tree / "big.log")], "would exceed 3000 bytes"),
    ):
        with pytest.raises(RestoreError, match=why):
            Snapshot.take(fs, lambda p: p, paths, max_bytes=3000)


@pytest.mark.parametrize("bulk", [False, True], ids=["one-by-one", "bulk"])
def test_restore_failures_name_each_file(tree: Path, shell: LocalShell, bulk: bool) -> None:
    fs: DeviceFS = BulkFS(plain(tree), shell, always=True) if bulk else plain(tree)
    snap = Snapshot.of(
        fs, lambda p: p, [(str(tree / "gone/x.log"), b"x", 0o644), (str(tree / "many/f02.log"), b"ok", 0o644)]
    )
    with pytest.raises(RestoreError) as caught:
        snap.restore()
    assert caught.value.failed == ((str(tree / "gone/x.log"), "No such file or directory"),)
    assert (tree / "many/f02.log").read_bytes() == b"ok"


def reader(fs: DeviceFS, tree: Path) -> Callable[..., dict[str, bytes]]:
    return lambda *given, max_bytes=1 << 20: read_many(plain(tree), fs, str(tree), lambda p, usage: p, given, max_bytes)


@pytest.mark.parametrize("bulk", [False, True], ids=["one-by-one", "bulk"])
def test_read_many(tree: Path, shell: LocalShell, bulk: bool) -> None:
    read = reader(BulkFS(plain(tree), shell, always=True) if bulk else plain(tree), tree)
    got = read(f"{tree}/many/*.log", f"{tree}/*.log", str(tree / "mode.log"))
    expected = {str(p): p.read_bytes() for p in (tree / "many").iterdir()}
    expected |= {str(tree / n): (tree / n).read_bytes() for n in [*ODD_NAMES, "big.log", "mode.log"]}
    assert got == expected  # the glob skipped the links, the FIFO and the directory
    with pytest.raises(OSError) as caught:
        read(str(tree / "link.log"))
    assert caught.value.errno == errno.ELOOP
    with pytest.raises(FileNotFoundError):
        read(str(tree / "missing.log"))
    with pytest.raises(OSError) as caught:
        read(f"{tree}/many/*", max_bytes=1000)
    assert caught.value.errno == errno.EFBIG
    assert shell.scripts == (4 if bulk else 0)


def test_next_to_the_device_few_files_go_one_by_one(tree: Path, tmp_path: Path) -> None:
    """A script costs a shell start on the device: for a few files on a near device, file by file is cheaper."""

    def slow_shell(script: bytes, timeout: float, max_bytes: int) -> bytes | None:
        time.sleep(0.2)  # a device shell that takes its time to start
        return LocalShell(["sh", "-s"])(script, timeout, max_bytes)

    counting = LocalShell(["sh", "-s"])

    def runner(script: bytes, timeout: float, max_bytes: int) -> bytes | None:
        counting.scripts += 1
        return slow_shell(script, timeout, max_bytes)

    fs = BulkFS(plain(tree), runner, top=str(tree))
    assert fs.worth_it(100_000, 3)  # before any script ran: very many files are worth one
    assert fs.records([str(tree / "mode.log")], 100)[str(tree / "mode.log")].content == b"mode"
    assert counting.scripts == 1  # now it knows what a script costs here
    assert not fs.worth_it(30, 3)
    result = collected(fs, tree, [f"{tree}/many/*"], tmp_path / "b", 1 << 20)
    assert counting.scripts == 1 and len(result.files) == 30
