"""The pytest11 entry point: options, hookspecs, the plugin objects, and the fixtures.

Imported by every pytest run, so it imports only the options and the hook specifications:
``pytest_configure`` builds the parts (``composition``: a ``MountManager``, the ``FailureArtifacts``
reporter, the ``DeviceLogs`` reader, ...); the fixtures are a few lines over the manager, imported when
they run. Jumpstarter is imported only when a fixture needs the device (see ``sources``).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from jumpstarter_driver_ssh_mount.common.defaults import DEFAULT_COMMAND_TIMEOUT
from pytest_jumpstarter_mount import hooks
from pytest_jumpstarter_mount.config.options import add_options
from pytest_jumpstarter_mount.reporting.notices import JumpstarterMountWarning

if TYPE_CHECKING:
    from jumpstarter_driver_ssh_mount import DeviceFiles
    from jumpstarter_driver_ssh_mount.client import SSHMountClient
    from jumpstarter_driver_ssh_mount.ssh.commandresult import CommandResult
    from pytest_jumpstarter_mount.config.options import Scope
    from pytest_jumpstarter_mount.manager import MountManager


def pytest_addoption(parser: pytest.Parser) -> None:
    add_options(parser)


def pytest_addhooks(pluginmanager: pytest.PytestPluginManager) -> None:
    pluginmanager.add_hookspecs(hooks)


def pytest_configure(config: pytest.Config) -> None:
    from pytest_jumpstarter_mount.composition import configure

    configure(config)


def _manager(config: pytest.Config) -> MountManager:
    from pytest_jumpstarter_mount.manager import manager_key

    return config.stash[manager_key]


# -- fixtures -------------------------------------------------------------------------
@pytest.fixture(scope="session")
def jmp_client(pytestconfig: pytest.Config) -> Iterator[Any]:
    """The root Jumpstarter client of the device under test, for the whole session.

    Where the device comes from, first that applies: inside ``jmp shell``;
    ``--jmp-mount-exporter-config``; ``--jmp-mount-tls-grpc``; ``--jmp-mount-client`` with
    a selector or lease (released at the end of the session).
    """
    with _manager(pytestconfig).device() as client:
        yield client


@pytest.fixture(scope="session")
def jmp_mount_client(pytestconfig: pytest.Config, jmp_client: Any) -> SSHMountClient:
    """The device's ``SSHMountClient`` (at ``--jmp-mount-driver``, default ``mount``).

    Use it for mounts of your own: ``with jmp_mount_client.mounted(remote_path="/etc") as m:``.
    """
    return _manager(pytestconfig).mount_driver(jmp_client)


def _remote_fs_scope(fixture_name: str, config: pytest.Config) -> Scope:
    return _manager(config).settings.scope


@pytest.fixture(scope=_remote_fs_scope)
def remote_fs(request: pytest.FixtureRequest, jmp_mount_client: SSHMountClient) -> Iterator[DeviceFiles]:
    """The device's ``--jmp-mount-remote`` directory (default ``/``), mounted with sshfs or reached over SFTP.

    A ``Mount`` (sshfs: ``remote_fs.mountpoint`` is the local path) or, without FUSE
    (``--jmp-mount-backend``), an ``SftpFiles``; both have the device-file methods (``wait_for``,
    ``preserve``, ``snapshot``, ``collect``...), and ``remote_fs / "var/log/messages"`` is a file in it
    (a ``pathlib.Path``, or a ``DevicePath`` with pathlib's file API). Mounted on first use, unmounted
    when its scope ends (``--jmp-mount-scope``, default session), whatever the outcome.
    """
    with _manager(request.config).mounted(jmp_mount_client, request=request) as mount:
        yield mount


@pytest.fixture(scope="session")
def device_run(pytestconfig: pytest.Config, jmp_mount_client: SSHMountClient) -> Callable[..., CommandResult]:
    """Run a shell command on the device: ``device_run("systemctl restart app", check=True, timeout=60)``.

    Returns a result with ``returncode``, ``stdout`` and ``stderr`` (text). ``check=True``
    raises ``DeviceCommandError`` on a non-zero exit, showing the command, the code and the
    end of stderr. ``timeout`` (seconds, default 60) bounds the run: then ``ssh`` is killed and
    ``DeviceCommandTimeout`` raised (a command that ignores its closed connection may keep
    running on the device). It runs ``sh -c``-style through the device's login shell, with
    ``ssh`` and the SSH driver's user and key, reached as the mounts reach the device (the
    device's address when ``auto`` finds it answering with the exporter-vouched host key,
    else a Jumpstarter port forward; ``--jmp-mount-transport`` chooses), host key checked
    unless ``--jmp-mount-insecure``, and the ssh options among ``--jmp-mount-option``.
    The first call logs in; later ones share that connection (one new channel each), which
    ends with the session.
    """
    manager = _manager(pytestconfig)
    told: set[str] = set()

    def run(command: str, *, check: bool = False, timeout: float = DEFAULT_COMMAND_TIMEOUT) -> CommandResult:
        result = manager.connection.get(jmp_mount_client).run(command, timeout=timeout)
        for note in result.warnings:  # a host key that changed (vouched for, or refused): once a session
            if note not in told:
                told.add(note)
                warnings.warn(JumpstarterMountWarning(f"device_run: {note}"), stacklevel=2)
        return result.check() if check else result

    return run


@pytest.fixture
def remote_path(request: pytest.FixtureRequest) -> Iterator[Path]:
    """The device's ``--jmp-mount-remote`` directory: a ``pathlib.Path`` (sshfs) or ``DevicePath`` (sftp).

    Over sshfs it is the local directory where the device's files are visible; over SFTP (no FUSE)
    a ``DevicePath`` with pathlib's file API (``read_text``, ``write_text``, ``iterdir``, ``glob``...):
    tests that use those methods run on both.

    A test marked ``@pytest.mark.jmp_mount(remote="/etc", options=[...], direct=False)``
    gets its own mount of that path for its duration instead.
    """
    from pytest_jumpstarter_mount.config.marker import marker_spec

    manager, spec = _manager(request.config), marker_spec(request.node)
    if not spec.own_mount:
        yield manager.note_use(request.node, request.getfixturevalue("remote_fs")).root
        return
    with manager.mounted(request.getfixturevalue("jmp_mount_client"), spec, request=request) as mount:
        yield manager.note_use(request.node, mount).root
