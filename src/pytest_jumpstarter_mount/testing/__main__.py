"""``python -m pytest_jumpstarter_mount.testing DIR``: serve a loopback device until Ctrl+C."""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys

from .device import LoopbackDevice


def main(argv: list[str] | None = None) -> int:
    """Run a loopback device in DIR until Ctrl+C; print how to use it."""
    parser = argparse.ArgumentParser(prog="python -m pytest_jumpstarter_mount.testing", description=main.__doc__)
    parser.add_argument("dir", help="a new directory for the device's files, keys and exporter config")
    parser.add_argument("--no-chroot", action="store_true", help="serve host paths, even as root")
    args = parser.parse_args(argv)
    with LoopbackDevice(args.dir, chroot=not args.no_chroot) as device:
        config = device.exporter_config(device.base / "exporter.yaml")
        print(f"device: sshd on {device.host}:{device.port}, files in {device.root}")
        print(f"  pytest --jmp-mount-exporter-config={config} --jmp-mount-remote={device.remote('/var/log')}")
        print(f"  jmp shell --exporter-config {config}")
        print("Ctrl+C stops it.", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            signal.pause()
    return 0


if __name__ == "__main__":
    sys.exit(main())
