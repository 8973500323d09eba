"""The composition root: ``configure`` builds the plugin's parts for one pytest process and registers them.

Imported by ``pytest_configure``, not by the entry point, so that ``import pytest_jumpstarter_mount.plugin``
costs only the options and hook specifications.
"""

from __future__ import annotations

import logging

import pytest

from pytest_jumpstarter_mount.config.marker import MARKER_HELP
from pytest_jumpstarter_mount.config.markerusage import MarkerUsage
from pytest_jumpstarter_mount.config.settings import load_settings
from pytest_jumpstarter_mount.config.transportchoice import INSECURE_WARNING
from pytest_jumpstarter_mount.manager import MountManager, manager_key
from pytest_jumpstarter_mount.pertest.restoring import MarkerRestores
from pytest_jumpstarter_mount.reporting.notices import InsecureMountWarning

LOGGERS = ("pytest_jumpstarter_mount", "jumpstarter_driver_ssh_mount")
MANAGER_PLUGIN = "jumpstarter_mount_manager"
RESTORES_PLUGIN = "jumpstarter_mount_marker_restores"
ARTIFACTS_PLUGIN = "jumpstarter_mount_artifacts"
FARM_PLUGIN = "jumpstarter_mount_farm"
GUARD_PLUGIN = "jumpstarter_mount_restore_guard"
AVAILABILITY_PLUGIN = "jumpstarter_mount_availability"
RUNS_PLUGIN = "jumpstarter_mount_artifact_runs"
MARKER_USAGE_PLUGIN = "jumpstarter_mount_marker_usage"
DEVICE_LOG_PLUGIN = "jumpstarter_mount_device_logs"
BOOT_WATCH_PLUGIN = "jumpstarter_mount_boot_watch"


def configure(config: pytest.Config) -> None:
    """Build this process's parts and register them with pytest (``pytest_configure``)."""
    config.addinivalue_line("markers", MARKER_HELP)
    manager = config.stash[manager_key] = MountManager(config, load_settings(config))
    config.pluginmanager.register(manager, MANAGER_PLUGIN)
    config.pluginmanager.register(MarkerRestores(manager.used_mounts), RESTORES_PLUGIN)
    config.pluginmanager.register(manager.availability, AVAILABILITY_PLUGIN)
    config.pluginmanager.register(MarkerUsage(config), MARKER_USAGE_PLUGIN)
    config.add_cleanup(manager.close)
    if manager.settings.source is not None:  # no device source, no device: the rest is never needed
        configure_device_parts(config, manager)
    if manager.settings.insecure and manager.worker_id == "main":  # once per run, not once per xdist worker
        config.issue_config_time_warning(InsecureMountWarning(INSECURE_WARNING), stacklevel=2)
    verbosity = config.get_verbosity()
    if verbosity > 0:
        for name in LOGGERS:
            logging.getLogger(name).setLevel(logging.INFO if verbosity == 1 else logging.DEBUG)


def configure_device_parts(config: pytest.Config, manager: MountManager) -> None:
    """The parts that matter only when a device can be used: failure reports, the lease, the restore
    journal, device logs; and the sweep of what killed runs left."""
    from pytest_jumpstarter_mount.pertest.artifacts import FailureArtifacts
    from pytest_jumpstarter_mount.pertest.devicelog import DeviceLogContext, DeviceLogs
    from pytest_jumpstarter_mount.pertest.reboots import BootWatch

    artifacts = FailureArtifacts(manager)
    config.pluginmanager.register(artifacts, ARTIFACTS_PLUGIN)
    config.pluginmanager.register(artifacts.runs, RUNS_PLUGIN)
    config.pluginmanager.register(manager.farm, FARM_PLUGIN)
    config.pluginmanager.register(manager.guard, GUARD_PLUGIN)
    config.pluginmanager.register(BootWatch(manager.used_mounts), BOOT_WATCH_PLUGIN)
    device_logs = DeviceLogs(
        DeviceLogContext.from_settings(
            manager.settings,
            client=lambda: manager.mount_client,
            unavailable=lambda: manager.availability.reason,
            test_dir=artifacts.runs.test_dir,
        )
    )
    config.pluginmanager.register(device_logs, DEVICE_LOG_PLUGIN)
    config.add_cleanup(device_logs.close)  # runs first: the shell goes before the mounts' cleanup
    manager.sweep()
