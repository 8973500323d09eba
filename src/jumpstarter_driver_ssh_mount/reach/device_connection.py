"""Device commands over one ssh connection per device: ``DeviceConnection``.

``run_on_device`` logs in anew for every command (five or more round trips). A
``DeviceConnection`` opens one connection on its first command, an OpenSSH master
(``ssh.master.SshMaster``) reached exactly as ``run_on_device`` reaches the device (the same
route plan, identity, sealed config and host-key rule: ``device_command.reach``), and runs every
later command as a new channel on it: two round trips plus the command. ``close`` ends it (the
pytest plugin closes it with the session; the master ends with this process anyway).

When the master cannot be opened (the device refused the login or its host key, no way
answered), the command runs the one-off way, so the error a caller sees is the one
``run_on_device`` gives, and later commands keep running the one-off way. A master that died
meanwhile (the device rebooted) is opened again on the next command.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field

from jumpstarter_driver_ssh_mount.common.defaults import DEFAULT_COMMAND_TIMEOUT
from jumpstarter_driver_ssh_mount.reach.device_command import (
    Keys,
    Login,
    open_login,
    reach,
    refused_or_unreached,
    run_on_device,
)
from jumpstarter_driver_ssh_mount.reach.route import DeviceClient
from jumpstarter_driver_ssh_mount.reach.routes import Way
from jumpstarter_driver_ssh_mount.ssh.commandresult import CommandResult
from jumpstarter_driver_ssh_mount.ssh.master import MasterFailed, SshMaster, without_control
from jumpstarter_driver_ssh_mount.ssh.remote_command import run_command
from jumpstarter_driver_ssh_mount.ssh.streamed import SCRIPT_COMMAND, ScriptResult, run_script

#: Seconds the master may take to log in, at most (a command's own timeout may be shorter).
MASTER_LOGIN_TIMEOUT = 30.0


@dataclass
class _Opened:
    """A running master, what it holds open (``resources``), and how commands ride it."""

    master: SshMaster
    login: Login
    how: str
    resources: ExitStack
    warnings: list[str] = field(default_factory=list)

    def argv(self, command: str) -> list[str]:
        return self.login.argv(command, self.master.client_options())


class DeviceConnection:
    """Run device commands over one shared, checked ssh connection, opened on first use.

    ``transport``, ``insecure`` and ``options`` as for ``run_on_device``. Thread-safe: commands
    from several threads share the connection (each is its own channel).
    """

    def __init__(
        self,
        client: DeviceClient,
        *,
        transport: str | None = None,
        insecure: bool = False,
        options: Sequence[str] = (),
    ) -> None:
        self.client = client
        self.transport, self.insecure, self.options = transport, insecure, list(options)
        self._lock = threading.Lock()
        self._opened: _Opened | None = None
        self._refused = ""  # why the shared connection could not be opened: commands run the one-off way
        self.opened = 0  # masters opened so far (a test can tell reuse from reconnecting)

    @property
    def shared(self) -> bool:
        """True while a master is up."""
        return self._opened is not None and self._opened.master.alive

    def run(self, command: str, *, check: bool = False, timeout: float = DEFAULT_COMMAND_TIMEOUT) -> CommandResult:
        """Run ``command`` on the device, as ``run_on_device`` does, over the shared connection."""
        deadline = time.monotonic() + timeout
        with self._lock:
            opened = self._ready(timeout)
        if opened is None:
            return run_on_device(
                self.client,
                command,
                check=check,
                timeout=max(deadline - time.monotonic(), 0.1),
                transport=self.transport,
                insecure=self.insecure,
                options=self.options,
            )
        left = max(deadline - time.monotonic(), 0.1)
        result = run_command(opened.argv(command), command, timeout=left, env=opened.login.env, stated=timeout)
        result = CommandResult(
            result.command, result.returncode, result.stdout, result.stderr, opened.how, list(opened.login.notes)
        )
        return result.check() if check else result

    def run_script(self, script: bytes, *, timeout: float, max_bytes: int) -> ScriptResult | None:
        """Run a shell ``script`` (on stdin) over the shared connection, its output read to ``max_bytes``.

        None when there is no shared connection (it could not be opened): the caller works another way.
        """
        deadline = time.monotonic() + timeout
        with self._lock:
            opened = self._ready(timeout)
        if opened is None:
            return None
        left = max(deadline - time.monotonic(), 0.1)
        return run_script(opened.argv(SCRIPT_COMMAND), script, timeout=left, max_bytes=max_bytes, env=opened.login.env)

    def script_runner(self) -> Callable[[bytes, float, int], bytes | None]:
        """This connection as a mount's bulk file work takes it: ``mount.read_in_bulk(connection.script_runner())``."""

        def run(script: bytes, timeout: float, max_bytes: int) -> bytes | None:
            result = self.run_script(script, timeout=timeout, max_bytes=max_bytes)
            return None if result is None else result.stdout

        return run

    def _ready(self, timeout: float) -> _Opened | None:
        """The running master (opened now if needed), or None: run the one-off way."""
        if self._refused:
            return None
        if self._opened is not None and self._opened.master.alive:
            return self._opened
        self._close_master()
        deadline = time.monotonic() + min(timeout, MASTER_LOGIN_TIMEOUT)

        def attempt(way: Way, keys: Keys, final: bool) -> _Opened:
            return self._start(way, keys, final, max(deadline - time.monotonic(), 0.1))

        try:
            self._opened = reach(self.client, self.transport, self.insecure, self.options, attempt)
        except Exception as exc:  # the one-off way says what is wrong, as it always did
            self._refused = f"{exc}: {exc.stderr}" if isinstance(exc, MasterFailed) and exc.stderr else str(exc)
            self.client.logger.info("device commands: no shared connection (%s); one login each", self._refused)
            return None
        self.opened += 1
        return self._opened

    def _start(self, way: Way, keys: Keys, final: bool, timeout: float) -> _Opened:
        """The master over ``way``; a failure before login is raised as the route plan expects."""
        resources = ExitStack()
        master = SshMaster()
        resources.callback(master.close)
        try:
            login = open_login(
                self.client, way, Keys(keys.trust, keys.vouched, without_control(keys.options)), resources
            )
            try:
                master.start(login.argv(None, master.master_options()), timeout, env=login.env)
            except MasterFailed as exc:
                failed = CommandResult("ssh -N", exc.returncode if exc.returncode is not None else 0, "", exc.stderr)
                refused_or_unreached(failed, way, keys, login.target, final)
                raise
        except BaseException:
            resources.close()
            raise
        return _Opened(master, login, way.how, resources)

    def _close_master(self) -> None:
        opened, self._opened = self._opened, None
        if opened is not None:
            opened.resources.close()

    def close(self) -> None:
        """End the shared connection (and the port forward or relay it used). Safe to call twice."""
        with self._lock:
            self._close_master()

    def __enter__(self) -> DeviceConnection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
