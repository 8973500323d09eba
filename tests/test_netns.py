"""A lab in two network namespaces: the device and a standalone exporter on one "host", the
test suite on another, joined by a veth pair. Both namespaces, and every address in them,
are made by this test; nothing touches the default namespace's network.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from helpers import (
    LAB_DEVICE_ADDR,
    LoopbackDevice,
    StandaloneExporter,
    child_pids,
    live_processes_mentioning,
    sshfs_mounts,
    summary_outcomes,
)

DEVICE_ADDR = LAB_DEVICE_ADDR  # the device and exporter's namespace; the test host's is LAB_CLIENT_ADDR
EXPORTER_PORT = 7777


def test_standalone_exporter_across_namespaces(lab: tuple[str, str], tmp_path: Path, mount_base: Path) -> None:
    dev_ns, cli_ns = lab
    device = LoopbackDevice(tmp_path / "device", host=DEVICE_ADDR, netns=dev_ns).setup().start()
    exporter = None
    try:
        config = device.exporter_config(tmp_path / "exporter.yaml")
        exporter = StandaloneExporter(config, host=DEVICE_ADDR, port=EXPORTER_PORT, netns=dev_ns)
        suite = tmp_path / "suite"
        suite.mkdir()
        (suite / "test_lab.py").write_text(
            "import os, socket\n\n"
            "def test_read_write(remote_fs):\n"
            "    assert (remote_fs / 'etc/os-release').read_text().startswith('NAME=')\n"
            "    (remote_fs / 'data/from-lab.txt').write_text('across the veth')\n"
            "    (remote_fs / 'data/from-lab.txt').unlink()\n\n"
            "def test_where(remote_fs):\n"  # auto: the device answers across the veth with the vouched key
            "    assert remote_fs.direct\n"
            f"    assert remote_fs.host == {DEVICE_ADDR!r}\n"
        )
        mount_dir = mount_base / f"netns-{os.getpid()}"
        base_cmd = [
            "nsenter",
            f"--net=/run/netns/{cli_ns}",
            sys.executable,
            "-m",
            "pytest",
            str(suite),
            "-p",
            "no:cacheprovider",
            f"--rootdir={suite}",
            f"--jmp-mount-dir={mount_dir}",
            f"--jmp-mount-tls-grpc={DEVICE_ADDR}:{EXPORTER_PORT}",
            "--jmp-mount-tls-grpc-insecure",
            f"--jmp-mount-remote={device.remote('/')}",
        ]
        wait = subprocess.run(  # the exporter is reachable from the client namespace
            [
                "nsenter",
                f"--net=/run/netns/{cli_ns}",
                sys.executable,
                "-c",
                "import socket, time\n"
                "for _ in range(300):\n"
                "    try:\n"
                f"        socket.create_connection(({DEVICE_ADDR!r}, {EXPORTER_PORT}), 1).close(); break\n"
                "    except OSError: time.sleep(0.1)\n"
                "else: raise SystemExit(1)\n",
            ],
            timeout=60,
        )
        assert wait.returncode == 0, "standalone exporter not reachable across the veth"
        for direct in (False, True):
            env = {**os.environ, "DIRECT": "1" if direct else ""}
            cmd = base_cmd + (["--jmp-mount-direct"] if direct else [])
            result = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=180, cwd=suite)
            assert summary_outcomes(result.stdout) == {"passed": 2}, result.stdout[-3000:] + result.stderr[-3000:]
        assert sshfs_mounts(mount_dir) == []
        assert live_processes_mentioning(str(mount_dir)) == []
        if mount_dir.exists():
            assert os.listdir(mount_dir) == []
            mount_dir.rmdir()
    finally:
        if exporter is not None:
            exporter.pids = [exporter.process.pid, *child_pids(exporter.process.pid)]
            exporter.stop()
        device.stop()
