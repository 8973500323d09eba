"""A lab in two network namespaces: the device and a standalone exporter on one "host", the
test suite on another, joined by a veth pair. Both namespaces, and every address in them,
are made by this test; nothing touches the default namespace's network.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

from helpers import (
    LAB_DEVICE_ADDR,
    LoopbackDevice,
    StandaloneExporter,
    child_pids,
    ip,
    live_processes_mentioning,
    sshfs_mounts,
    summary_outcomes,
)
from jumpstarter_driver_ssh_mount.reach.transport import PROBE_TIMEOUT

DEVICE_ADDR = LAB_DEVICE_ADDR  # the device and exporter's namespace; the test host's is LAB_CLIENT_ADDR
EXPORTER_PORT = 7777


def in_namespace(ns: str, *argv: str) -> list[str]:
    """``argv`` run in network namespace ``ns`` (the filesystem stays this host's)."""
    return ["nsenter", f"--net=/run/netns/{ns}", *argv]


def wait_for_exporter(cli_ns: str) -> None:
    """Until the standalone exporter accepts connections from the client namespace."""
    wait = subprocess.run(
        in_namespace(
            cli_ns,
            sys.executable,
            "-c",
            "import socket, time\n"
            "for _ in range(300):\n"
            "    try:\n"
            f"        socket.create_connection(({DEVICE_ADDR!r}, {EXPORTER_PORT}), 1).close(); break\n"
            "    except OSError: time.sleep(0.1)\n"
            "else: raise SystemExit(1)\n",
        ),
        timeout=60,
    )
    assert wait.returncode == 0, "standalone exporter not reachable across the veth"


def pytest_in(cli_ns: str, suite: Path, mount_dir: Path, device: LoopbackDevice) -> list[str]:
    """pytest on ``suite`` in the client namespace, through the standalone exporter."""
    return in_namespace(
        cli_ns,
        sys.executable,
        "-m",
        "pytest",
        str(suite),
        "-p",
        "no:cacheprovider",
        "-s",
        f"--rootdir={suite}",
        f"--jmp-mount-dir={mount_dir}",
        f"--jmp-mount-tls-grpc={DEVICE_ADDR}:{EXPORTER_PORT}",
        "--jmp-mount-tls-grpc-insecure",
        f"--jmp-mount-remote={device.remote('/')}",
    )


def assert_nothing_left(mount_dir: Path) -> None:
    assert sshfs_mounts(mount_dir) == []
    assert live_processes_mentioning(str(mount_dir)) == []
    if mount_dir.exists():
        assert os.listdir(mount_dir) == []
        mount_dir.rmdir()


@contextlib.contextmanager
def lab_exporter(dev_ns: str, tmp_path: Path, device_host: str) -> Iterator[LoopbackDevice]:
    """A device at ``device_host`` and a standalone exporter for it, both in ``dev_ns``; stopped after."""
    device = LoopbackDevice(tmp_path / "device", host=device_host, netns=dev_ns).setup().start()
    exporter = None
    try:
        config = device.exporter_config(tmp_path / "exporter.yaml")
        exporter = StandaloneExporter(config, host=DEVICE_ADDR, port=EXPORTER_PORT, netns=dev_ns)
        yield device
    finally:
        if exporter is not None:
            exporter.pids = [exporter.process.pid, *child_pids(exporter.process.pid)]
            exporter.stop()
        device.stop()


def write_suite(tmp_path: Path, name: str, text: str) -> Path:
    """A directory with one test file ``name``; the directory."""
    suite = tmp_path / "suite"
    suite.mkdir()
    (suite / name).write_text(text)
    return suite


def test_standalone_exporter_across_namespaces(lab: tuple[str, str], tmp_path: Path, mount_base: Path) -> None:
    dev_ns, cli_ns = lab
    with lab_exporter(dev_ns, tmp_path, DEVICE_ADDR) as device:
        suite = write_suite(
            tmp_path,
            "test_lab.py",
            "import os, socket\n\n"
            "def test_read_write(remote_fs):\n"
            "    assert (remote_fs / 'etc/os-release').read_text().startswith('NAME=')\n"
            "    (remote_fs / 'data/from-lab.txt').write_text('across the veth')\n"
            "    (remote_fs / 'data/from-lab.txt').unlink()\n\n"
            "def test_where(remote_fs):\n"  # auto: the device answers across the veth with the vouched key
            "    assert remote_fs.direct\n"
            f"    assert remote_fs.host == {DEVICE_ADDR!r}\n",
        )
        mount_dir = mount_base / f"netns-{os.getpid()}"
        base_cmd = pytest_in(cli_ns, suite, mount_dir, device)
        wait_for_exporter(cli_ns)
        for direct in (False, True):
            env = {**os.environ, "DIRECT": "1" if direct else ""}
            cmd = base_cmd + (["--jmp-mount-direct"] if direct else [])
            result = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=180, cwd=suite)
            assert summary_outcomes(result.stdout) == {"passed": 2}, result.stdout[-3000:] + result.stderr[-3000:]
        assert_nothing_left(mount_dir)


