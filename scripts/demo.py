"""`make demo`: a loopback "device", the example suite against it, and proof nothing is left.

Starts an sshd on 127.0.0.1 whose filesystem looks like a small device (chrooted when
root), writes an exporter config for it, runs examples/ with the plugin, checks that
no sshfs mount or process remains, then stops the device and removes what it made.
Exits non-zero if anything fails.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from jumpstarter_driver_ssh_mount.common.procfs import processes
from jumpstarter_driver_ssh_mount.sshfs.mountinfo import read_mounts, sshfs_mounts_under
from pytest_jumpstarter_mount.testing import LoopbackDevice

HERE = Path(__file__).resolve().parent.parent


def say(text: str) -> None:
    print(f"\033[1m==> {text}\033[0m" if sys.stdout.isatty() else f"==> {text}", flush=True)


def mounts_under(path: Path) -> list[str]:
    """Every mount (any filesystem) at or below ``path``: what must stop a recursive delete."""
    base = str(path).rstrip("/") + "/"
    return [e.mountpoint for e in read_mounts() if (e.mountpoint + "/").startswith(base)]


def sshfs_processes_under(path: Path) -> list[str]:
    """PIDs of live sshfs processes whose command line names ``path``."""
    return [
        str(p.pid)
        for p in processes()
        if (argv := p.argv()) and os.path.basename(argv[0]) == "sshfs" and str(path) in " ".join(argv)
    ]


def main() -> int:
    work = Path(tempfile.mkdtemp(prefix="jmp-demo-"))
    mount_dir = work / "mounts"
    failures = []
    try:
        with LoopbackDevice(work / "device", chroot=True) as device:
            config = device.exporter_config(work / "exporter.yaml")
            say(
                f"device: sshd on {device.host}:{device.port}"
                f"{' (chrooted: paths as on a board)' if device.chroot else ''}, files in {device.root}"
            )
            say(f"exporter config: {config}")
            cmd = [
                sys.executable,
                "-m",
                "pytest",
                str(HERE / "examples"),
                "-v",
                "-s",
                "-p",
                "no:cacheprovider",
                f"--rootdir={HERE / 'examples'}",
                f"--jmp-mount-exporter-config={config}",
                f"--jmp-mount-remote={device.remote('/var/log')}",
                f"--jmp-mount-dir={mount_dir}",
                f"--jmp-mount-collect={device.remote('/var/log')}/*",  # copied next to the run if a test fails
                f"--jmp-mount-artifacts={work / 'artifacts'}",
            ]
            say("running: pytest examples --jmp-mount-exporter-config=... --jmp-mount-remote=/var/log")
            result = subprocess.run(cmd, cwd=HERE)
            if result.returncode != 0:
                failures.append(f"the example suite failed (exit {result.returncode})")
            left = [e.mountpoint for e in sshfs_mounts_under(mount_dir)]
            procs = sshfs_processes_under(mount_dir)
            if left or procs:
                failures.append(f"left behind: mounts {left}, sshfs processes {procs}")
            say(f"everything unmounted: {'yes' if not left and not procs else 'NO'}")
        say("device stopped")
    finally:
        if mounts_under(work):
            failures.append(f"refusing to remove {work}: something is still mounted below it")
        else:
            shutil.rmtree(work)  # nothing is mounted below it: checked just above
    if failures:
        for failure in failures:
            say(f"FAILED: {failure}")
        return 1
    say("demo passed: mounted, tested, unmounted, cleaned up")
    return 0


if __name__ == "__main__":
    sys.exit(main())
