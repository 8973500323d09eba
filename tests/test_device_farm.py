"""A device farm behind a controller: one lease per xdist worker, waiting shown and bounded,
no lease left behind by a dead worker or a killed run, and which board each test ran on.

No Jumpstarter controller can run here: ``FAKE_CONTROLLER`` stands in for
``ClientConfigV1Alpha1`` with its real signatures, handing out real loopback devices (one
per lease) from a pool kept in a JSON file, so xdist workers and later runs share it.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from helpers import LoopbackDevice, Suite, wait_until

FAKE_CONTROLLER = textwrap.dedent(
    """
    # A FAKE Jumpstarter controller: no controller can run in these tests.
    # It replaces jumpstarter.config.client.ClientConfigV1Alpha1 with the real call signatures
    # and hands out the loopback devices listed in $FAKE_JMP_CONTROLLER, one per lease; its
    # state lives in that file, so xdist workers and later runs share it.
    import contextlib, fcntl, json, os, sys, time
    from datetime import timedelta
    from pathlib import Path

    sys.path.insert(0, HELPERS_DIR)
    import jumpstarter.config.client as client_config
    from jumpstarter.client.exceptions import LeaseError

    STATE = Path(os.environ["FAKE_JMP_CONTROLLER"])


    @contextlib.contextmanager
    def controller_state():
        with open(f"{STATE}.lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            state = json.loads(STATE.read_text())
            yield state
            STATE.write_text(json.dumps(state))


    def matches(labels, selector):
        wanted = dict(term.split("=", 1) for term in (selector or "").split(",") if term)
        return all(labels.get(k) == v for k, v in wanted.items())


    class FakeLeaseSettings:  # ClientConfigV1Alpha1Lease
        acquisition_timeout = 7200


    class FakeLease:  # jumpstarter.client.Lease, once acquired
        def __init__(self, name, exporter_name, device):
            self.name, self.exporter_name, self.device = name, exporter_name, device

        @contextlib.contextmanager
        def connect(self):
            from helpers import LoopbackDevice, make_driver
            from jumpstarter.common.utils import serve
            from jumpstarter_driver_composite.driver import Composite

            device = LoopbackDevice(Path(self.device["base"]), port=self.device["port"])
            with serve(Composite(children={"mount": make_driver(device)})) as client:
                yield client


    class FakeClientConfig:  # jumpstarter.config.client.ClientConfigV1Alpha1
        def __init__(self, alias):
            self.alias = alias
            self.leases = FakeLeaseSettings()

        @classmethod
        def load(cls, alias):
            return cls(alias)

        @contextlib.contextmanager
        def lease(self, selector=None, exporter_name=None, lease_name=None, duration=timedelta(minutes=30)):
            release = not lease_name  # as Jumpstarter: a named (existing) lease is not released
            name = lease_name or self._create(selector, duration)
            try:
                exporter = self._acquire(name)
                with controller_state() as state:
                    device = state["exporters"][exporter]
                yield FakeLease(name, exporter, device)
            finally:
                if release:
                    with contextlib.suppress(Exception):
                        self.delete_lease(name)

        def _create(self, selector, duration):
            with controller_state() as state:
                name = f"lease-{state['next']}"
                state["next"] += 1
                state["leases"][name] = {"selector": selector, "alias": self.alias, "client_pid": os.getpid(),
                                         "exporter": None, "ended": False, "duration": duration.total_seconds()}
            return name

        def _acquire(self, name):
            deadline = time.monotonic() + self.leases.acquisition_timeout
            while True:
                with controller_state() as state:
                    lease = state["leases"][name]
                    if lease["ended"]:
                        raise LeaseError(f"lease {name} released")
                    if lease["exporter"]:
                        return lease["exporter"]
                    busy = {other["exporter"] for other in state["leases"].values() if not other["ended"]}
                    for exporter, info in sorted(state["exporters"].items()):
                        if exporter not in busy and matches(info["labels"], lease["selector"]):
                            lease["exporter"] = exporter
                            return exporter
                if time.monotonic() > deadline:
                    raise LeaseError(
                        f"lease {name} acquisition timed out after {self.leases.acquisition_timeout} seconds"
                    )
                time.sleep(0.2)

        def delete_lease(self, name):
            with controller_state() as state:
                state["leases"][name].update(ended=True, deleted_by=os.getpid())


    client_config.ClientConfigV1Alpha1 = FakeClientConfig
    """
).replace("HELPERS_DIR", repr(str(Path(__file__).parent)))

HOLDING_TEST = """
import os, time

def test_hold(jmp_client):
    open(os.environ["READY_FILE"], "w").write(str(os.getpid()))
    deadline = time.monotonic() + 90
    while not os.path.exists(os.environ["GO_FILE"]) and time.monotonic() < deadline:
        time.sleep(0.1)
"""


class FakeController:
    """The fake controller's pool: real loopback devices, labelled ``board=rpi4``, and its lease table."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.devices: dict[str, LoopbackDevice] = {}

    def start(self, boards: int) -> FakeController:
        for n in range(1, boards + 1):
            self.devices[f"board-{n}"] = LoopbackDevice(self.path.parent / f"board-{n}").setup().start()
        exporters = {
            name: {"labels": {"board": "rpi4"}, "base": str(d.base), "port": d.port} for name, d in self.devices.items()
        }
        self.path.write_text(json.dumps({"exporters": exporters, "leases": {}, "next": 1}))
        return self

    def stop(self) -> None:
        for device in self.devices.values():
            device.stop()

    def leases(self) -> dict[str, dict[str, Any]]:
        return json.loads(self.path.read_text())["leases"]

    def add_lease(self, name: str, exporter: str) -> None:
        """A lease someone else made and owns (for ``--jmp-mount-lease``)."""
        state = json.loads(self.path.read_text())
        state["leases"][name] = {
            "selector": None,
            "alias": "lab",
            "client_pid": 0,
            "exporter": exporter,
            "ended": False,
        }
        self.path.write_text(json.dumps(state))


@pytest.fixture
def farm(suite: Suite, tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """Start a fake controller with N boards: ``controller = farm(3)``; the suite's conftest installs it."""
    suite.pytester.makeconftest(FAKE_CONTROLLER)
    started: list[FakeController] = []

    def start(boards: int) -> FakeController:
        path = tmp_path_factory.mktemp("controller") / "controller.json"
        monkeypatch.setenv("FAKE_JMP_CONTROLLER", str(path))
        started.append(FakeController(path).start(boards))
        return started[-1]

    yield start
    for controller in started:
        controller.stop()


def lease_args(suite: Suite, *extra: str) -> list[str]:
    return [
        "-p",
        "no:cacheprovider",
        f"--jmp-mount-dir={suite.mount_dir}",
        "--jmp-mount-client=lab",
        "--jmp-mount-selector=board=rpi4",
        *extra,
    ]


def test_one_lease_per_worker(suite: Suite, farm: Any) -> None:
    """-n 3: three leases on three boards, each worker's tests mount their own, all released."""
    controller = farm(3)
    log = suite.pytester.path / "seen.jsonl"
    suite.pytester.makepyfile(
        test_boards=f"""
        import json, os, time, pytest

        @pytest.mark.parametrize("n", range(9))
        def test_board(remote_fs, n):
            assert (remote_fs / "etc").is_dir()
            with open({str(log)!r}, "a") as f:
                f.write(json.dumps({{"pid": os.getpid(), "port": remote_fs.port}}) + "\\n")
            time.sleep(0.2)
        """
    )
    junit = suite.pytester.path / "junit.xml"
    args = lease_args(suite, "-n", "3", "--jmp-mount-direct", "--jmp-mount-remote=/", f"--junitxml={junit}")
    result = suite.pytester.runpytest_subprocess(*args, timeout=180)
    result.assert_outcomes(passed=9)

    leases = controller.leases()
    assert len(leases) == 3 and all(lease["ended"] for lease in leases.values()), leases
    assert len({lease["exporter"] for lease in leases.values()}) == 3
    ports = {name: d.port for name, d in controller.devices.items()}
    by_pid = {lease["client_pid"]: ports[lease["exporter"]] for lease in leases.values()}
    seen = [json.loads(line) for line in log.read_text().splitlines()]
    assert {s["pid"] for s in seen} == set(by_pid), "each worker leased once"
    assert all(s["port"] == by_pid[s["pid"]] for s in seen), "each worker mounts its own board"

    err, out = result.stderr.str(), result.stdout.str()
    for worker in ("gw0", "gw1", "gw2"):
        assert f"jumpstarter mount: {worker} device: lease lease-" in err, err
        assert f"jumpstarter mount: {worker} used lease lease-" in out, out
    properties = [
        {p.get("name"): p.get("value") for p in case.iter("property")} for case in ET.parse(junit).iter("testcase")
    ]
    assert len(properties) == 9
    for props in properties:
        assert leases[props["jmp_lease"]]["exporter"] == props["jmp_exporter"]
    suite.assert_clean()


def test_dead_worker_lease_released(suite: Suite, farm: Any) -> None:
    """A worker that dies mid-test holds a lease; the controller releases it by the end of the run."""
    controller = farm(2)
    suite.pytester.makepyfile(
        test_dies="""
        import os

        def test_device(jmp_client):
            if os.environ["PYTEST_XDIST_WORKER"] == "gw0":
                os._exit(3)
        """
    )
    args = lease_args(suite, "-n", "2", "--dist=each", "--max-worker-restart=0")
    result = suite.pytester.runpytest_subprocess(*args, timeout=120)
    out = result.stdout.str()
    result.assert_outcomes(passed=1, failed=1)  # gw1's test passed; gw0's is reported as crashed
    assert "worker 'gw0' crashed" in out, out
    leases = controller.leases()
    assert len(leases) == 2 and all(lease["ended"] for lease in leases.values()), leases
    (dead,) = [lease for lease in leases.values() if lease["deleted_by"] != lease["client_pid"]]
    assert "released lease lease-" in out and f"on {dead['exporter']} (client lab) left by a dead worker gw0" in out
    suite.assert_clean()


def _start_holding_run(suite: Suite, name: str, *prefix: str) -> tuple[subprocess.Popen[str], Path]:
    """A run (under ``prefix``) whose test takes the lease and holds it until ``<name>.go`` exists; once it holds it."""
    ready, go = suite.pytester.path / f"{name}.ready", suite.pytester.path / f"{name}.go"
    process = subprocess.Popen(
        [*prefix, sys.executable, "-m", "pytest", *lease_args(suite), "test_hold.py"],
        cwd=suite.pytester.path,
        env={**os.environ, "READY_FILE": str(ready), "GO_FILE": str(go)},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    wait_until(ready.exists, timeout=60, what=f"run {name} to hold its lease")
    return process, go


def test_killed_run_lease_released_by_next_run(suite: Suite, farm: Any) -> None:
    """A run killed outright leaves its lease recorded; the next run releases it, not a live run's."""
    controller = farm(2)
    suite.pytester.makepyfile(test_hold=HOLDING_TEST, test_nothing="def test_nothing():\n    pass\n")
    live, go = _start_holding_run(suite, "live")
    try:
        killed, _ = _start_holding_run(suite, "killed")
        os.kill(killed.pid, signal.SIGKILL)
        killed.communicate(timeout=30)
        (killed_lease,) = [n for n, lease in controller.leases().items() if lease["client_pid"] == killed.pid]
        (live_lease,) = [n for n, lease in controller.leases().items() if lease["client_pid"] == live.pid]

        result = suite.pytester.runpytest_subprocess(*lease_args(suite), "test_nothing.py", timeout=60)
        result.assert_outcomes(passed=1)
        result.stdout.fnmatch_lines([f"jumpstarter mount: released lease {killed_lease} on * left by a dead run"])
        leases = controller.leases()
        assert leases[killed_lease]["ended"] and not leases[live_lease]["ended"]
        assert live_lease not in result.stdout.str()
    finally:
        go.write_text("")
        out, _ = live.communicate(timeout=60)
    assert live.returncode == 0, out
    assert controller.leases()[live_lease]["deleted_by"] == live.pid
    suite.assert_clean()


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("unshare") is None, reason="needs root and unshare(1)")
def test_a_live_run_in_another_pid_namespace_keeps_its_lease(suite: Suite, farm: Any) -> None:
    """A run in its own PID namespace (a container sharing the temp dir) is pid 1 there: by pid and start time
    alone it would look dead here. The next run leaves its lease alone and says so once."""
    controller = farm(2)
    suite.pytester.makepyfile(test_hold=HOLDING_TEST, test_nothing="def test_nothing():\n    pass\n")
    held, go = _start_holding_run(suite, "held", "unshare", "--pid", "--fork", "--mount-proc", "--kill-child")
    try:
        (held_lease,) = controller.leases()
        result = suite.pytester.runpytest_subprocess(*lease_args(suite), "test_nothing.py", timeout=60)
        result.assert_outcomes(passed=1)
        out = result.stdout.str()
        assert out.count("left alone") == 1, out
        result.stdout.fnmatch_lines(
            [f"jumpstarter mount: 1 record in {suite.mount_dir} belongs to * (pid 1 in PID namespace *); left alone"]
        )
        assert not controller.leases()[held_lease]["ended"] and held_lease not in out
    finally:
        go.write_text("")
        out, _ = held.communicate(timeout=60)
    assert held.returncode == 0, out
    assert controller.leases()[held_lease]["ended"]  # released by its own run, at its end
    suite.assert_clean()


def test_small_pool_waits_visibly_then_gives_up(suite: Suite, farm: Any) -> None:
    """One board, two workers: the second says it waits, then its device tests error clearly; others run."""
    farm(1)
    suite.pytester.makepyfile(
        test_pool="""
        import time

        def test_device(jmp_client):
            time.sleep(6)

        def test_without_device():
            pass
        """
    )
    args = lease_args(suite, "-n", "2", "--dist=each", "--jmp-mount-lease-timeout=4s")
    result = suite.pytester.runpytest_subprocess(*args, timeout=120)
    result.assert_outcomes(passed=3, errors=1)
    assert "jumpstarter mount: waiting for a device matching board=rpi4 (gw" in result.stderr.str()
    result.stdout.fnmatch_lines(
        ["*gave up waiting for a device matching board=rpi4 after 4 s (--jmp-mount-lease-timeout*"]
    )
    assert "Traceback" not in result.stdout.str()
    suite.assert_clean()


def test_shared_lease_is_never_released(suite: Suite, farm: Any) -> None:
    """--jmp-mount-lease NAME: every worker uses that lease; it is not ours, so it stays.
    A failed test's report names the lease and the exporter."""
    controller = farm(1)
    controller.add_lease("team-lease", "board-1")
    suite.pytester.makepyfile(
        test_shared="def test_device(jmp_client):\n    pass\n\ndef test_fails(jmp_client):\n    assert False\n"
    )
    args = [a for a in lease_args(suite, "-n", "2", "--dist=each") if "selector" not in a]
    result = suite.pytester.runpytest_subprocess(*args, "--jmp-mount-lease=team-lease", timeout=120)
    result.assert_outcomes(passed=2, failed=2)
    result.stdout.fnmatch_lines(
        ["*- jumpstarter mount -*", "lease:         team-lease (client lab)", "exporter:      board-1"]
    )
    assert controller.leases() == {
        "team-lease": {"selector": None, "alias": "lab", "client_pid": 0, "exporter": "board-1", "ended": False}
    }
    suite.assert_clean()


@pytest.mark.parametrize("value", ["soon", "0"])
def test_malformed_lease_timeout_is_a_usage_error(pytester: pytest.Pytester, value: str) -> None:
    result = pytester.runpytest_subprocess(
        "-p",
        "no:cacheprovider",
        "--jmp-mount-client=lab",
        "--jmp-mount-selector=a=b",
        f"--jmp-mount-lease-timeout={value}",
    )
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"*--jmp-mount-lease-timeout: cannot read '{value}'*"])
