"""Running a shell command on the device the way the mounts reach it: ``run_on_device``, ``open_shell``.

Credentials come from the SSH driver (user, key: in memory, never on disk), the host key is
checked against the keys the exporter vouches for, and the way there is the mounts' own
``RoutePlan``: ``auto`` tries the device's address when it answers with the vouched key, then the
exporter's relay, then a Jumpstarter port forward; ``direct``, ``relay`` and ``forward`` as named.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import TypeVar

from jumpstarter_driver_ssh_mount.common.defaults import DEFAULT_COMMAND_TIMEOUT
from jumpstarter_driver_ssh_mount.common.errors import ConnectError, HostKeyError
from jumpstarter_driver_ssh_mount.reach.relaydial import PROXY_ENVIRONMENT
from jumpstarter_driver_ssh_mount.reach.route import DeviceClient, open_route
from jumpstarter_driver_ssh_mount.reach.routes import Reached, RoutePlan, Way
from jumpstarter_driver_ssh_mount.reach.transport import relay_options, release_relay, resolve_transport
from jumpstarter_driver_ssh_mount.reach.trust import Refused, establish_trust, mismatch_error
from jumpstarter_driver_ssh_mount.ssh.commandresult import SSH_FAILED, CommandResult
from jumpstarter_driver_ssh_mount.ssh.hostkeypolicy import YOURS, HostKeyTrust
from jumpstarter_driver_ssh_mount.ssh.hostkeys import VouchedKeys
from jumpstarter_driver_ssh_mount.ssh.identity import IdentityFile
from jumpstarter_driver_ssh_mount.ssh.optionkeys import ssh_options
from jumpstarter_driver_ssh_mount.ssh.remote_command import run_command, ssh_argv
from jumpstarter_driver_ssh_mount.ssh.remote_shell import RemoteShell, ShellGone
from jumpstarter_driver_ssh_mount.ssh.sealing import sealed_config
from jumpstarter_driver_ssh_mount.ssh.target import SshfsTarget
from jumpstarter_driver_ssh_mount.sshfs.diagnose import diagnose

R = TypeVar("R", bound=Reached)


def run_on_device(
    client: DeviceClient,
    command: str,
    *,
    check: bool = False,
    timeout: float = DEFAULT_COMMAND_TIMEOUT,
    transport: str | None = None,
    insecure: bool = False,
    options: Sequence[str] = (),
) -> CommandResult:
    """Run ``command`` (a shell command line) on the device; its exit code, stdout and stderr.

    :param check: raise ``DeviceCommandError`` (command, code, stderr's tail) on a non-zero exit.
    :param timeout: seconds it may take, connecting included; then ``DeviceCommandTimeout``.
    :param transport: ``"auto"`` (default), ``"direct"``, ``"relay"`` or ``"forward"``, as for ``mounted()``.
    :param options: ssh ``-o`` options (sshfs-only options such as ``reconnect`` are left out);
        host key options as for ``mounted()``.
    :raises HostKeyError: the device's host key was refused (the command did not run).
    :raises InvalidOptionError: ssh refuses one of ``options`` (named).
    """
    deadline = time.monotonic() + timeout

    def attempt(way: Way, keys: Keys, final: bool) -> CommandResult:
        with ExitStack() as resources:
            login = open_login(client, way, keys, resources)
            left = max(deadline - time.monotonic(), 0.1)
            result = run_command(login.argv(command), command, timeout=left, env=login.env, stated=timeout)
        refused_or_unreached(result, way, keys, login.target, final)
        return CommandResult(
            result.command, result.returncode, result.stdout, result.stderr, way.how, list(login.notes)
        )

    result = reach(client, transport, insecure, options, attempt)
    return result.check() if check else result


def open_shell(
    client: DeviceClient,
    script: bytes,
    ready: bytes,
    timeout: float,
    *,
    transport: str | None = None,
    insecure: bool = False,
    options: Sequence[str] = (),
) -> RemoteShell:
    """A long-lived ``sh`` on the device, reached as ``run_on_device`` reaches it, once it answered ``script``.

    ``script`` is sent first and the shell is handed out when ``ready`` (a marker it prints)
    came back within ``timeout`` seconds; :raises ShellGone: it did not (ssh's stderr in it).
    """

    def attempt(way: Way, keys: Keys, final: bool) -> RemoteShell:
        resources = ExitStack()
        try:
            argv, target, env = _ssh_argv(client, "exec sh", way, keys, resources)
            shell = RemoteShell(argv, resources, env=env)
        except BaseException:
            resources.close()
            raise
        try:
            shell.exchange(script, ready, timeout=timeout, max_bytes=len(ready) + 4096)
        except ShellGone as exc:
            shell.close()
            failed = CommandResult("exec sh", exc.returncode or 0, "", exc.stderr)
            refused_or_unreached(failed, way, keys, target, final)
            raise
        except BaseException:
            shell.close()
            raise
        return shell

    return reach(client, transport, insecure, options, attempt)


@dataclass(frozen=True)
class Keys:
    """Whose host keys a command checks, the exporter's keys when they are the ones (``establish_trust``),
    and the ssh options."""

    trust: HostKeyTrust
    vouched: VouchedKeys | None
    options: list[str]


def reach(
    client: DeviceClient,
    transport: str | None,
    insecure: bool,
    options: Sequence[str],
    attempt: Callable[[Way, Keys, bool], R],
) -> R:
    """``attempt`` over the mounts' route plan; a host key the exporter does not vouch for is a ``HostKeyError``."""
    transport = resolve_transport(transport)
    options = ssh_options(options)
    trust, vouched = establish_trust(client.call, client.logger, options, insecure, transport)
    routes = RoutePlan(transport, trust, options, client.call, client.ssh.tcp, client.logger)
    keys = Keys(trust, vouched, options)
    try:
        return routes.run(lambda way: attempt(way, keys, _final(transport, way)))
    except Refused as refused:
        raise mismatch_error(refused, []) from None


def _final(transport: str, way: Way) -> bool:
    """True when no other way is tried after ``way`` (what it returns is the answer, failures included)."""
    return way.how == "forward" or transport == way.how


def refused_or_unreached(result: CommandResult, way: Way, keys: Keys, target: SshfsTarget, final: bool) -> None:
    """Raise when ssh failed before logging in and the plan should know: a refused host key (``Refused``
    or ``HostKeyError``), or, on a way that is not the last, an unreachable one (``ConnectError``)."""
    if result.returncode != SSH_FAILED:
        return
    trust, vouched = keys.trust, keys.vouched
    error = diagnose(result.stderr, result.returncode, target, transport=way.how)
    if isinstance(error, HostKeyError):
        if trust.source == YOURS:
            raise HostKeyError(trust.refusal(error.where, way.how, error.reason, changed=error.changed))
        if vouched is not None and not final:
            raise Refused(vouched, way.how, way.address)
        raise error
    if isinstance(error, ConnectError) and not final:
        raise error


@dataclass(frozen=True)
class Login:
    """How ssh logs in to the device over one opened way: target, identity file, sealed config, options,
    extra environment (a relay's dialer)."""

    target: SshfsTarget
    identity_path: str | None
    config_path: str
    options: list[str]
    env: dict[str, str] | None
    #: What the route's key hook noted (a host key that changed and is vouched for, or refused), each once
    notes: list[str] = field(default_factory=list)

    def argv(self, command: str | None, extra: Sequence[str] = ()) -> list[str]:
        """The ssh argv for ``command`` (None: ``-N``), with ``extra`` options after the way's."""
        return ssh_argv(
            self.target,
            command,
            identity_path=self.identity_path,
            options=[*self.options, *extra],
            config_path=self.config_path,
        )


def open_login(client: DeviceClient, way: Way, keys: Keys, resources: ExitStack) -> Login:
    """Open ``way`` (a forward, a relay, the known-hosts file, the identity, the sealed config) on ``resources``."""
    if way.relay is not None:
        resources.callback(release_relay, client.call, way.relay.id, client.logger)
    route = open_route(client, way.address, keys.trust, keys.vouched, keys.options, resources)
    host, port, options = route.host, route.port, route.options
    if way.relay is not None:
        options = [*options, *relay_options(way.relay, options, resources)]
    key = client.identity
    identity = resources.enter_context(IdentityFile(key)) if key else None
    target = SshfsTarget(host=host, port=port, user=client.username)
    config = resources.enter_context(sealed_config(host, port, client.username))
    env = PROXY_ENVIRONMENT if way.relay is not None else None
    notes = route.hook.notes if route.hook is not None else []  # the hook's own list: later notes show too
    return Login(target, identity.path if identity else None, config.path, options, env, notes)


def _ssh_argv(
    client: DeviceClient, command: str, way: Way, keys: Keys, resources: ExitStack
) -> tuple[list[str], SshfsTarget, dict[str, str] | None]:
    """The ssh argv for ``command``, its target and extra environment; the forward, relay, known-hosts and
    identity go on ``resources``."""
    login = open_login(client, way, keys, resources)
    return login.argv(command), login.target, login.env
