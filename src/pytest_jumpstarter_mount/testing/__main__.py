"""``python -m pytest_jumpstarter_mount.testing DIR``: serve a loopback device until stopped.

It behaves like a service: SIGINT (Ctrl+C), SIGTERM (``kill PID``) and SIGHUP stop it and
its sshd, in the foreground or started in the background (where a non-interactive shell
starts it with SIGINT ignored, so every handler is set explicitly); its sshd dies with it
even on ``kill -9``. If its sshd dies first, it says so and exits with status 1.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from pathlib import Path
from types import FrameType

from pytest_jumpstarter_mount.testing.chroot import BOUND_FROM_HOST, DEVICE_DIRS
from pytest_jumpstarter_mount.testing.device import LoopbackDevice, can_chroot

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
PREFIX = "loopback device:"


class Stopped(Exception):
    """A stop signal arrived."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def _stop(signum: int, frame: FrameType | None) -> None:
    """The first stop signal ends the wait; later ones are ignored while the device stops."""
    for sig in STOP_SIGNALS:
        signal.signal(sig, signal.SIG_IGN)
    raise Stopped(signum)


def describe(device: LoopbackDevice, config: Path, *, asked_chroot: bool) -> list[str]:
    """What the device is, whether it is chrooted, and the paths and commands a test would use."""
    assert device.process is not None
    lines = [f"{PREFIX} sshd (pid {device.process.pid}) on {device.host}:{device.port}, run by pid {os.getpid()}"]
    if device.chroot:
        lines.append(
            f"  chrooted: yes; device paths as on a board: {', '.join(DEVICE_DIRS)} "
            "(/proc and /sys are this host's kernel, read-only where it matters)"
        )
        host_dirs = ", ".join(f"/{d} = {device.root / d}" for d in BOUND_FROM_HOST)
        lines.append(f"  device files on this host: {host_dirs}")
    else:
        why = "chrooting needs root and unshare" if asked_chroot and not can_chroot() else "--no-chroot"
        lines.append(f"  chrooted: no ({why}); device paths are this host's: /var/log is {device.remote('/var/log')}")
        lines.append(f"  device files on this host: {device.root}")
    lines += [
        f"  exporter config: {config}",
        f"  pytest --jmp-mount-exporter-config={config} --jmp-mount-remote={device.remote('/var/log')}",
        f"  jmp shell --exporter-config {config}",
        f"Ctrl+C, or kill -TERM/-HUP {os.getpid()}, stops it and its sshd.",
    ]
    return lines


def serve(device: LoopbackDevice, *, asked_chroot: bool) -> int:
    """Start ``device``, print how to use it, and wait for a stop signal (0) or for sshd to die (1)."""
    try:
        device.setup().start()
        config = device.exporter_config(device.base / "exporter.yaml")
        print("\n".join(describe(device, config, asked_chroot=asked_chroot)), flush=True)
        assert device.process is not None
        code = device.process.wait()
        how = f"was killed by {signal.Signals(-code).name}" if code < 0 else f"exited with status {code}"
        print(f"{PREFIX} its sshd (pid {device.process.pid}) {how}; stopping", file=sys.stderr, flush=True)
        print(device.log_tail(), file=sys.stderr, end="", flush=True)
        return 1
    except Stopped as stop:
        print(f"{PREFIX} {stop} received; stopping it and its sshd", flush=True)
        return 0
    finally:
        for sig in STOP_SIGNALS:
            signal.signal(sig, signal.SIG_IGN)  # stopping is not interrupted
        device.stop()


def main(argv: list[str] | None = None) -> int:
    """Run a loopback device in DIR until Ctrl+C, SIGTERM or SIGHUP; print how to use it."""
    parser = argparse.ArgumentParser(prog="python -m pytest_jumpstarter_mount.testing", description=main.__doc__)
    parser.add_argument("dir", help="a new directory for the device's files, keys and exporter config")
    parser.add_argument("--no-chroot", action="store_true", help="serve host paths, even as root")
    args = parser.parse_args(argv)
    previous = {sig: signal.signal(sig, _stop) for sig in STOP_SIGNALS}  # SIGINT too: `cmd &` starts it ignored
    try:
        return serve(LoopbackDevice(args.dir, chroot=not args.no_chroot), asked_chroot=not args.no_chroot)
    except Stopped as stop:  # before the device existed: nothing to stop
        print(f"{PREFIX} {stop} received; stopping", flush=True)
        return 0
    except RuntimeError as exc:  # sshd did not start
        print(f"{PREFIX} {exc}", file=sys.stderr)
        return 1
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


if __name__ == "__main__":
    sys.exit(main())
