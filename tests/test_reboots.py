"""Reboots and reflashes under a live mount, on every transport, against the real sshd.

A "power off" kills the loopback device's sshd and every session it forked (SIGKILL, by PID: the
client gets no goodbye); "power on" starts sshd again on the same port, with the same host key (a
reboot) or a new one (a reflash). The exporter (in-process Jumpstarter) reads the key from the
device, or has it configured (``host_key``: then a new key is nobody's).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast
from xml.etree import ElementTree

import pytest
from jumpstarter.common.utils import serve

from helpers import LoopbackDevice, Suite, chrooted_device, make_driver
from jumpstarter_driver_ssh_mount import DeviceUnreachableError, HostKeyError
from jumpstarter_driver_ssh_mount.devicefiles.files import DeviceFiles
from jumpstarter_driver_ssh_mount.sftp.loop import THREAD_NAME, LoopThread
from jumpstarter_driver_ssh_mount.sftp.stall import run_watched
from jumpstarter_driver_ssh_mount.ssh.hostkeys import HostKey
from pytest_jumpstarter_mount.pertest.reboots import PROPERTY
from pytest_jumpstarter_mount.testing.power import power_off, power_on

TRANSPORTS = ("direct", "forward", "relay")


@pytest.fixture
def own(tmp_path: Path) -> Iterator[LoopbackDevice]:
    """A device of this test alone (the test powers it off and on)."""
    device = LoopbackDevice(tmp_path / "device").setup().start()
    yield device
    device.stop()


def offered(device: LoopbackDevice) -> HostKey:
    """The host key the device offers now."""
    return HostKey.parse((device.base / "host_key.pub").read_text())


def accepted_logins(device: LoopbackDevice) -> int:
    return device.log_tail(10**7).count("Accepted publickey")


def relay_config(transport: str) -> dict[str, Any]:
    return {"relay_listen": "127.0.0.1"} if transport == "relay" else {}


def opened(
    client: Any, backend: str, mountpoint: Path, remote_path: str, transport: str | None = None
) -> contextlib.AbstractContextManager[DeviceFiles]:
    """The device's files over ``backend``: an sshfs mount on ``mountpoint``, or an SFTP session."""
    if backend == "sshfs":
        return cast(Any, client.mounted(mountpoint, remote_path=remote_path, transport=transport))
    return cast(Any, client.files(remote_path, backend="sftp", transport=transport))


def sftp_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == THREAD_NAME]


