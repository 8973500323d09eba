"""Host key verification: the exporter vouches for the device's key, every mount checks it.

Against real sshd devices of this test's own (their keys and logs change here), served by
Jumpstarter in-process. "No login" is read from the sshd log: sshd logs "Accepted publickey"
for every login, and the host key check comes before authentication.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import stat
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from jumpstarter.common.exceptions import ConfigurationError
from jumpstarter.driver import export
from jumpstarter_driver_network.driver import TcpNetwork

from helpers import LoopbackDevice, closed_port, keygen, leftovers
from jumpstarter_driver_ssh_mount import HostKeyError
from jumpstarter_driver_ssh_mount.driver import SSHMount
from jumpstarter_driver_ssh_mount.reach.transport import resolve_transport
from jumpstarter_driver_ssh_mount.ssh.hostkeys import (
    HostKey,
    KnownHosts,
    parse_host_keys,
    parse_keyscan,
)

LOGIN = "Accepted publickey"


# -- the pieces, without a device ---------------------------------------------------
def ssh_keygen_fingerprint(pub: Path) -> str:
    """The fingerprint as ``ssh-keygen -lf`` prints it."""
    return subprocess.run(["ssh-keygen", "-lf", str(pub)], capture_output=True, text=True, check=True).stdout.split()[1]


@pytest.mark.parametrize("kind", ["ed25519", "ecdsa", "rsa"])
def test_fingerprint_matches_ssh_keygen(tmp_path: Path, kind: str) -> None:
    path = tmp_path / f"key_{kind}"
    subprocess.run(["ssh-keygen", "-q", "-t", kind, "-N", "", "-C", "a comment", "-f", str(path)], check=True)
    pub = path.with_suffix(".pub")
    (key,) = parse_host_keys(pub.read_text())
    assert key.keytype == pub.read_text().split()[0]
    assert key.comment == "a comment"
    assert key.fingerprint == ssh_keygen_fingerprint(pub)
    assert str(key) == f"{key.fingerprint} ({key.keytype})"


def test_parse_host_keys_skips_blanks_and_comments(tmp_path: Path) -> None:
    one = keygen(tmp_path / "one").with_suffix(".pub").read_text()
    two = keygen(tmp_path / "two").with_suffix(".pub").read_text()
    keys = parse_host_keys(f"# the device's keys\n\n  {one}\n{two}")
    assert [k.line for k in keys] == [" ".join(one.split()[:2]), " ".join(two.split()[:2])]


def test_malformed_lines_are_named(tmp_path: Path) -> None:
    kind, blob = keygen(tmp_path / "k").with_suffix(".pub").read_text().split()[:2]
    cases = {
        f"# c\n{kind} {blob}\njust-one-word\n": "line 3: expected 'KEYTYPE BASE64",
        f"{kind} not*base64\n": "line 1: the key after 'ssh-ed25519' is not valid base64",
        f"ssh-rsa {blob}\n": "line 1: the key is labelled 'ssh-rsa' but its data holds 'ssh-ed25519'",
        "ssh-ed25519 AAAA\n": "line 1: the key is labelled 'ssh-ed25519' but its data holds no key type",
        "\n# nothing\n": "no host key given",
        f"[board]:22 {kind} {blob}\n": "line 1: starts with '\\[board\\]:22'; give only 'KEYTYPE BASE64",
    }
    for text, message in cases.items():
        with pytest.raises(ValueError, match=f"^{message}"):
            parse_host_keys(text)


def test_keyscan_output(tmp_path: Path) -> None:
    kind, blob = keygen(tmp_path / "k").with_suffix(".pub").read_text().split()[:2]
    out = f"# 127.0.0.1:22 SSH-2.0-OpenSSH\n[127.0.0.1]:2222 {kind} {blob}\ngarbage line here\n"
    assert parse_keyscan(out) == (HostKey(kind, blob),)


def test_known_hosts_file_is_private_and_removed(tmp_path: Path) -> None:
    keys = parse_host_keys(keygen(tmp_path / "k").with_suffix(".pub").read_text())
    with KnownHosts(keys, alias="board-7") as known:
        path = Path(known.path)
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
        assert path.read_text() == f"board-7 {keys[0].line}\n"
        assert {"StrictHostKeyChecking=yes", f"UserKnownHostsFile={path}", "HostKeyAlias=board-7"} <= set(known.options)
    assert not path.parent.exists()
    known.close()  # idempotent


def test_resolve_transport() -> None:
    assert resolve_transport(None) == "auto"
    assert resolve_transport(None, direct=True) == "direct"
    assert resolve_transport("forward", direct=True) == "forward"
    with pytest.raises(ValueError, match="choose one of auto, direct, forward"):
        resolve_transport("carrier-pigeon")


# -- devices and exporters of this test ----------------------------------------------
@pytest.fixture
def dev(tmp_path: Path) -> Iterator[LoopbackDevice]:
    """A device of this test alone: its host key may change, its log is read."""
    device = LoopbackDevice(tmp_path / "dev").setup().start()
    yield device
    device.stop()


@dataclasses.dataclass(kw_only=True)
class PublishedElsewhere(TcpNetwork):
    """A TcpNetwork whose published address is not where the exporter connects.

    Stands for a test host whose network puts another machine at the device's address.
    """

    published: str

    @export
    async def address(self) -> str:
        return self.published


@dataclasses.dataclass(kw_only=True)
class OlderSSHMount(SSHMount):
    """An SSHMount from before host keys were vouched for: its exporter does not offer ``host_keys``.

    Simulated by a subclass, as no older release of this driver is installed next to this one;
    the client sees exactly what an older exporter answers (no such method).
    """

    host_keys = None


def mount_driver(
    device: LoopbackDevice, *, host_key: str | None = None, published: str | None = None, cls: type = SSHMount
) -> SSHMount:
    """The driver tree an exporter builds for ``device``, with ``host_key`` and another published address."""
    from jumpstarter_driver_ssh.driver import SSHWrapper

    if published is None:
        tcp = TcpNetwork(host=device.host, port=device.port)
    else:
        tcp = PublishedElsewhere(host=device.host, port=device.port, published=published)
    ssh = SSHWrapper(default_username=device.user, ssh_identity=device.identity(), children={"tcp": tcp})
    return cls(children={"ssh": ssh}, host_key=host_key)


@contextmanager
def served(driver: SSHMount):
    from jumpstarter.common.utils import serve

    with serve(driver) as client:
        yield client


def host_key_text(device: LoopbackDevice) -> str:
    return (device.base / "host_key.pub").read_text()


def other_key(tmp_path: Path) -> str:
    return keygen(tmp_path / "other_host_key").with_suffix(".pub").read_text()


def logins(device: LoopbackDevice) -> int:
    """How many logins the device's sshd has accepted so far."""
    return (device.base / "sshd.log").read_text().count(LOGIN)


