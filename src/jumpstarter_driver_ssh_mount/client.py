"""The client side: SSH driver credentials and a port forward in, a ready ``Mount`` out."""

from __future__ import annotations

import math
import os
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import CancelledError
from contextlib import ExitStack
from dataclasses import dataclass
from urllib.parse import urlparse

import anyio
import click
from jumpstarter.client.core import DriverError, DriverMethodNotImplemented
from jumpstarter_driver_composite.client import CompositeClient
from jumpstarter_driver_network.adapters import TcpPortforwardAdapter

from .sshfs import DEFAULT_MOUNT_TIMEOUT, TRANSPORTS, ConnectError, Mount, MountError, SshfsTarget, start_mount
from .sshfs.unmount import run_unmount

CANCEL_CHECK_INTERVAL = 0.25  # seconds


@dataclass(kw_only=True)
class SSHMountClient(CompositeClient):
    """Mount the device's filesystem locally with sshfs.

    ``mounted()`` is the non-blocking core: it returns a ready ``Mount`` that is also a
    context manager. ``mount()`` and ``umount()`` are the upstream-compatible blocking calls
    behind ``j mount``.
    """

    def cli(self) -> click.Command:
        from .cli import mount_command

        return mount_command(self)

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
        extra_args: Sequence[str] | None = None,
        timeout: float = DEFAULT_MOUNT_TIMEOUT,
        mount_dir: str | os.PathLike[str] | None = None,
    ) -> Mount:
        """Mount ``remote_path`` of the device and return as soon as it is usable.

        The returned ``Mount`` is a context manager; without ``with``, call its
        ``unmount()``. Either way it releases the sshfs process, the port forward, the
        key material and a mountpoint directory it created.

        :param mountpoint: local directory (must be empty; created if missing), or None for
            a private 0700 directory in ``mount_dir`` (default: the temp dir).
        :param transport: how sshfs reaches the device: ``"forward"`` (default), a Jumpstarter
            port forward, or ``"direct"``, the TCP driver's address (falls back to the port
            forward, with a warning, if the exporter publishes no address).
        :param direct: upstream's spelling of ``transport="direct"``.
        :param extra_args: sshfs ``-o`` options; each replaces a default with the same key.
        :param timeout: seconds the filesystem may take to become ready.
        :raises MountError: (a subclass naming the problem and the fix) on any failure,
            after releasing everything.
        """
        transport = resolve_transport(transport, direct)
        with ExitStack() as resources:
            host, port, transport = self._endpoint(transport, resources)
            return start_mount(
                SshfsTarget(host=host, port=port, user=self.username, remote_path=remote_path),
                mountpoint,
                identity=self.identity,
                options=list(extra_args or ()),
                timeout=timeout,
                resources=resources.pop_all(),
                transport=transport,
                mount_dir=mount_dir,
            )

    def _endpoint(self, transport: str, resources: ExitStack) -> tuple[str, int, str]:
        """(host, port, transport): the device's address, or a new local port forward."""
        if transport == "direct":
            try:
                return (*parse_tcp_address(self.ssh.tcp.address()), "direct")
            except (DriverError, ValueError) as exc:
                self.logger.warning("direct address unavailable (%s); using the port forward", exc)
        self._check_reachable()
        host, port = resources.enter_context(TcpPortforwardAdapter(client=self.ssh.tcp))
        return host, port, "forward"

    def _check_reachable(self) -> None:
        """Ask the exporter whether the device's sshd answers, before forwarding to it."""
        try:
            problem = self.call("check_reachable")
        except DriverMethodNotImplemented:  # an exporter running another SSHMount version
            return
        if problem:
            raise ConnectError(
                f"the exporter cannot reach the device's sshd ({problem}); "
                "is the device up and sshd listening on the TcpNetwork driver's host and port?"
            )

    def mount(
        self,
        mountpoint: str | os.PathLike[str],
        *,
        remote_path: str = "/",
        direct: bool = False,
        foreground: bool = False,
        extra_args: Sequence[str] | None = None,
    ) -> None:
        """Mount, then block: in a subshell (default) or until Ctrl+C (``foreground=True``).

        Everything is unmounted and released afterwards, and "Unmounted ..." is printed.
        SIGTERM and SIGHUP end it like Ctrl+C. Raises ``MountError`` on failure, including
        ``MountLostError`` when sshfs dies while it waits.
        """
        from .interactive import hold_foreground, run_subshell
        from .signals import signals_interrupt

        with signals_interrupt():
            with self.mounted(mountpoint, remote_path=remote_path, direct=direct, extra_args=extra_args) as m:
                click.echo(f"Mounted {m.target.spec} on {m.mountpoint}")
                if foreground:
                    hold_foreground(m, self._interruptible_wait(m))
                else:
                    run_subshell(m)
            click.echo(f"Unmounted {m.mountpoint}")

    def _interruptible_wait(self, mount: Mount) -> Callable[[], int]:
        """``mount.wait``, made to end when the event loop driving this client is cancelled.

        ``j`` runs commands in a worker thread and turns SIGINT/SIGTERM into a cancellation
        of its event loop; waiting *in* that loop lets the cancellation reach us, so the
        mount is torn down in order instead of being abandoned at exit.
        """
        fd = mount.exit_fileno()
        if threading.current_thread() is threading.main_thread() or fd is None:
            return mount.wait

        def wait() -> int:
            if not self.portal.call(_wait_readable_unless_cancelled, fd):
                raise CancelledError("the event loop was cancelled")
            return mount.wait()

        return wait

    def umount(self, mountpoint: str | os.PathLike[str], *, lazy: bool = False) -> None:
        """Unmount an sshfs filesystem left behind by a killed client (``lazy``: detach now).

        :raises MountError: if the unmount command fails, with its message.
        """
        path = os.path.realpath(os.fspath(mountpoint))
        result = run_unmount(path, lazy=lazy)
        if result.returncode != 0:
            detail = (result.stderr or "").strip().splitlines()
            hint = "" if lazy else "; if it is busy, retry with --lazy"
            raise MountError(f"unmounting {path} failed: {detail[-1] if detail else result.returncode}{hint}")
        click.echo(f"Unmounted {path}")


async def _wait_readable_unless_cancelled(fd: int) -> bool:
    """True once ``fd`` is readable; False if this task's scope is (or gets) cancelled.

    Re-checks the effective deadline because a task spawned into a task group whose parent
    scope was cancelled just before is not always cancelled by anyio itself.
    """
    while anyio.current_effective_deadline() != -math.inf:
        with anyio.move_on_after(CANCEL_CHECK_INTERVAL):
            await anyio.wait_readable(fd)
            return True
    return False


def resolve_transport(transport: str | None, direct: bool = False) -> str:
    """The transport to use: ``transport`` if given, else "direct" when ``direct``, else "forward"."""
    if transport is None:
        return "direct" if direct else "forward"
    if transport not in TRANSPORTS:
        raise ValueError(f"unknown transport {transport!r}; choose one of {', '.join(TRANSPORTS)}")
    return transport


def parse_tcp_address(address: str) -> tuple[str, int]:
    """``tcp://host:port`` (IPv6 in brackets) -> (host, port); ValueError if malformed."""
    parsed = urlparse(address)
    if parsed.scheme != "tcp" or not parsed.hostname or not parsed.port:
        raise ValueError(f"not a tcp://host:port address: {address!r}")
    return parsed.hostname, parsed.port
