"""Device commands over one ssh connection per device: ``DeviceConnection``.

``run_on_device`` logs in anew for every command (five or more round trips). A
``DeviceConnection`` opens one connection on its first command, an OpenSSH master
(``ssh.master.SshMaster``) reached exactly as ``run_on_device`` reaches the device (the same
transport choice, route, identity, sealed config and host-key rule), and runs every later
command as a new channel on it: two round trips plus the command. ``close`` ends it (the
pytest plugin closes it with the session; the master ends with this process anyway).

When the master cannot be opened (the device refused the login or its host key, the route
failed), the command runs the one-off way, so the error a caller sees is the one
``run_on_device`` gives, and later commands keep running the one-off way. A master that died
meanwhile (the device rebooted) is opened again on the next command.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from contextlib import ExitStack

from jumpstarter_driver_ssh_mount.reach.device_command import (
    DEFAULT_COMMAND_TIMEOUT,
    Keys,
    Login,
    failed_before_login,
    open_login,
    route_for,
    run_on_device,
)
from jumpstarter_driver_ssh_mount.reach.route import DeviceClient
from jumpstarter_driver_ssh_mount.ssh.commandresult import CommandResult
from jumpstarter_driver_ssh_mount.ssh.master import MasterFailed, SshMaster, without_control
from jumpstarter_driver_ssh_mount.ssh.remote_command import run_command
from jumpstarter_driver_ssh_mount.ssh.streamed import SCRIPT_COMMAND, ScriptResult, run_script

#: Seconds the master may take to log in, at most (a command's own timeout may be shorter).
MASTER_LOGIN_TIMEOUT = 30.0


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
        self._master: SshMaster | None = None
        self._login: Login | None = None
        self._how = ""
        self._resources = ExitStack()
        self._refused = ""  # why the shared connection could not be opened: run commands the one-off way
        self.opened = 0  # masters opened so far (a test can tell reuse from reconnecting)

    @property
    def shared(self) -> bool:
        """True while a master is up."""
        return self._master is not None and self._master.alive

    def run(self, command: str, *, check: bool = False, timeout: float = DEFAULT_COMMAND_TIMEOUT) -> CommandResult:
        """Run ``command`` on the device, as ``run_on_device`` does, over the shared connection."""
        deadline = time.monotonic() + timeout
        with self._lock:
            login = self._ready(timeout)
            how = self._how
        if login is None:
            return self._one_off(command, check, max(deadline - time.monotonic(), 0.1))
        argv = login.argv(command)
        result = run_command(argv, command, timeout=max(deadline - time.monotonic(), 0.1))
        result = CommandResult(result.command, result.returncode, result.stdout, result.stderr, how)
        return result.check() if check else result

    def run_script(self, script: bytes, *, timeout: float, max_bytes: int) -> ScriptResult | None:
        """Run a shell ``script`` (on stdin) over the shared connection, its output read to ``max_bytes``.

        None when there is no shared connection (it could not be opened): the caller works another way.
        """
        deadline = time.monotonic() + timeout
        with self._lock:
            login = self._ready(timeout)
        if login is None:
            return None
        return run_script(
            login.argv(SCRIPT_COMMAND), script, timeout=max(deadline - time.monotonic(), 0.1), max_bytes=max_bytes
        )

    def script_runner(self) -> Callable[[bytes, float, int], bytes | None]:
        """This connection as a mount's bulk file work takes it: ``mount.read_in_bulk(connection.script_runner())``."""

        def run(script: bytes, timeout: float, max_bytes: int) -> bytes | None:
            result = self.run_script(script, timeout=timeout, max_bytes=max_bytes)
            return None if result is None else result.stdout

        return run

    def _one_off(self, command: str, check: bool, timeout: float) -> CommandResult:
        return run_on_device(
            self.client,
            command,
            check=check,
            timeout=timeout,
            transport=self.transport,
            insecure=self.insecure,
            options=self.options,
        )

    def _ready(self, timeout: float) -> Login | None:
        """The login of a running master (opened now if needed), or None: run the one-off way."""
        if self._refused:
            return None
        if self._master is not None and self._master.alive and self._login is not None:
            return self._login
        self._close_master()
        try:
            self._open(min(timeout, MASTER_LOGIN_TIMEOUT))
        except MasterFailed as exc:
            self._refused = f"{exc}: {exc.stderr}" if exc.stderr else str(exc)
            self.client.logger.info("device commands: no shared connection (%s); one login each", self._refused)
            return None
        return self._login

    def _open(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        address, keys, options, transport = route_for(self.client, self.transport, self.insecure, self.options)
        options = without_control(options)
        if address is not None:
            try:
                self._start(address, keys, options, timeout)
                return
            except MasterFailed as exc:
                failed = CommandResult("ssh -N", exc.returncode or 0, "", exc.stderr)
                if transport == "direct" or exc.returncode is None or not failed_before_login(failed, address):
                    raise
                self.client.logger.info("transport auto: using the port forward (%s)", exc.stderr)
        self._start(None, keys, options, max(deadline - time.monotonic(), 0.1))

    def _start(self, address: tuple[str, int] | None, keys: Keys, options: list[str], timeout: float) -> None:
        resources = ExitStack()
        master = SshMaster()
        resources.callback(master.close)
        try:
            login = open_login(self.client, address, keys, options, resources)
            master.start(login.argv(None, master.master_options()), timeout)
        except BaseException:
            resources.close()
            raise
        self._resources = resources
        self._master = master
        self._login = Login(
            login.target, login.identity_path, login.config_path, [*login.options, *master.client_options()]
        )
        self._how = "forward" if address is None else "direct"
        self.opened += 1

    def _close_master(self) -> None:
        resources, self._resources = self._resources, ExitStack()
        self._master, self._login = None, None
        resources.close()

    def close(self) -> None:
        """End the shared connection (and the port forward it used). Safe to call twice; later commands reopen."""
        with self._lock:
            self._close_master()

    def __enter__(self) -> DeviceConnection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
