"""A standalone exporter for a loopback device: ``jmp run ... --tls-grpc-listener``, stopped by PID.

The device source behind ``--jmp-mount-tls-grpc``, run as a separate process the way a lab
host runs it, so a suite can be tried against it, or a test can kill it.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from pathlib import Path

from jumpstarter_driver_ssh_mount.common.procfs import child_pids
from pytest_jumpstarter_mount.testing.device import free_port, terminate, wait_for_port


class StandaloneExporter:
    """``jmp run --exporter-config CONFIG --tls-grpc-listener HOST:PORT --tls-grpc-insecure``, ended by PID.

    ``jmp run`` serves from a child process; ``pids`` lists both, so a test can kill the one
    that serves, and ``stop`` ends every one of them.
    """

    def __init__(
        self,
        config: str | os.PathLike[str],
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        netns: str | None = None,
        passphrase: str | None = None,
    ) -> None:
        self.host, self.port = host, port or free_port(host)
        jmp = str(Path(sys.executable).with_name("jmp"))
        prefix = ["ip", "netns", "exec", netns] if netns else []
        self.process = subprocess.Popen(
            [
                *prefix,
                jmp,
                "run",
                "--exporter-config",
                str(config),
                "--tls-grpc-listener",
                f"{host}:{self.port}",
                "--tls-grpc-insecure",
                *(["--passphrase", passphrase] if passphrase else []),
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self.pids = [self.process.pid]

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def wait_ready(self, timeout: float = 30.0) -> StandaloneExporter:
        """Return once it accepts connections (only from this namespace), noting its serving child."""
        wait_for_port(self.host, self.port, timeout=timeout)
        self.pids = [self.process.pid, *child_pids(self.process.pid)]
        return self

    def stop(self) -> None:
        """SIGTERM the serving child and the parent, then SIGKILL what is left, by PID."""
        for pid in reversed(self.pids[1:]):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        terminate(self.process)
        for pid in self.pids[1:]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

    def __enter__(self) -> StandaloneExporter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