@pytest.mark.parametrize("reflash", [False, True], ids=["reboot", "reflash"])
@pytest.mark.parametrize("transport", TRANSPORTS)
def test_a_mount_keeps_serving_after_the_device_comes_back(
    own: LoopbackDevice, mountpoint: Path, transport: str, reflash: bool, backend: str
) -> None:
    driver = make_driver(own, **relay_config(transport))
    with serve(driver) as client, opened(client, backend, mountpoint, own.remote("/"), transport) as m:
        assert m.transport == transport and m.backend == backend
        release = m / "etc/os-release"
        assert "Loopback" in release.read_text()
        assert client.run("echo before", timeout=30, transport=transport).stdout == "before\n"
        power_off(own)
        with pytest.raises(OSError) as down:  # at once: never a hang
            release.read_text()
        if backend == "sftp":
            assert "the device is unreachable" in str(down.value)
        power_on(own, new_host_key=reflash)
        m.wait_until_back(timeout=60)
        assert "Loopback" in release.read_text()  # the same files object, the same path
        (m / "data/after.txt").write_text("written after the reboot")
        assert (own.root / "data/after.txt").read_text() == "written after the reboot"
        # device_run's way works too (a connection kept from before the reboot would be reopened)
        assert client.run("echo back", timeout=30, transport=transport).stdout == "back\n"
        changed = [w for w in m.warnings if w.startswith("host key changed")]
        if reflash:
            port = own.port
            assert changed == [
                f"host key changed on 127.0.0.1:{port}: now {offered(own).fingerprint}, vouched by the exporter"
            ]
        else:
            assert changed == []
        (m / "data/after.txt").unlink()
        assert m.is_mounted()
    assert not m.is_mounted() and not (own.root / "data/after.txt").exists()
    assert sftp_threads() == []


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_device_run_alone_follows_a_reflash(
    own: LoopbackDevice, transport: str, caplog: pytest.LogCaptureFixture
) -> None:
    with serve(make_driver(own, **relay_config(transport))) as client:
        assert client.run("echo before", timeout=30, transport=transport).stdout == "before\n"
        power_off(own)
        power_on(own, new_host_key=True)  # the exporter still vouches for the old key: nobody asked it since
        with caplog.at_level("WARNING", logger="jumpstarter_driver_ssh_mount"):
            after = client.run("echo after", timeout=30, transport=transport)
            assert after.stdout == "after\n"
    changed = f"host key changed on 127.0.0.1:{own.port}: now {offered(own).fingerprint}"
    assert changed in caplog.text
    assert [note for note in after.warnings if note.startswith(changed)]  # the device_run fixture warns with it


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_a_key_nobody_vouches_for_is_still_refused(
    own: LoopbackDevice, mountpoint: Path, transport: str, backend: str
) -> None:
    old = offered(own)
    driver = make_driver(own, host_key=old.line, **relay_config(transport))  # configured: never re-read
    with serve(driver) as client, opened(client, backend, mountpoint, own.remote("/"), transport) as m:
        power_off(own)
        power_on(own, new_host_key=True)
        logins = accepted_logins(own)
        with pytest.raises(HostKeyError) as refused:
            m.wait_until_back(timeout=60)  # at once: waiting longer changes nothing
        new = offered(own)
        message = str(refused.value)
        assert new.fingerprint in message and old.fingerprint in message
        assert "the configured host_key" in message and "no login was attempted" in message
        with pytest.raises(OSError) as again:
            (m / "etc/os-release").read_text()
        if backend == "sftp":  # the call says why, both fingerprints
            assert new.fingerprint in str(again.value) and old.fingerprint in str(again.value)
        assert accepted_logins(own) == logins  # refused before it authenticated
        assert [w for w in m.warnings if w.startswith("host key mismatch")] == [message.split(" (after")[0]]
    assert sftp_threads() == []


def test_wait_until_back_names_the_address_and_the_wait(own: LoopbackDevice, mountpoint: Path, backend: str) -> None:
    with serve(make_driver(own)) as client, opened(client, backend, mountpoint, own.remote("/")) as m:
        power_off(own)
        with pytest.raises(DeviceUnreachableError) as down:
            m.wait_until_back(timeout=1)
        assert str(down.value).startswith(f"the device at 127.0.0.1:{own.port} did not answer again within 1 s (waited")
        assert "cannot reach the device's sshd" in str(down.value)
        power_on(own)
        m.wait_until_back(timeout=60)


def test_preserved_files_are_put_back_on_the_device_that_came_back(
    own: LoopbackDevice, mountpoint: Path, backend: str
) -> None:
    with serve(make_driver(own)) as client, opened(client, backend, mountpoint, own.remote("/")) as m:
        device_path = own.remote("/etc/os-release")
        original = (own.root / "etc/os-release").read_text()
        m.preserve(device_path)
        m.local_path(device_path).write_text("changed by the test\n")
        power_off(own)
        power_on(own, new_host_key=True)
        m.wait_until_back(timeout=60)
        m.restore_preserved()
        assert (own.root / "etc/os-release").read_text() == original


def test_boot_id_reads_through_the_mount(own: LoopbackDevice, mountpoint: Path) -> None:
    """The loopback device's kernel is this host's, whose boot id does not change: the path is pointed at a
    file of the device tree, which the test rewrites as a reboot would (said so: a simulation)."""
    with serve(make_driver(own)) as client, client.mounted(mountpoint, remote_path=own.remote("/")) as m:
        assert m.boot_id() is None  # a non-chrooted device's / is a host directory, without /proc
        (own.root / "data/boot_id").write_text("first-boot\n")
        m.boot_id_path = own.remote("/data/boot_id")
        assert m.boot_id() == "first-boot"
        m.boot_id_path = "/elsewhere/boot_id"
        assert m.boot_id() is None  # outside the mount: no reading
        os.unlink(own.root / "data/boot_id")


def test_boot_id_of_a_device_with_its_own_proc(tmp_path_factory: pytest.TempPathFactory, mountpoint: Path) -> None:
    """The default path, on the chrooted loopback device (its /proc is this host's kernel's: the same boot id)."""
    with (
        chrooted_device(tmp_path_factory, "reading /proc's boot id") as dev,
        serve(make_driver(dev)) as client,
        client.mounted(mountpoint, remote_path="/") as m,
    ):
        assert m.boot_id() == Path("/proc/sys/kernel/random/boot_id").read_text().strip()


