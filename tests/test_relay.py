"""The exporter's one-shot relay: the driver's relays on 127.0.0.1, the client's choice of it,
and a network-namespace lab where only the exporter reaches the device."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import anyio
import pytest
from jumpstarter.common.exceptions import ConfigurationError
from jumpstarter.common.utils import serve

from helpers import (
    LAB_DEVICE_ADDR,
    LoopbackDevice,
    StandaloneExporter,
    child_pids,
    make_driver,
    netns_lab,
    sshfs_mounts,
    wait_until,
)
from jumpstarter_driver_ssh_mount import ConnectError
from jumpstarter_driver_ssh_mount.reach.relay import Relays


def banner(sock: socket.socket) -> bytes:
    """The first bytes the far end sends (an sshd's version line)."""
    sock.settimeout(5)
    return sock.recv(64)


def dial(port: int, token: bytes) -> socket.socket:
    """A connection to the relay on 127.0.0.1:``port`` that has sent ``token``, as the client's dialer does."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    sock.sendall(token)
    return sock


def refused(host: str, port: int) -> bool:
    try:
        socket.create_connection((host, port), timeout=2).close()
    except ConnectionRefusedError:
        return True
    return False


# -- the driver's relays, on 127.0.0.1 ---------------------------------------------------------
@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"relay_listen": "0.0.0.0"}, r"^SSHMount relay_listen '0\.0\.0\.0' is a wildcard address"),
        ({"relay_listen": "10.0.0.1:7000"}, r"^SSHMount relay_listen .*ports go in relay_ports"),
        ({"relay_listen": " "}, r"^SSHMount relay_listen is empty"),
        ({"relay_listen": "127.0.0.1", "relay_ports": "7100-"}, r"^SSHMount relay_ports '7100-' is not a port range"),
        ({"relay_listen": "127.0.0.1", "relay_ports": "9-2"}, r"^SSHMount relay_ports '9-2' is not a port range"),
        ({"relay_ports": "7100-7199"}, r"^SSHMount relay_ports is set without relay_listen"),
    ],
)
def test_relay_config_errors_name_the_field(device: LoopbackDevice, config: dict, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        make_driver(device, **config)


def test_relay_takes_one_connection_then_refuses(device: LoopbackDevice) -> None:
    relays = Relays("127.0.0.1", None)
    relay = relays.open((device.host, device.port))
    with dial(relay.port, relay.token) as first:
        assert banner(first).startswith(b"SSH-2.0-")  # the device's sshd, through the relay
        assert refused("127.0.0.1", relay.port)
        assert relay.alive
    wait_until(lambda: len(relays) == 0, 5, "the relay to end when its client closes")


def test_relay_window_missed_closes_the_listener(device: LoopbackDevice) -> None:
    relays = Relays("127.0.0.1", None, window=0.2)
    relay = relays.open((device.host, device.port))
    wait_until(lambda: not relay.alive, 5, "the listener to close after its window")
    assert refused("127.0.0.1", relay.port)
    assert len(relays) == 0


def test_relay_close_all_ends_the_connection(device: LoopbackDevice) -> None:
    relays = Relays("127.0.0.1", None)
    waiting, used = relays.open((device.host, device.port)), relays.open((device.host, device.port))
    with dial(used.port, used.token) as conn:
        banner(conn)
        relays.close_all()
        assert conn.recv(64) == b""  # ended by the exporter
    assert not waiting.alive and not used.alive and len(relays) == 0
    assert refused("127.0.0.1", waiting.port)


@pytest.mark.parametrize("end", ["close", "reset"])
def test_driver_close_and_reset_end_its_relays(device: LoopbackDevice, end: str) -> None:
    driver = make_driver(device, relay_listen="127.0.0.1")
    waiting, used = anyio.run(driver.open_relay), anyio.run(driver.open_relay)
    with dial(int(used["port"]), bytes.fromhex(used["token"])) as conn:
        banner(conn)
        getattr(driver, end)()  # the lease or the exporter ends
        assert conn.recv(64) == b""
    assert refused("127.0.0.1", int(waiting["port"])) and len(driver._relays) == 0


def test_no_relay_offered_without_relay_listen(device: LoopbackDevice) -> None:
    offer = anyio.run(make_driver(device).open_relay)
    assert offer["offered"] is False and offer["problem"] == "the exporter offers no relay (relay_listen is not set)"


def test_relay_ports_exhausted(device: LoopbackDevice) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        relays = Relays("127.0.0.1", (port, port))
        with pytest.raises(OSError, match=rf"^every port of relay_ports {port}-{port} on 127.0.0.1 is in use"):
            relays.open((device.host, device.port))


# -- the client's choice, with the exporter in-process ------------------------------------------
@pytest.fixture
def relay_driver(device: LoopbackDevice):
    """An SSHMount publishing no device address, with a relay on 127.0.0.1."""
    return make_driver(device, enable_address=False, relay_listen="127.0.0.1")


def test_auto_uses_the_relay_when_the_address_is_unpublished(
    relay_driver, device: LoopbackDevice, mountpoint: Path
) -> None:
    with serve(relay_driver) as client, client.mounted(mountpoint, remote_path=device.remote("/")) as m:
        assert m.transport == "relay"
        assert "relay at 127.0.0.1:" in m.transport_note and "vouched host key" in m.transport_note
        assert "via exporter relay" in repr(m)
        assert (m.mountpoint / "etc/os-release").read_text().startswith("NAME=")
        (m.mountpoint / "data/relay.txt").write_text("through the relay")
        assert (device.root / "data/relay.txt").read_text() == "through the relay"
        (m.mountpoint / "data/relay.txt").unlink()
        assert len(relay_driver._relays) == 1
    assert len(relay_driver._relays) == 0  # the mount's end closed its relay


def test_device_commands_take_the_relay_as_mounts_do(relay_driver, device: LoopbackDevice) -> None:
    """The route plan is shared: with no published address, ``auto`` runs a command through the relay too."""
    (device.root / "data/relayed.txt").write_text("over the relay\n")
    with serve(relay_driver) as client:
        result = client.run(f"cat {device.remote('/data/relayed.txt')}", check=True)
        assert result.transport == "relay" and result.warnings == []
        assert result.stdout == "over the relay\n"
        forced = client.run("true", transport="relay", check=True)
        assert forced.transport == "relay"
        assert client.run("true", transport="forward").transport == "forward"
    assert len(relay_driver._relays) == 0  # each command released its relay


def test_forced_relay_and_direct_first_in_auto(device: LoopbackDevice, mountpoint: Path) -> None:
    driver = make_driver(device, relay_listen="127.0.0.1")  # the address is published and reachable
    with serve(driver) as client:
        with client.mounted(mountpoint, remote_path=device.remote("/")) as m:
            assert m.transport == "direct"
        with client.mounted(mountpoint, remote_path=device.remote("/"), transport="relay") as m:
            assert m.transport == "relay" and m.port != device.port
            assert (m.mountpoint / "etc/os-release").exists()
        with client.mounted(mountpoint, remote_path=device.remote("/"), transport="auto", insecure=True) as m:
            assert m.transport == "forward"  # an unverified mount never takes the plain-TCP relay
    assert len(driver._relays) == 0


def test_forced_relay_without_a_relay_is_a_clear_error(device: LoopbackDevice, mountpoint: Path) -> None:
    with serve(make_driver(device, enable_address=False)) as client:
        with pytest.raises(ConnectError, match=r"^transport 'relay': the exporter offers no relay .*relay_listen"):
            client.mounted(mountpoint, remote_path=device.remote("/"), transport="relay")
        with client.mounted(mountpoint, remote_path=device.remote("/")) as m:
            assert m.transport == "forward"
            assert "offers no relay" in m.transport_note


def test_relay_ports_exhausted_falls_back_to_the_forward(device: LoopbackDevice, mountpoint: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        driver = make_driver(device, enable_address=False, relay_listen="127.0.0.1", relay_ports=str(port))
        with serve(driver) as client, client.mounted(mountpoint, remote_path=device.remote("/")) as m:
            assert m.transport == "forward"
            assert "in use" in m.transport_note
            [warning] = m.warnings
            assert re.match(
                r"using the Jumpstarter port forward, not the exporter's relay: the exporter could "
                r"not open a relay \(every port of relay_ports .* is in use\)$",
                warning,
            )


def test_relay_window_missed_falls_back_to_the_forward(relay_driver, device: LoopbackDevice, mountpoint: Path) -> None:
    relay_driver._relays.window = 0  # closed before sshfs connects
    with serve(relay_driver) as client, client.mounted(mountpoint, remote_path=device.remote("/")) as m:
        assert m.transport == "forward"
        [warning] = m.warnings
        assert re.match(
            r"using the Jumpstarter port forward, not the exporter's relay: the relay at "
            r"127\.0\.0\.1:\d+ failed \(connection refused",
            warning,
        )
    assert len(relay_driver._relays) == 0


# -- the lab: only the exporter reaches the device ----------------------------------------------
RELAY_EXPORTER, PLAIN_EXPORTER, DOOMED_EXPORTER = 7781, 7782, 7783
RELAY_PORTS = (7790, 7799)

CLIENT = Path(__file__).with_name("relay_lab_client.py")  # run in the test host's namespace


def ns_run(ns: str, *argv: str, **kwargs) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["nsenter", f"--net=/run/netns/{ns}", *argv], capture_output=True, text=True, **kwargs)


def tcp_sockets(ns: str) -> list[tuple[int, str]]:
    """(local port, state) of every TCP socket in network namespace ``ns`` (state 0A = LISTEN, 01 = ESTABLISHED)."""
    table = ns_run(ns, "cat", "/proc/net/tcp", "/proc/net/tcp6").stdout
    rows = [line.split() for line in table.splitlines()]
    return [(int(row[1].rsplit(":", 1)[1], 16), row[3]) for row in rows if len(row) > 3 and row[0] != "sl"]


def relay_sockets(ns: str) -> list[tuple[int, str]]:
    """Listening or connected sockets on the relay ports in ``ns`` (TIME_WAIT is none of ours)."""
    low, high = RELAY_PORTS
    return [(port, state) for port, state in tcp_sockets(ns) if low <= port <= high and state in ("0A", "01")]


class Lab:
    """Device sshd on 127.0.0.1 inside the exporter's namespace; exporters on the veth address."""

    def __init__(self, dev_ns: str, cli_ns: str, base: Path, mount_dir: Path) -> None:
        self.dev_ns, self.cli_ns, self.base, self.mount_dir = dev_ns, cli_ns, base, mount_dir
        self.device = LoopbackDevice(base / "device", host="127.0.0.1", netns=dev_ns).setup().start()

    def exporter(self, port: int, relay: bool) -> StandaloneExporter:
        mount = {"relay_listen": LAB_DEVICE_ADDR, "relay_ports": "-".join(map(str, RELAY_PORTS))} if relay else None
        config = self.device.exporter_config(self.base / f"exporter-{port}.yaml", mount_config=mount)
        exporter = StandaloneExporter(config, host=LAB_DEVICE_ADDR, port=port, netns=self.dev_ns)
        probe = f"import socket; socket.create_connection(({LAB_DEVICE_ADDR!r}, {port}), 1).close()"
        try:
            wait_until(lambda: ns_run(self.cli_ns, sys.executable, "-c", probe).returncode == 0, 60, "the exporter")
        except AssertionError:
            exporter.stop()
            raise
        exporter.pids = [exporter.process.pid, *child_pids(exporter.process.pid)]
        return exporter

    def argv(self, port: int, action: str, *args: str) -> list[str]:
        """The client script in the test host's namespace, against the exporter on ``port``."""
        return [
            "nsenter",
            f"--net=/run/netns/{self.cli_ns}",
            sys.executable,
            str(CLIENT),
            action,
            f"{LAB_DEVICE_ADDR}:{port}",
            self.device.remote("/"),
            str(self.mount_dir),
            *args,
        ]

    def run(self, port: int, action: str, *args: str) -> dict:
        result = subprocess.run(self.argv(port, action, *args), capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, result.stderr[-3000:]
        return json.loads(result.stdout.splitlines()[-1])


@pytest.fixture(scope="module")
def relay_lab(tmp_path_factory: pytest.TempPathFactory, mount_base: Path) -> Iterator[Lab]:
    """The lab with two exporters: RELAY_EXPORTER offers relays, PLAIN_EXPORTER does not."""
    with netns_lab("r") as (dev_ns, cli_ns), ExitStack() as stack:
        mount_dir = mount_base / f"relay-{os.getpid()}"
        mount_dir.mkdir()
        lab = Lab(dev_ns, cli_ns, tmp_path_factory.mktemp("relay-lab"), mount_dir)
        stack.callback(lab.device.stop)
        stack.enter_context(lab.exporter(RELAY_EXPORTER, relay=True))
        stack.enter_context(lab.exporter(PLAIN_EXPORTER, relay=False))
        yield lab
        assert sshfs_mounts(mount_dir) == []
        if mount_dir.exists():
            mount_dir.rmdir()


def test_lab_auto_picks_the_relay_and_reads_and_writes(relay_lab: Lab) -> None:
    result = relay_lab.run(RELAY_EXPORTER, "mount", "auto")
    assert result.get("transport") == "relay", result
    assert result["read"].startswith("NAME=") and result["warnings"] == []
    assert "127.0.0.1:2222" in result["note"] and f"relay at {LAB_DEVICE_ADDR}:" in result["note"]
    written = relay_lab.device.root / "data/lab.txt"
    assert written.read_text() == "through relay"
    written.unlink()
    wait_until(lambda: relay_sockets(relay_lab.dev_ns) == [], 5, "no relay socket left")


def test_lab_auto_without_a_relay_picks_the_forward(relay_lab: Lab) -> None:
    result = relay_lab.run(PLAIN_EXPORTER, "mount", "auto")
    assert result.get("transport") == "forward", result
    assert "offers no relay" in result["note"]
    (relay_lab.device.root / "data/lab.txt").unlink()


def test_lab_forced_relay_without_a_relay_is_a_clear_error(relay_lab: Lab) -> None:
    result = relay_lab.run(PLAIN_EXPORTER, "mount", "relay")
    assert result["error"] == "ConnectError", result
    assert result["message"].startswith("transport 'relay': the exporter offers no relay (relay_listen is not set)")


def test_lab_second_connection_is_refused(relay_lab: Lab) -> None:
    result = relay_lab.run(RELAY_EXPORTER, "second")
    assert result["stolen"] == ""  # from the test host's network, without the token: not a byte of the device
    assert result["banner"].startswith("SSH-2.0-")  # the device's sshd, reached only from the exporter's side
    assert result["second"] == "refused"
    assert result["after_close"] == ""  # close_relay ended the first connection
    wait_until(lambda: relay_sockets(relay_lab.dev_ns) == [], 5, "no relay socket left")


def test_lab_exporter_killed_mid_mount_fails_fast(relay_lab: Lab) -> None:
    exporter = relay_lab.exporter(DOOMED_EXPORTER, relay=True)
    holder = None
    try:
        argv = relay_lab.argv(DOOMED_EXPORTER, "hold")
        holder = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert holder.stdout is not None and holder.stdin is not None
        assert json.loads(holder.stdout.readline()) == {"transport": "relay"}
        for pid in reversed(exporter.pids):
            os.kill(pid, signal.SIGKILL)
        time.sleep(0.5)
        holder.stdin.write("go\n")
        holder.stdin.flush()
        result = json.loads(holder.stdout.readline())
        assert holder.wait(60) == 0
    finally:
        if holder is not None and holder.poll() is None:
            holder.kill()
            holder.wait()
        exporter.stop()
    assert result["error"] == "Input/output error", result
    assert result["seconds"] < 5, result
    wait_until(lambda: relay_sockets(relay_lab.dev_ns) == [], 5, "no relay socket left")


def test_lab_no_listener_of_ours_remains(relay_lab: Lab) -> None:
    relay_lab.run(RELAY_EXPORTER, "mount", "relay")
    (relay_lab.device.root / "data/lab.txt").unlink()
    listening = {port for port, state in tcp_sockets(relay_lab.dev_ns) if state == "0A"}
    assert listening == {relay_lab.device.port, RELAY_EXPORTER, PLAIN_EXPORTER}  # sshd and the exporters only
    assert relay_sockets(relay_lab.dev_ns) == []
