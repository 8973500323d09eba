"""Failure artifacts through the plugin: the collection mount obeys the user's security options,
and one glob that fails never stops the others."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from helpers import LoopbackDevice, Suite, keygen

ACCEPTED = "Accepted publickey"


@pytest.fixture
def own_device(suite: Suite, tmp_path: Path) -> Iterator[Suite]:
    """``suite`` pointed at a device of this test alone, whose sshd log only this test reads."""
    device = LoopbackDevice(tmp_path / "own-device").setup().start()
    device.exporter_config(suite.pytester.path / "exporter.yaml")
    yield Suite(suite.pytester, device, suite.log, suite.mount_dir)
    device.stop()


def logins(device: LoopbackDevice) -> int:
    """How many logins the device's sshd accepted so far."""
    return (device.base / "sshd.log").read_text().count(ACCEPTED)


def pinned_known_hosts(path: Path, device: LoopbackDevice, *, right: bool) -> Path:
    """A known_hosts file pinning alias ``pinned`` to the device's host key, or (``right=False``) another key."""
    key = device.base / "host_key.pub" if right else Path(f"{keygen(path.with_suffix('.other'))}.pub")
    path.write_text("pinned " + " ".join(key.read_text().split()[:2]) + "\n")
    return path


@pytest.mark.parametrize("right_key", [False, True], ids=["wrong-key", "right-key"])
def test_collection_mount_obeys_host_key_pinning(own_device: Suite, tmp_path: Path, right_key: bool) -> None:
    suite, dev = own_device, own_device.device
    known = pinned_known_hosts(tmp_path / "known_hosts", dev, right=right_key)
    suite.pytester.makepyfile(
        test_pin="""
        def test_fails_without_a_mount(jmp_mount_client):
            assert False, "device misbehaved"
        """
    )
    before = logins(dev)
    result = suite.run(
        f"--jmp-mount-collect={dev.remote('/var/log')}/messages",
        "--jmp-mount-option=StrictHostKeyChecking=yes",
        "--jmp-mount-option=HostKeyAlias=pinned",
        f"--jmp-mount-option=UserKnownHostsFile={known}",
    )
    result.assert_outcomes(failed=1)
    collected = suite.pytester.path / "jmp-artifacts/test_pin.py_test_fails_without_a_mount"
    section = result.stdout.str().split("jumpstarter mount artifacts")[1].split("short test summary")[0]
    if right_key:  # the control: pinning the right key collects, and the log shows the login
        assert logins(dev) > before
        assert (collected / dev.remote("/var/log/messages").lstrip("/")).exists()
    else:
        assert logins(dev) == before, "the collection logged in to a host whose key does not match the pin"
        assert not collected.exists()
        notes = [line for line in section.splitlines() if line.startswith("note:")]
        assert len(notes) == 1, section
        assert f"could not mount the device to collect {dev.remote('/var/log')}/messages" in notes[0]
        assert "does not match the one pinned in the known-hosts file" in notes[0]
    suite.assert_clean()