def reflash(device: LoopbackDevice) -> None:
    """A new host key and a restarted sshd, on the same address."""
    device.stop()
    for path in (device.host_key, device.host_key.with_suffix(".pub")):
        path.unlink()
    keygen(device.host_key)
    device.start()


def known_hosts_path(argv: list[str]) -> str:
    return next(a.split("=", 1)[1] for a in argv if a.startswith("UserKnownHostsFile="))


# -- mounting against real devices ----------------------------------------------------
def test_configured_key_mounts_and_auto_goes_direct(dev: LoopbackDevice, mountpoint: Path) -> None:
    with served(mount_driver(dev, host_key=host_key_text(dev))) as c:
        assert c.call("host_keys", False)["source"] == "configured"
        with c.mounted(mountpoint, remote_path=dev.remote()) as m:
            assert m.transport == "direct" and (m.host, m.port) == (dev.host, dev.port)
            assert "answered with the vouched host key" in (m.transport_note or "")
            assert "StrictHostKeyChecking=yes" in m.argv
            known = Path(known_hosts_path(m.argv))
            assert known.read_text().split()[1:] == host_key_text(dev).split()[:2]
            assert (m / "etc/os-release").exists()
        assert not known.parent.exists()
    assert leftovers(mountpoint, dir_should_exist=True) == []


@pytest.mark.parametrize("transport", ["auto", "forward", "direct"])
def test_wrong_configured_key_is_refused_before_login(
    dev: LoopbackDevice, mountpoint: Path, tmp_path: Path, transport: str
) -> None:
    wrong = other_key(tmp_path)
    before = logins(dev)
    with served(mount_driver(dev, host_key=wrong)) as c, pytest.raises(HostKeyError) as refused:
        c.mounted(mountpoint, remote_path=dev.remote(), transport=transport)
    message = str(refused.value)
    expected, offered = parse_host_keys(wrong)[0].fingerprint, ssh_keygen_fingerprint(dev.host_key.with_suffix(".pub"))
    assert f"offered {offered} (ssh-ed25519), the exporter vouches for {expected}" in message
    assert "configured host_key" in message and "no login was attempted" in message
    assert ("(direct)" in message) == (transport == "direct")
    assert logins(dev) == before
    assert leftovers(mountpoint, dir_should_exist=True) == []


