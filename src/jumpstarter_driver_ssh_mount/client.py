"""The client side: SSH driver credentials and a port forward in, a ready ``Mount`` out."""

from __future__ import annotations

import os
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

import click
from jumpstarter_driver_composite.client import CompositeClient

from jumpstarter_driver_ssh_mount.common.choices import BACKENDS, DEFAULT_CACHE
from jumpstarter_driver_ssh_mount.common.defaults import DEFAULT_MOUNT_TIMEOUT
from jumpstarter_driver_ssh_mount.common.errors import HostKeyError
from jumpstarter_driver_ssh_mount.devicefiles.files import DeviceFiles
from jumpstarter_driver_ssh_mount.fileplan import MountPlan, follow_reboots, without_hook
from jumpstarter_driver_ssh_mount.mount import Mount, start_mount
from jumpstarter_driver_ssh_mount.reach.device_command import run_on_device
from jumpstarter_driver_ssh_mount.reach.relaydial import PROXY_ENVIRONMENT
from jumpstarter_driver_ssh_mount.reach.route import Route, open_route
from jumpstarter_driver_ssh_mount.reach.routes import RoutePlan, Way
from jumpstarter_driver_ssh_mount.reach.transport import (
    RelayOffer,
    parse_tcp_address,
    relay_options,
    relay_socket,
    release_relay,
    resolve_transport,
)
from jumpstarter_driver_ssh_mount.reach.trust import (
    Refused,
    establish_trust,
    fetch_vouched,
    mismatch_error,
    read_offered,
)
from jumpstarter_driver_ssh_mount.ssh.commandresult import CommandResult
from jumpstarter_driver_ssh_mount.ssh.hostkeypolicy import OLD_EXPORTER, YOURS
from jumpstarter_driver_ssh_mount.ssh.hostkeys import VouchedKeys
from jumpstarter_driver_ssh_mount.ssh.sshoptions import validate_options
from jumpstarter_driver_ssh_mount.ssh.target import SshfsTarget
from jumpstarter_driver_ssh_mount.sshfs.command import validate_cache
from jumpstarter_driver_ssh_mount.sshfs.unmount import unmount_path

if TYPE_CHECKING:
    from jumpstarter_driver_ssh_mount.reach.device_connection import DeviceConnection


__all__ = ["SSHMountClient", "parse_tcp_address", "resolve_transport"]


