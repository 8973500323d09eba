"""``j mount``: the click command, thin glue over ``SSHMountClient``."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Protocol

import click
from jumpstarter.client import DriverClient
from jumpstarter.client.decorators import driver_click_command

from jumpstarter_driver_ssh_mount.common.choices import (
    CACHE_MEANINGS,
    CACHE_MODES,
    DEFAULT_CACHE,
    TRANSPORT_MEANINGS,
    TRANSPORTS,
    describe_choices,
)
from jumpstarter_driver_ssh_mount.common.errors import MountError
from jumpstarter_driver_ssh_mount.reach.transportrule import TransportConflict, decide_transport
from jumpstarter_driver_ssh_mount.sshfs.command import InvalidOptionError


class MountingClient(Protocol):
    """What ``j mount`` calls on ``SSHMountClient`` (a structural type: the client imports this module)."""

    def mount(
        self,
        mountpoint: str | os.PathLike[str],
        *,
        remote_path: str = ...,
        transport: str | None = ...,
        direct: bool = ...,
        insecure: bool = ...,
        foreground: bool = ...,
        extra_args: Sequence[str] | None = ...,
        cache: str = ...,
    ) -> None:
        """Mount, then block."""

    def umount(self, mountpoint: str | os.PathLike[str], *, lazy: bool = ...) -> None:
        """Unmount what a killed client left."""


def mount_command(driver: DriverClient, client: MountingClient) -> click.Command:
    """The ``mount`` command of ``driver`` calling ``client`` (the same object), with upstream's arguments and flags."""

    @driver_click_command(driver)
    @click.argument("mountpoint", type=click.Path())
    @click.option("--umount", "-u", is_flag=True, help="Unmount instead of mount")
    @click.option("--remote-path", "-r", default="/", show_default=True, help="Remote path to mount")
    @click.option("--direct", is_flag=True, help="Use direct TCP address (same as --transport direct)")
    @click.option(
        "--transport",
        type=click.Choice(TRANSPORTS),
        default=None,
        help=f"How sshfs reaches the device (default auto). {describe_choices(TRANSPORT_MEANINGS)}",
    )
    @click.option(
        "--insecure",
        is_flag=True,
        help="Do not verify the device's host key (logs a warning; auto then uses the port forward)",
    )
    @click.option("--lazy", "-l", is_flag=True, help="Lazy unmount (detach filesystem now, clean up later)")
    @click.option("--foreground", is_flag=True, help="Block on sshfs in foreground without spawning a subshell")
    @click.option(
        "--extra-args",
        "-o",
        multiple=True,
        help="Extra sshfs -o options (e.g. -o reconnect). -o UserKnownHostsFile=F, GlobalKnownHostsFile=F, "
        "HostKeyAlias=NAME or KnownHostsCommand=CMD check the host key against your keys instead of the "
        "exporter's, still strictly and never written (the port forward needs HostKeyAlias); only "
        "StrictHostKeyChecking turns checking off. Your ssh config applies, without its side doors "
        "(agent, forwarding, shared masters, LocalCommand)",
    )
    @click.option(
        "--cache",
        type=click.Choice(CACHE_MODES),
        default=DEFAULT_CACHE,
        show_default=True,
        help=f"How much sshfs may cache. {describe_choices(CACHE_MEANINGS)}",
    )
    def mount(
        mountpoint: str,
        umount: bool,
        remote_path: str,
        direct: bool,
        transport: str | None,
        insecure: bool,
        lazy: bool,
        foreground: bool,
        extra_args: tuple[str, ...],
        cache: str,
    ) -> None:
        """Mount or unmount remote filesystem via sshfs"""
        try:  # the one transport rule; both flags come from the same command line
            transport = decide_transport(transport, direct or None, default=None)
        except TransportConflict as exc:
            raise click.UsageError(
                f"--direct means --transport direct; it cannot go with --transport {exc.transport}"
            ) from None
        try:
            if umount:
                client.umount(mountpoint, lazy=lazy)
            else:
                client.mount(
                    mountpoint,
                    remote_path=remote_path,
                    transport=transport,
                    direct=direct,
                    insecure=insecure,
                    foreground=foreground,
                    extra_args=list(extra_args),
                    cache=cache,
                )
        except InvalidOptionError as exc:  # an option ssh or sshfs refuses: a usage error naming it
            raise click.UsageError(str(exc)) from None
        except MountError as exc:
            raise click.ClickException(str(exc)) from None

    return mount
