"""One authenticated ssh connection that later device commands share: ``SshMaster``.

A new ``ssh`` per device command pays a TCP connect, a key exchange and a login: five or more
round trips, about 0.5 s at 40 ms. OpenSSH's connection sharing opens that connection once
(``ssh -N -o ControlMaster=yes``) and every later ``ssh -o ControlPath=...`` asks the master,
through a Unix socket, for a new session channel on it: two round trips (channel open, exec)
plus the command. It is the very ssh binary, argv, sealed config, identity and host-key rule of
a one-off command (the master is started from them), so nothing about trust changes; the
server side needs nothing (Dropbear serves many channels per connection too).

The seal (``sealing``) turns connection sharing off for the user's own config, because a
master someone else opened would skip our host-key check. Ours is no such side door: its
socket lives in a private 0700 folder of this user (``ownedfolders``, kind "ssh-master"),
at a path only we name on the command line; the user's config never names it (``ControlPath``
and ``ControlMaster`` are not in ``sealing.CONFIG_ALLOWED``) and a caller's own ``Control*``
options are dropped. The master runs in its own session with a parent-death signal, so it
ends with this process (``kill -9`` included) and removes its socket; the folder it leaves
then is swept by the next run (``OwnedFolders.sweep``). ``ControlPersist=no``: it never
outlives its caller by design.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from jumpstarter_driver_ssh_mount.common.childprocess import die_with_parent_prefix, spawn_from_lasting_thread
from jumpstarter_driver_ssh_mount.common.ownedfolders import OwnedFolders
from jumpstarter_driver_ssh_mount.ssh.optionkeys import option_key
from jumpstarter_driver_ssh_mount.ssh.sealing import sealed_environment

#: ``<tmp>/jmp-mount-ssh-master-<uid>/<random>/``: one folder per master, with its control socket.
MASTER_FOLDERS = OwnedFolders("ssh-master")
#: The options a caller may not set for a shared connection: ours decide where its socket is.
CONTROL_KEYS = frozenset({"controlmaster", "controlpath", "controlpersist"})
#: The master notices a frozen or vanished device after 5 s x 3 (then the next command opens a new one).
KEEPALIVE_OPTIONS: tuple[str, ...] = ("ServerAliveInterval=5", "ServerAliveCountMax=3")
#: Seconds the master gets to exit after SIGTERM, before SIGKILL.
CLOSE_GRACE = 2.0
#: How often the socket's appearance is checked while the master logs in, seconds.
POLL_INTERVAL = 0.005


class MasterFailed(Exception):
    """The master did not come up: ssh exited (``returncode``, ``stderr``: for diagnosis) or timed out."""

    def __init__(self, reason: str, returncode: int | None = None, stderr: str = "") -> None:
        super().__init__(reason)
        self.returncode = returncode
        self.stderr = stderr


def without_control(options: Sequence[str]) -> list[str]:
    """``options`` minus any ``Control*`` one (the shared connection's own decide)."""
    return [o for o in options if option_key(o) not in CONTROL_KEYS]


class SshMaster:
    """A control socket in a new private folder; ``start`` opens the master connection behind it."""

    def __init__(self) -> None:
        self.folder = MASTER_FOLDERS.make()
        self.socket = self.folder / "control"
        self.process: subprocess.Popen[bytes] | None = None

    def _path_option(self) -> str:
        return "ControlPath=" + str(self.socket).replace("%", "%%")  # ssh expands % tokens in it

    def master_options(self) -> list[str]:
        """The ``-o`` options of the master's own ssh (after the caller's, without their ``Control*``)."""
        return ["ControlMaster=yes", self._path_option(), "ControlPersist=no", *KEEPALIVE_OPTIONS]

    def client_options(self) -> list[str]:
        """The ``-o`` options of an ssh that rides the master (and connects itself if the master is gone)."""
        return ["ControlMaster=no", self._path_option()]

    @property
    def alive(self) -> bool:
        """True while the master runs and its socket is there."""
        return self.process is not None and self.process.poll() is None and self.socket.exists()

    def start(self, argv: Sequence[str], timeout: float, env: Mapping[str, str] | None = None) -> None:
        """Run ``argv`` (an ``ssh -N`` with ``master_options``; ``env`` added to the sealed environment);
        return once it logged in and listens.

        :raises MasterFailed: it exited first (its status and stderr) or ``timeout`` seconds passed
            (then it is ended).
        """
        stderr = self.folder / "stderr"
        with open(stderr, "wb") as err:
            self.process = spawn_from_lasting_thread(
                lambda: subprocess.Popen(
                    [*die_with_parent_prefix(), *argv],
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL,
                    stderr=err,
                    start_new_session=True,
                    env={**sealed_environment(), **(env or {})},
                )
            )
        deadline = time.monotonic() + timeout
        try:
            while not self.socket.exists():
                if self.process.poll() is not None:
                    said = _read_text(stderr)
                    raise MasterFailed(f"ssh exited with code {self.process.returncode}", self.process.returncode, said)
                if time.monotonic() > deadline:
                    raise MasterFailed(f"no connection within {timeout:g}s", None, _read_text(stderr))
                time.sleep(POLL_INTERVAL)
        except BaseException:
            self._end()
            raise

    def _end(self) -> None:
        process = self.process
        if process is None:
            return
        for sig in (signal.SIGTERM, signal.SIGKILL):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, sig)
            try:
                process.wait(timeout=CLOSE_GRACE)
                break
            except subprocess.TimeoutExpired:
                continue

    def close(self) -> None:
        """End the master (its channels with it), and remove its folder. Safe to call twice."""
        try:
            self._end()
        finally:
            if self.folder.exists():
                MASTER_FOLDERS.remove(self.folder)


def _read_text(path: Path) -> str:
    with contextlib.suppress(OSError):
        return path.read_text(errors="replace").strip()[-2000:]
    return ""