@dataclass(kw_only=True)
class SSHMountClient(CompositeClient):
    """Mount the device's filesystem locally with sshfs.

    ``mounted()`` is the non-blocking core: it returns a ready ``Mount`` that is also a
    context manager. ``mount()`` and ``umount()`` are the upstream-compatible blocking calls
    behind ``j mount``.
    """

    def cli(self) -> click.Command:
        from jumpstarter_driver_ssh_mount.cli import mount_command

        return mount_command(self, self)

    @property
    def identity(self) -> str | None:
        """The SSH driver's private key text (never logged)."""
        return self.ssh.identity

    @property
    def username(self) -> str:
        """The SSH driver's default user name."""
        return self.ssh.username

    def mounted(
        self,
        mountpoint: str | os.PathLike[str] | None = None,
        *,
        remote_path: str = "/",
        transport: str | None = None,
        direct: bool = False,
        insecure: bool = False,
        extra_args: Sequence[str] | None = None,
        timeout: float = DEFAULT_MOUNT_TIMEOUT,
        mount_dir: str | os.PathLike[str] | None = None,
        cache: str = DEFAULT_CACHE,
    ) -> Mount:
        """Mount ``remote_path`` of the device and return as soon as it is usable.

        The returned ``Mount`` is a context manager; without ``with``, call its
        ``unmount()``. Either way it releases the sshfs process, the port forward, the
        key material, the known-hosts file and a mountpoint directory it created.

        The device's host key is checked against the keys the exporter vouches for, before
        ssh logs in. When they were read from the device (not configured) and the device
        offers another key, the exporter is asked once to read them again.

        :param mountpoint: local directory (must be empty; created if missing), or None for
            a private 0700 directory in ``mount_dir`` (default: the temp dir).
        :param transport: how sshfs reaches the device: ``"auto"`` (default) the TCP driver's
            address when it answers with the vouched host key, else the exporter's relay when it
            offers one and it answers with that key, else a Jumpstarter port forward;
            ``"forward"``; ``"direct"``, the address only (falls back to the port forward,
            with a warning, only if the exporter publishes no address); or ``"relay"`` (an
            error if the exporter offers none; the port forward, with a warning in
            ``Mount.warnings``, if the one offered cannot be used).
        :param direct: upstream's spelling of ``transport="direct"``.
        :param insecure: do not verify the device's host key (logged as a warning).
        :param extra_args: sshfs ``-o`` options; each replaces a default with the same key. Your own
            ``UserKnownHostsFile``, ``GlobalKnownHostsFile``, ``HostKeyAlias`` or ``KnownHostsCommand``
            replace the exporter's keys, still strictly (``StrictHostKeyChecking=yes`` unless you pass
            it); ``Mount.transport_note`` says whose keys were used. An option ssh refuses is an
            ``InvalidOptionError`` naming it. From an exporter that vouches for no key, only the port
            forward mounts (unverified, in ``Mount.warnings``); ``"direct"`` is refused.
        :param timeout: seconds the filesystem may take to become ready.
        :param cache: ``"fresh"`` (default): changes on the device show within 0.5 s; ``"fast"``:
            sshfs's caching, new, deleted and resized files may show up to 20 s late.
        :raises MountError: (a subclass naming the problem and the fix, ``HostKeyError`` for a
            host key mismatch) on any failure, after releasing everything.
        """
        options = list(validate_options(extra_args or ()))
        plan = MountPlan(mountpoint, remote_path, options, timeout, mount_dir, validate_cache(cache))
        return cast(Mount, self._open(plan, resolve_transport(transport, direct), insecure))  # backend sshfs

    def files(
        self,
        remote_path: str = "/",
        *,
        backend: str = "sftp",
        transport: str | None = None,
        insecure: bool = False,
        extra_args: Sequence[str] | None = None,
        timeout: float = DEFAULT_MOUNT_TIMEOUT,
        mount_dir: str | os.PathLike[str] | None = None,
        cache: str = DEFAULT_CACHE,
    ) -> DeviceFiles:
        """The device's files below ``remote_path``: ``backend="sshfs"`` is ``mounted()`` (a ``Mount``);
        ``"sftp"`` needs no FUSE: an SFTP session from this process (``SftpFiles``, paths are ``DevicePath``),
        same routes, host keys, options and device-file methods. Release it with ``unmount()`` or ``with``."""
        if backend not in BACKENDS:
            raise ValueError(f"backend {backend!r}: choose one of {', '.join(BACKENDS)}")
        options = list(validate_options(extra_args or ()))
        plan = MountPlan(None, remote_path, options, timeout, mount_dir, validate_cache(cache), backend=backend)
        return self._open(plan, resolve_transport(transport), insecure)

    def _open(self, plan: MountPlan, transport: str, insecure: bool) -> DeviceFiles:
        """Over ``transport``'s ways, with the exporter's keys read again once if the device offers another."""
        plan.trust, vouched = establish_trust(self.call, self.logger, plan.options, insecure, transport)
        routes = RoutePlan(transport, plan.trust, plan.options, self.call, self.ssh.tcp, self.logger)
        try:
            return routes.run(lambda way: self._start(plan, vouched, way))
        except Refused as refused:
            renewed = self._fetch_vouched(refresh=True) if vouched and not vouched.configured else None
            if renewed is None or renewed.lines == refused.vouched.lines:
                raise self._mismatch(refused) from None
            self.logger.info("the device's host key changed; mounting with the one the exporter reads now")
            try:
                return routes.run(lambda way: self._start(plan, renewed, way))
            except Refused as again:
                raise self._mismatch(again) from None

    def _fetch_vouched(self, refresh: bool = False) -> VouchedKeys | None:
        return fetch_vouched(self.call, self.logger, refresh)

    def _start(self, plan: MountPlan, vouched: VouchedKeys | None, way: Way) -> DeviceFiles:
        """One mount (or SFTP session) over ``way``: to its address (direct, through its relay), or a new forward."""
        how, address, relay = way.how, way.address, way.relay
        with ExitStack() as resources:
            if relay is not None:
                resources.callback(release_relay, self.call, relay.id, self.logger)
            route = open_route(self, address, plan.trust, vouched, plan.options, resources)
            target = SshfsTarget(host=route.host, port=route.port, user=self.username, remote_path=plan.remote_path)
            try:
                if plan.backend == "sftp":
                    mount = self._sftp(target, plan, route, how, relay, resources)
                else:
                    options = route.options
                    if relay is not None:
                        options = [*options, *relay_options(relay, options, resources)]
                    mount = start_mount(
                        target,
                        plan.mountpoint,
                        identity=self.identity,
                        options=options,
                        timeout=plan.timeout,
                        resources=resources.pop_all(),
                        transport=how,
                        mount_dir=plan.mount_dir,
                        cache=plan.cache,
                        env=PROXY_ENVIRONMENT if relay is not None else None,
                    )
            except HostKeyError as exc:
                if vouched is not None:
                    raise Refused(vouched, how, address) from exc
                if plan.trust.source == YOURS:
                    raise HostKeyError(plan.trust.refusal(exc.where, how, exc.reason, changed=exc.changed)) from None
                raise
        mount.transport_note = "; ".join(filter(None, [way.note, plan.trust.outcome]))
        follow_reboots(mount, route, self.call, self.ssh.tcp)
        if plan.trust.why == OLD_EXPORTER:
            mount.warnings.append(f"{plan.trust.outcome}; update jumpstarter-driver-ssh-mount on the exporter")
        return mount

    def _sftp(
        self,
        target: SshfsTarget,
        plan: MountPlan,
        route: Route,
        how: str,
        relay: RelayOffer | None,
        resources: ExitStack,
    ) -> DeviceFiles:
        """An SFTP session over the route just opened (``resources``: what it holds); a relay is dialled here,
        and again (the same token) when the session logs in again after a reboot; the route's key hook checks
        a key the known-hosts file lacks."""
        from jumpstarter_driver_ssh_mount.sftp.files import start_sftp  # asyncssh: only once SFTP is used

        options = without_hook(route)
        dial = (lambda: relay_socket(relay, options)) if relay is not None else None
        sock = dial() if dial is not None else None  # while the caller's stack still holds what the route opened
        return start_sftp(
            target,
            identity=self.identity,
            options=options,
            timeout=plan.timeout,
            resources=resources.pop_all(),
            transport=how,
            sock=sock,
            dial=dial,
            hook=route.hook,
        )

    def _mismatch(self, refused: Refused) -> HostKeyError:
        """The error naming the vouched keys and those offered (read again, best effort)."""
        return mismatch_error(refused, read_offered(refused, self.ssh.tcp, self.logger))

    def mount(
        self,
        mountpoint: str | os.PathLike[str],
        *,
        remote_path: str = "/",
        transport: str | None = None,
        direct: bool = False,
        insecure: bool = False,
        foreground: bool = False,
        extra_args: Sequence[str] | None = None,
        cache: str = DEFAULT_CACHE,
    ) -> None:
        """Mount, then block: in a subshell (default) or until Ctrl+C (``foreground=True``).

        Everything is unmounted and released afterwards, and "Unmounted ..." is printed.
        SIGTERM and SIGHUP end it like Ctrl+C. Raises ``MountError`` on failure, including
        ``MountLostError`` when sshfs dies while it waits. First, the known-hosts folders
        that killed processes left are removed (``ownedfolders.OwnedFolders.sweep``).
        """
        from jumpstarter_driver_ssh_mount.interactive import hold_mount

        def opened() -> Mount:
            return self.mounted(
                mountpoint,
                remote_path=remote_path,
                transport=transport,
                direct=direct,
                insecure=insecure,
                extra_args=extra_args,
                cache=cache,
            )

        hold_mount(opened, self.logger, self.portal, foreground=foreground)

    def run(self, command: str, **kwargs: Any) -> CommandResult:
        """Run a shell command on the device, reached as the mounts reach it (``device_command.run_on_device``)."""
        return run_on_device(self, command, **kwargs)

    def connection(self, **kwargs: Any) -> DeviceConnection:
        """One checked ssh connection for many commands (``.run``) and a mount's bulk file work
        (``mount.read_in_bulk(...)``): ``reach.device_connection.DeviceConnection``; ``transport``,
        ``insecure`` and ``options`` as for ``run``. Close it (or leave its ``with``) when done."""
        from jumpstarter_driver_ssh_mount.reach.device_connection import DeviceConnection

        return DeviceConnection(self, **kwargs)

    def umount(self, mountpoint: str | os.PathLike[str], *, lazy: bool = False) -> None:
        """Unmount an sshfs filesystem left behind by a killed client (``lazy``: detach now).

        :raises MountError: if nothing is mounted there, or the unmount command fails (its message).
        """
        path = unmount_path(mountpoint, lazy=lazy)
        click.echo(f"Unmounted {path}")
