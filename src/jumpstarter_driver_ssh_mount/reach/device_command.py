"""Running a shell command on the device the way the mounts reach it: ``run_on_device``.

Credentials come from the SSH driver (user, key: in memory, never on disk), the host key is
checked against the keys the exporter vouches for, and the transport is chosen as for a
mount: ``auto`` uses the device's address when it answers with the vouched key, else a
Jumpstarter port forward; ``direct`` and ``forward`` as named.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import dataclass

from jumpstarter_driver_ssh_mount.common.errors import ConnectError, HostKeyError
from jumpstarter_driver_ssh_mount.reach.route import DeviceClient, open_route, published_address
from jumpstarter_driver_ssh_mount.reach.transport import probe_tcp, resolve_transport
from jumpstarter_driver_ssh_mount.reach.trust import establish_trust
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

#: Seconds a device command may run unless the caller says otherwise.
DEFAULT_COMMAND_TIMEOUT = 60.0

#: Whose host keys a command checks, and the exporter's keys when they are the ones (``establish_trust``).
Keys = tuple[HostKeyTrust, VouchedKeys | None]


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
    :param transport: ``"auto"`` (default), ``"direct"`` or ``"forward"``, as for ``mounted()``;
        ``"relay"`` runs through the port forward (a relay carries one mount's connection).
    :param options: ssh ``-o`` options (sshfs-only options such as ``reconnect`` are left out);
        host key options as for ``mounted()``.
    :raises HostKeyError: the device's host key was refused (the command did not run).
    :raises InvalidOptionError: ssh refuses one of ``options`` (named).
    """
    deadline = time.monotonic() + timeout
    address, keys, options, transport = route_for(client, transport, insecure, options)
    if address is not None:  # nothing else took time yet
        result = _run(client, command, address, keys, options, timeout, final=transport == "direct")
        if transport == "direct" or not failed_before_login(result, address):
            return result.check() if check else result
        client.logger.info("transport auto: using the port forward (%s)", result.stderr.strip())
    result = _run(client, command, None, keys, options, max(deadline - time.monotonic(), 0.1), final=True)
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
    address, keys, options, transport = route_for(client, transport, insecure, options)
    if address is not None:
        try:
            return _open_shell(client, address, keys, options, script, ready, timeout)
        except ShellGone as exc:
            failed = CommandResult("exec sh", exc.returncode or 0, "", exc.stderr)
            if transport == "direct" or not failed_before_login(failed, address):
                raise
            client.logger.info("transport auto: using the port forward (%s)", exc.stderr)
    return _open_shell(client, None, keys, options, script, ready, timeout)


def route_for(
    client: DeviceClient, transport: str | None, insecure: bool, options: Sequence[str]
) -> tuple[tuple[str, int] | None, Keys, list[str], str]:
    """Where a command goes (the device's address, or None: a port forward), whose keys it checks, ssh options."""
    transport = resolve_transport(transport)
    options = ssh_options(options)
    trust, vouched = establish_trust(client.call, client.logger, options, insecure, transport)
    address = None if transport in ("forward", "relay") else published_address(client.ssh.tcp)[0]
    if address is not None and transport == "auto" and (not trust.verified or probe_tcp(*address) is not None):
        address = None  # as a mount: the address only when it answers and the host key can be checked
    if address is None and transport == "direct":
        client.logger.warning("direct address unavailable; running the command through the port forward")
    return address, (trust, vouched), options, transport


def _open_shell(
    client: DeviceClient,
    address: tuple[str, int] | None,
    keys: Keys,
    options: list[str],
    script: bytes,
    ready: bytes,
    timeout: float,
) -> RemoteShell:
    resources = ExitStack()
    try:
        argv, _ = _ssh_argv(client, "exec sh", address, keys, options, resources)
        shell = RemoteShell(argv, resources)
    except BaseException:
        resources.close()
        raise
    try:
        shell.exchange(script, ready, timeout=timeout, max_bytes=len(ready) + 4096)
    except BaseException:
        shell.close()
        raise
    return shell


def _run(
    client: DeviceClient,
    command: str,
    address: tuple[str, int] | None,
    keys: Keys,
    options: list[str],
    timeout: float,
    *,
    final: bool,
) -> CommandResult:
    """One ssh run, to ``address`` or (None) through a new port forward, checking the host key as ``keys`` say.

    :raises HostKeyError: ssh refused the device's host key (the command did not run), against your
        keys, or on the ``final`` try (no other transport left).
    """
    with ExitStack() as resources:
        argv, target = _ssh_argv(client, command, address, keys, options, resources)
        result = run_command(argv, command, timeout=timeout)
    how = "forward" if address is None else "direct"
    trust = keys[0]
    if result.returncode == SSH_FAILED and (final or trust.source == YOURS):
        refused = diagnose(result.stderr, result.returncode, target, transport=how)
        if isinstance(refused, HostKeyError):
            raise (
                HostKeyError(trust.refusal(refused.where, how, refused.reason, changed=refused.changed))
                if trust.source == YOURS
                else refused
            )
    return CommandResult(result.command, result.returncode, result.stdout, result.stderr, how)


@dataclass(frozen=True)
class Login:
    """How ssh logs in to the device over one opened route: target, identity file, sealed config, options."""

    target: SshfsTarget
    identity_path: str | None
    config_path: str
    options: list[str]

    def argv(self, command: str | None, extra: Sequence[str] = ()) -> list[str]:
        """The ssh argv for ``command`` (None: ``-N``), with ``extra`` options after the route's."""
        return ssh_argv(
            self.target,
            command,
            identity_path=self.identity_path,
            options=[*self.options, *extra],
            config_path=self.config_path,
        )


def open_login(
    client: DeviceClient,
    address: tuple[str, int] | None,
    keys: Keys,
    options: list[str],
    resources: ExitStack,
) -> Login:
    """Open the route (``address`` or, None, a port forward) and the files ssh reads; all on ``resources``."""
    trust, vouched = keys
    route = open_route(client, address, trust, vouched, options, resources)
    key = client.identity
    identity = resources.enter_context(IdentityFile(key)) if key else None
    target = SshfsTarget(host=route.host, port=route.port, user=client.username)
    config = resources.enter_context(sealed_config(route.host, route.port, client.username))
    return Login(target, identity.path if identity else None, config.path, route.options)


def _ssh_argv(
    client: DeviceClient,
    command: str,
    address: tuple[str, int] | None,
    keys: Keys,
    options: list[str],
    resources: ExitStack,
) -> tuple[list[str], SshfsTarget]:
    """The ssh argv for ``command`` and its target; the forward, known-hosts and identity go on ``resources``."""
    login = open_login(client, address, keys, options, resources)
    return login.argv(command), login.target


def failed_before_login(result: CommandResult, address: tuple[str, int]) -> bool:
    """True when ssh itself failed to reach or trust ``address`` (the command did not run)."""
    if result.returncode != SSH_FAILED:
        return False
    error = diagnose(result.stderr, result.returncode, SshfsTarget(*address), transport="direct")
    return isinstance(error, ConnectError | HostKeyError)