def test_scanned_key_mounts(dev: LoopbackDevice, mountpoint: Path) -> None:
    with served(mount_driver(dev)) as c:
        answer = c.call("host_keys", False)
        assert answer["source"] == "scanned" and answer["keys"] == [" ".join(host_key_text(dev).split()[:2])]
        for transport in ("forward", "auto"):
            with c.mounted(mountpoint, remote_path=dev.remote(), transport=transport) as m:
                assert m.transport == ("forward" if transport == "forward" else "direct")
                assert "StrictHostKeyChecking=yes" in m.argv
                assert (m / "etc/os-release").exists()
    assert leftovers(mountpoint, dir_should_exist=True) == []


@pytest.mark.parametrize("transport", ["auto", "forward"])
def test_reflash_with_scanned_key_mounts_again(
    dev: LoopbackDevice, mountpoint: Path, transport: str, caplog: pytest.LogCaptureFixture
) -> None:
    with served(mount_driver(dev)) as c:
        with c.mounted(mountpoint, remote_path=dev.remote(), transport=transport) as m:
            assert (m / "etc/os-release").exists()
        old = c.call("host_keys", False)["keys"]
        reflash(dev)
        with caplog.at_level(logging.INFO), c.mounted(mountpoint, remote_path=dev.remote(), transport=transport) as m:
            assert (m / "etc/os-release").exists()
        assert "host key changed" in caplog.text
        assert c.call("host_keys", False)["keys"] == [" ".join(host_key_text(dev).split()[:2])] != old
    assert leftovers(mountpoint, dir_should_exist=True) == []


def test_reflash_with_configured_key_is_refused(dev: LoopbackDevice, mountpoint: Path) -> None:
    with served(mount_driver(dev, host_key=host_key_text(dev))) as c:
        with c.mounted(mountpoint, remote_path=dev.remote()) as m:
            assert (m / "etc/os-release").exists()
        reflash(dev)
        before = logins(dev)
        with pytest.raises(HostKeyError, match=r"if the device was reflashed, put its new .* in host_key"):
            c.mounted(mountpoint, remote_path=dev.remote())
        assert logins(dev) == before
    assert leftovers(mountpoint, dir_should_exist=True) == []


@pytest.fixture
def impostor(tmp_path: Path, dev: LoopbackDevice) -> Iterator[LoopbackDevice]:
    """Another sshd with its own host key, that would accept the device's login."""
    other = LoopbackDevice(tmp_path / "impostor").setup()
    (other.base / "authorized_keys").write_text((dev.base / "client_key.pub").read_text())
    other.start()
    yield other
    other.stop()


def test_impostor_at_the_address(
    dev: LoopbackDevice, impostor: LoopbackDevice, mountpoint: Path, caplog: pytest.LogCaptureFixture
) -> None:
    driver = mount_driver(dev, published=f"tcp://{impostor.host}:{impostor.port}")
    with served(driver) as c:
        with caplog.at_level(logging.INFO), c.mounted(mountpoint, remote_path=dev.remote()) as m:
            assert m.transport == "forward"
            assert f"{impostor.host}:{impostor.port} offered another host key" in (m.transport_note or "")
            assert (m / "etc/os-release").exists()
        assert "transport auto: using the port forward" in caplog.text
        with pytest.raises(HostKeyError) as refused:
            c.mounted(mountpoint, remote_path=dev.remote(), transport="direct")
    offered = ssh_keygen_fingerprint(impostor.host_key.with_suffix(".pub"))
    assert f"at {impostor.host} port {impostor.port} (direct): it offered {offered}" in str(refused.value)
    assert "that address is not the device the exporter reaches" in str(refused.value)
    assert logins(impostor) == 0
    assert leftovers(mountpoint, dir_should_exist=True) == []