HIDDEN_ADDR = "10.231.78.1"  # the device's address on the exporter's side only


def hide_from_the_client(dev_ns: str, cli_ns: str) -> None:
    """Put HIDDEN_ADDR on the exporter's loopback, where the client's packets to it go unanswered.

    The client namespace has an on-link route to it through the veth, and the exporter's
    namespace answers ARP only for the veth's own address: a connection attempt from the
    client gets no answer at all (no refusal), as with a device on the lab's private network.
    """
    veth = dev_ns.removesuffix("-dev") + "b"
    steps = [
        ("-n", dev_ns, "addr", "add", f"{HIDDEN_ADDR}/32", "dev", "lo"),
        ("-n", cli_ns, "route", "add", f"{HIDDEN_ADDR}/32", "dev", veth),
    ]
    for step in steps:
        result = ip(*step)
        assert result.returncode == 0, (step, result.stderr)
    sysctl = ["ip", "netns", "exec", dev_ns, "sysctl", "-qw", "net.ipv4.conf.all.arp_ignore=1"]
    subprocess.run(sysctl, check=True, capture_output=True)


def test_auto_uses_the_forward_when_only_the_exporter_reaches_the_device(
    lab: tuple[str, str], tmp_path: Path, mount_base: Path
) -> None:
    """auto: the published address is silent from the test host, so the forward is chosen within the bound."""
    dev_ns, cli_ns = lab
    hide_from_the_client(dev_ns, cli_ns)
    with lab_exporter(dev_ns, tmp_path, HIDDEN_ADDR) as device:
        suite = write_suite(
            tmp_path,
            "test_hidden.py",
            "import statistics, time\n\n"
            "from jumpstarter_driver_ssh_mount.reach.transport import PROBE_TIMEOUT\n\n"
            "def test_auto_takes_the_forward(remote_fs):\n"
            "    assert remote_fs.transport == 'forward'\n"
            "    assert remote_fs.transport_note == (\n"
            f"        '{HIDDEN_ADDR}:{device.port} did not answer within {PROBE_TIMEOUT:g}s; '\n"
            "        'the exporter offers no relay (relay_listen is not set); '\n"
            "        'host key verified against what the exporter vouches for'\n"
            "    )\n"
            "    assert (remote_fs / 'etc/os-release').read_text().startswith('NAME=')\n"
            "    (remote_fs / 'data/hidden.txt').write_text('through the forward')\n"
            "    (remote_fs / 'data/hidden.txt').unlink()\n\n"
            "def test_within_the_bound(jmp_mount_client, remote_fs):\n"
            "    ready = {'auto': [], 'forward': []}\n"
            "    for _ in range(3):\n"
            "        for transport in ready:\n"
            "            started = time.monotonic()\n"
            "            with jmp_mount_client.mounted(remote_path=remote_fs.remote_path, transport=transport) as m:\n"
            "                ready[transport].append(time.monotonic() - started)\n"
            "                assert m.transport == 'forward'\n"
            "    auto, forward = (statistics.median(ready[t]) for t in ('auto', 'forward'))\n"
            "    print(f'READY auto {auto:.3f}s forward {forward:.3f}s')\n"
            "    assert auto <= forward + PROBE_TIMEOUT + 0.5, ready  # the bound, with room for a shared machine\n",
        )
        mount_dir = mount_base / f"netns-hidden-{os.getpid()}"
        wait_for_exporter(cli_ns)
        cmd = pytest_in(cli_ns, suite, mount_dir, device)
        result = subprocess.run(cmd, capture_output=True, text=True, timeout=180, cwd=suite)
        assert summary_outcomes(result.stdout) == {"passed": 2}, result.stdout[-3000:] + result.stderr[-3000:]
        print(next(line for line in result.stdout.splitlines() if "READY auto" in line))
        assert_nothing_left(mount_dir)