BOOT_CONFTEST = """
import os
import threading

def pytest_jmp_mount_ready(mount, request):
    mount.boot_id_path = os.environ["BOOT_ID_DEVICE_PATH"]
"""


def test_a_test_during_which_the_device_rebooted_says_so(
    suite: Suite, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Simulated: the loopback device's kernel is this host's, so its boot id never changes. The plugin
    reads the boot id from a file of the device tree instead, which the first test rewrites as a reboot would."""
    boot = suite.device.root / "data" / f"boot_id-{os.getpid()}-{tmp_path.name}"
    boot.write_text("11111111-aaaa\n")
    suite.pytester.makeconftest(BOOT_CONFTEST)
    suite.pytester.makepyfile(
        test_power=f"""
        from pathlib import Path

        def test_reboots(remote_fs):
            Path({str(boot)!r}).write_text("22222222-bbbb\\n")  # the device came back with a new boot id

        def test_stays(remote_fs):
            pass
        """
    )
    junit = tmp_path / "junit.xml"
    monkeypatch.setenv("BOOT_ID_DEVICE_PATH", suite.device.remote(str(boot.relative_to(suite.device.root))))
    try:
        result = suite.pytester.runpytest_subprocess(*suite.args("-rA", f"--junitxml={junit}"), timeout=120)
    finally:
        boot.unlink()
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(
        [
            "*jumpstarter mount*",
            "device rebooted during this test (*: boot id 11111111-aaaa, now 22222222-bbbb)",
            "jumpstarter mount: the device rebooted during 1 test: test_power.py::test_reboots",
        ]
    )
    assert result.stdout.str().count("device rebooted during this test") == 1
    cases = {case.get("name"): case for case in ElementTree.parse(junit).iter("testcase")}
    rebooted = [p.get("value") for p in cases["test_reboots"].iter("property") if p.get("name") == PROPERTY]
    assert len(rebooted) == 1 and (rebooted[0] or "").startswith("device rebooted during this test")
    assert not list(cases["test_stays"].iter("property"))
    suite.assert_clean()


POWER_TESTS = """
import os, time
from pathlib import Path

REQUEST, DONE = Path(os.environ["POWER_REQUEST"]), Path(os.environ["POWER_DONE"])

def power_cycle(how):
    REQUEST.write_text(how)  # the outer test holds the device's power switch
    while not DONE.exists():
        time.sleep(0.05)
    DONE.unlink()

def test_before(remote_fs):
    assert "Loopback" in (remote_fs / "etc/os-release").read_text()

def test_reflash(remote_fs, device_run):
    power_cycle("reflash")
    remote_fs.wait_until_back(timeout=60)
    assert device_run("echo back", check=True).stdout == "back\\n"
    assert "Loopback" in (remote_fs / "etc/os-release").read_text()

def test_after(remote_path):
    assert "Loopback" in (remote_path / "etc/os-release").read_text()
"""


def run_with_power(
    suite: Suite,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    tests: str,
    files: dict[str, str] | None = None,
    backend: str = "sshfs",
) -> tuple[pytest.RunResult, LoopbackDevice, list[str]]:
    """Run ``tests`` (with ``power_cycle``) against a device of their own (with ``files`` added) over ``backend``,
    its power switch held here; the result, the device (stopped) and the power cycles done."""
    own = LoopbackDevice(tmp_path / "device").setup()
    for name, text in (files or {}).items():
        (own.root / name).write_text(text)
    own.start()
    own.exporter_config(suite.pytester.path / "exporter.yaml")  # the exporter reads the key from the device
    request, done = tmp_path / "power-request", tmp_path / "power-done"
    monkeypatch.setenv("POWER_REQUEST", str(request))
    monkeypatch.setenv("POWER_DONE", str(done))
    suite.pytester.makepyfile(test_power=tests)
    switch = PowerSwitch(own, request, done)
    try:
        result = suite.pytester.runpytest_subprocess(
            *Suite(suite.pytester, own, suite.log, suite.mount_dir).args(f"--jmp-mount-backend={backend}"), timeout=120
        )
    finally:
        switch.stop()
        own.stop()
    return result, own, switch.done


def test_a_session_mount_follows_a_reflash_through_the_plugin(
    suite: Suite, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, backend: str
) -> None:
    result, own, cycles = run_with_power(suite, tmp_path, monkeypatch, POWER_TESTS, backend=backend)
    result.assert_outcomes(passed=3)
    assert cycles == ["reflash"]
    new = offered(own).fingerprint
    changed = f"host key changed on 127.0.0.1:{own.port}: now {new}, vouched by the exporter"
    assert result.stdout.str().count(changed) == 1
    suite.assert_clean()


DOWN_TESTS = (
    POWER_TESTS.split("def test_before")[0]
    + """
def test_reads_while_the_device_is_off(remote_fs):
    power_cycle("off")
    (remote_fs / "etc/os-release").read_text()
"""
)


def test_a_failure_while_the_device_is_off_says_unreachable(
    suite: Suite, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, backend: str
) -> None:
    result, own, _ = run_with_power(suite, tmp_path, monkeypatch, DOWN_TESTS, backend=backend)
    result.assert_outcomes(failed=1)
    error = {
        "sshfs": "*OSError: [[]Errno 5[]] Input/output error*",
        "sftp": "*OSError: [[]Errno 107[]] the device is unreachable: *",
    }[backend]
    result.stdout.fnmatch_lines(
        [
            error,
            f"device:        unreachable: the exporter cannot reach the device's sshd at 127.0.0.1:{own.port}: *",
        ]
    )
    suite.assert_clean()


RESTORE_TESTS = (
    POWER_TESTS.split("def test_before")[0]
    + """
import pytest

@pytest.mark.jmp_mount(restore=[os.environ["CONF"]])
def test_changes_then_reflash(remote_path):
    remote_path.joinpath("etc/app.conf").write_text("test settings\\n")
    power_cycle("reflash")  # no waiting: the restore at teardown is the first access after it
"""
)


def test_preserved_files_are_restored_through_a_reflash_by_the_plugin(
    suite: Suite, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, backend: str
) -> None:
    monkeypatch.setenv("CONF", str(tmp_path / "device" / "fs" / "etc" / "app.conf"))  # the device's path
    files = {"etc/app.conf": "factory settings\n"}
    result, own, cycles = run_with_power(suite, tmp_path, monkeypatch, RESTORE_TESTS, files, backend)
    result.assert_outcomes(passed=1)
    assert cycles == ["reflash"]
    assert (own.root / "etc/app.conf").read_text() == "factory settings\n"
    suite.assert_clean()


class PowerSwitch:
    """Power-cycles ``device`` when the suite under test asks (a file), and says when it is done."""

    def __init__(self, device: LoopbackDevice, request: Path, done: Path) -> None:
        self.device, self.request, self.finished = device, request, done
        self.done: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.05):
            if self.request.exists():
                how = self.request.read_text()
                self.request.unlink()
                power_off(self.device)
                if how != "off":
                    power_on(self.device, new_host_key=how == "reflash")
                self.done.append(how)
                self.finished.write_text("done")

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)


def test_a_stalled_sftp_call_is_aborted_once_the_exporter_says_the_device_is_down() -> None:
    """A connection the device left without a word (the port forward does not always pass its end on) is
    simulated by a call that never answers; the exporter's check is a function saying the device is down."""
    loop = LoopThread()
    try:
        stuck: asyncio.Future[None] = asyncio.run_coroutine_threadsafe(make_future(), loop.loop).result(5)

        async def call() -> None:
            await stuck

        def abort() -> None:  # what aborting the connection does to the calls waiting on it
            loop.loop.call_soon_threadsafe(stuck.set_exception, ConnectionResetError("connection lost"))

        asked: list[str] = []

        def down() -> str | None:
            asked.append("down?")
            return "127.0.0.1:22: Connection refused" if len(asked) > 1 else None  # up at the first ask

        with pytest.raises(ConnectionResetError):
            run_watched(loop, call(), down, abort, checks=(0.05, 0.05))
        assert asked == ["down?", "down?"]
        assert run_watched(loop, asyncio.sleep(0.2, "slow but there"), lambda: None, abort, (0.05, 0.05)) == (
            "slow but there"
        )
    finally:
        loop.close()
    assert sftp_threads() == []


async def make_future() -> asyncio.Future[None]:
    return asyncio.get_running_loop().create_future()