def test_unreachable_address_uses_the_forward_quickly(dev: LoopbackDevice, mountpoint: Path) -> None:
    with closed_port() as port, served(mount_driver(dev, published=f"tcp://127.0.0.1:{port}")) as c:
        started = time.monotonic()
        with c.mounted(mountpoint, remote_path=dev.remote()) as m:
            assert m.transport == "forward"
            assert m.transport_note == (
                f"127.0.0.1:{port}: Connection refused; the exporter offers no relay (relay_listen is not set); "
                "host key verified against what the exporter vouches for"
            )
        assert time.monotonic() - started < 10
    assert leftovers(mountpoint, dir_should_exist=True) == []


def test_user_options_and_insecure_turn_verification_off(
    dev: LoopbackDevice, mountpoint: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A wrong vouched key does not matter once the user turns checking off; auto then keeps to the forward."""
    with served(mount_driver(dev, host_key=other_key(tmp_path))) as c:
        with c.mounted(mountpoint, remote_path=dev.remote(), extra_args=["StrictHostKeyChecking=no"]) as m:
            assert m.transport == "forward"
            assert m.transport_note == "host key NOT verified (your StrictHostKeyChecking=no)"
            assert "StrictHostKeyChecking=no" in m.argv and not any("HostKeyAlias" in a for a in m.argv)
            assert (m / "etc/os-release").exists()
        with caplog.at_level(logging.WARNING), c.mounted(mountpoint, remote_path=dev.remote(), insecure=True) as m:
            assert m.transport == "forward" and (m / "etc/os-release").exists()
        assert "insecure: the device's host key is not verified" in caplog.text
        with c.mounted(mountpoint, remote_path=dev.remote(), insecure=True, transport="direct") as m:
            assert m.transport == "direct"  # asked for: not verified, not refused
    assert leftovers(mountpoint, dir_should_exist=True) == []


def test_older_exporter_mounts_unverified_with_a_warning(
    dev: LoopbackDevice, mountpoint: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with (
        served(mount_driver(dev, cls=OlderSSHMount)) as c,
        caplog.at_level(logging.WARNING),
        c.mounted(mountpoint, remote_path=dev.remote()) as m,
    ):
        assert m.transport == "forward"  # auto never goes direct to an unverified host
        assert m.transport_note == (
            "host key NOT verified (the exporter's SSHMount does not vouch for host keys (an older version))"
        )
        assert "verified against" not in m.transport_note
        assert m.warnings == [f"{m.transport_note}; update jumpstarter-driver-ssh-mount on the exporter"]
        assert "StrictHostKeyChecking=no" in m.argv
        assert (m / "etc/os-release").exists()
    warnings = [r.getMessage() for r in caplog.records if "does not vouch for host keys" in r.getMessage()]
    assert len(warnings) == 1 and "\n" not in warnings[0]
    assert leftovers(mountpoint, dir_should_exist=True) == []


def test_older_exporter_refuses_direct(dev: LoopbackDevice, mountpoint: Path) -> None:
    """Fail closed: nothing vouched for, so the device's address is not connected to unchecked."""
    before = logins(dev)
    with served(mount_driver(dev, cls=OlderSSHMount)) as c:
        with pytest.raises(HostKeyError, match=r"^transport 'direct' refused: the exporter's SSHMount does not vouch"):
            c.mounted(mountpoint, remote_path=dev.remote(), transport="direct")
        with pytest.raises(HostKeyError, match=r"^transport 'direct' refused"):
            c.run("true", transport="direct")
        with c.mounted(mountpoint, remote_path=dev.remote(), transport="direct", insecure=True) as m:
            assert m.transport == "direct" and m.transport_note == "host key NOT verified (--insecure)"
    assert logins(dev) == before + 1  # the insecure mount's only
    assert leftovers(mountpoint, dir_should_exist=True) == []


def test_malformed_host_key_fails_at_exporter_start(dev: LoopbackDevice, tmp_path: Path) -> None:
    good = other_key(tmp_path)
    with pytest.raises(ConfigurationError, match=r"^SSHMount host_key, line 2: the key is labelled 'ssh-rsa'"):
        mount_driver(dev, host_key=good + "ssh-rsa " + good.split()[1])


def test_known_hosts_leaves_no_file_after_failure(
    dev: LoopbackDevice, mountpoint: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    private = tmp_path / "tmp"
    private.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(private))  # where KnownHosts makes its directory
    with served(mount_driver(dev, host_key=other_key(tmp_path))) as c, pytest.raises(HostKeyError):
        c.mounted(mountpoint, remote_path=dev.remote(), transport="forward")
    assert os.listdir(private) == []
    assert leftovers(mountpoint, dir_should_exist=True) == []
