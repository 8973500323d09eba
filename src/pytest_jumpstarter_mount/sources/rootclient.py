"""Getting the device's root client from one of the four sources. Jumpstarter is imported here only.

Every function imports Jumpstarter when called, never at module import, so the plugin
costs nothing to pytest runs that never touch a device.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Protocol

from pytest_jumpstarter_mount.config.settings import SOURCES_HELP, Settings
from pytest_jumpstarter_mount.sources.leases import LeaseInfo, waiting_notices


class DeviceSourceError(Exception):
    """The device cannot be reached from the configured source (one line, with the fix)."""


class NoDeviceSourceError(DeviceSourceError):
    """No way to reach a device was configured."""


class LeaseTimeoutError(DeviceSourceError):
    """No device became free within the lease timeout."""


@dataclass(frozen=True)
class Device:
    """A reachable device: its root client, and how it was reached (for reports)."""

    client: Any
    description: str
    lease: LeaseInfo | None = None  # the controller lease behind it, if any


@contextmanager
def open_device(settings: Settings, watcher: LeaseWatcher | None = None) -> Iterator[Device]:
    """The device, for as long as the context lasts (a controller lease is released after).

    ``watcher`` hears of a controller lease: while it is pending, taken, and released.
    """
    with ExitStack() as stack:
        match settings.source:
            case "shell":
                from jumpstarter.utils.env import env

                yield Device(stack.enter_context(env()), settings.describe_source())
            case "exporter-config":
                yield Device(_exporter_config_client(settings, stack), settings.describe_source())
            case "tls-grpc":
                yield Device(_tls_grpc_client(settings, stack), settings.describe_source())
            case "lease":
                yield _leased_device(settings, stack, watcher or _Unwatched())
            case _:
                raise NoDeviceSourceError(f"no Jumpstarter device configured: {SOURCES_HELP}")


def _connect(stack: ExitStack, address: str, **kwargs: Any) -> Any:
    """A client for an exporter listening at ``address`` (unix socket path or HOST:PORT)."""
    from anyio.from_thread import start_blocking_portal
    from jumpstarter.client import client_from_path

    portal = stack.enter_context(start_blocking_portal())
    inner = stack.enter_context(ExitStack())
    client = stack.enter_context(
        portal.wrap_async_context_manager(client_from_path(address, portal, inner, allow=[], unsafe=True, **kwargs))
    )
    stack.callback(getattr(client, "close", lambda: None))
    return client


def _tls_grpc_client(settings: Settings, stack: ExitStack) -> Any:
    address = settings.tls_grpc
    assert address is not None  # the "tls-grpc" source is chosen only when it is set
    return _connect(stack, address, insecure=settings.tls_grpc_insecure, passphrase=settings.passphrase)


def _exporter_config_client(settings: Settings, stack: ExitStack) -> Any:
    from pytest_jumpstarter_mount.config.exporterfile import ExporterFileError, load_exporter_config

    path = settings.exporter_config
    assert path is not None  # the "exporter-config" source is chosen only when it is set
    if not path.is_file():
        raise DeviceSourceError(f"--jmp-mount-exporter-config {path}: no such file; check the path")
    try:
        config = load_exporter_config(path)
    except (ExporterFileError, OSError, UnicodeDecodeError) as exc:  # one line with line and column, no traceback
        raise DeviceSourceError(f"--jmp-mount-exporter-config {path} is not a valid exporter config: {exc}") from None
    # SAFETY: a local exporter config is trusted, as in `jmp shell --exporter-config`
    socket_path = stack.enter_context(config.serve_unix())
    return _connect(stack, socket_path)


class LeaseWatcher(Protocol):
    """Told about a controller lease as it goes: pending, acquired, released."""

    def waiting(self, wanted: str, seconds: float) -> None: ...
    def acquired(self, lease: LeaseInfo) -> None: ...
    def released(self, lease: LeaseInfo) -> None: ...


class _Unwatched:
    def waiting(self, wanted: str, seconds: float) -> None:
        pass

    def acquired(self, lease: LeaseInfo) -> None:
        pass

    def released(self, lease: LeaseInfo) -> None:
        pass


def _leased_device(settings: Settings, stack: ExitStack, watcher: LeaseWatcher) -> Device:
    """Lease through the controller (waiting at most the lease timeout), then connect.

    A lease we create is released when the context ends; a shared ``--jmp-mount-lease``
    (or ``$JMP_LEASE``) is not ours, and Jumpstarter leaves it alone.
    """
    from jumpstarter.config.client import ClientConfigV1Alpha1

    alias = settings.client
    assert alias is not None  # the "lease" source is chosen only when it is set
    config = ClientConfigV1Alpha1.load(alias)
    if settings.lease_timeout is not None:
        config.leases.acquisition_timeout = max(1, math.ceil(settings.lease_timeout))
    shared = settings.lease or os.environ.get("JMP_LEASE") or None
    wanted = f"lease {shared}" if shared else f"a device matching {settings.selector}"
    held: list[LeaseInfo] = []

    def mark_released() -> None:  # pushed first, so it runs after the lease is released
        for info in held:
            watcher.released(info)

    stack.callback(mark_released)
    started = time.monotonic()
    try:
        with waiting_notices(lambda seconds: watcher.waiting(wanted, seconds)):
            lease = stack.enter_context(
                config.lease(
                    selector=settings.selector,
                    lease_name=settings.lease,
                    duration=timedelta(seconds=settings.duration),
                )
            )
    except Exception as exc:
        failure = _lease_failure(exc, wanted, alias, config.leases.acquisition_timeout, started)
        if failure is exc:
            raise
        raise failure from None
    info = LeaseInfo(
        name=str(lease.name),
        exporter=str(lease.exporter_name),
        alias=alias,
        selector=settings.selector,
        owned=shared is None,
        until=time.time() + settings.duration,
    )
    held.append(info)
    watcher.acquired(info)
    client = stack.enter_context(lease.connect())
    return Device(client, info.describe(), info)


def _lease_failure(exc: Exception, wanted: str, alias: str, timeout: float, started: float) -> Exception:
    """One line for a lease that timed out or was refused; anything else stays as it is."""
    from jumpstarter.client.exceptions import LeaseError

    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    timed_out = isinstance(exc, TimeoutError) or "timed out" in text
    if isinstance(exc, LeaseError | TimeoutError) and timed_out:
        return LeaseTimeoutError(
            f"gave up waiting for {wanted} after {timeout:g} s (--jmp-mount-lease-timeout, "
            f"waited {time.monotonic() - started:.0f} s); free a board, raise the timeout, "
            "or run no more xdist workers (-n) than boards match"
        )
    if isinstance(exc, LeaseError):
        return DeviceSourceError(f"cannot lease {wanted} via client {alias}: {text}")
    return exc


def find_mount_driver(root: Any, dotted: str) -> Any:
    """The ``SSHMountClient`` at ``dotted`` (e.g. ``mount`` or ``board.mount``) under ``root``."""
    from jumpstarter_driver_ssh_mount.client import SSHMountClient

    node = root
    walked: list[str] = []
    for name in dotted.split("."):
        children = getattr(node, "children", {}) or {}
        if name not in children:
            where = ".".join(walked) or "the exporter's root"
            raise DeviceSourceError(
                f"--jmp-mount-driver {dotted!r}: no driver {name!r} under {where} "
                f"(has: {', '.join(sorted(children)) or 'nothing'})"
            )
        node = children[name]
        walked.append(name)
    if not isinstance(node, SSHMountClient):
        raise DeviceSourceError(
            f"--jmp-mount-driver {dotted!r} is a {type(node).__name__}, not an SSHMount driver; "
            "point it at the jumpstarter_driver_ssh_mount.driver.SSHMount entry of the exporter config"
        )
    return node
