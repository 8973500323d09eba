"""The relay serves only the client that asked for it: a connection without the relay's token gets
nothing of the device and does not use the relay up; ports are random; relays are bounded; a failed
start leaves no listener; no wildcard spelling is accepted; no descriptor-number limit."""

from __future__ import annotations

import functools
import itertools
import os
import re
import resource
import socket
import threading
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import anyio
import pytest
from jumpstarter.common.exceptions import ConfigurationError
from jumpstarter.common.utils import serve

from helpers import LoopbackDevice, keygen, make_driver, wait_until
from jumpstarter_driver_ssh_mount import HostKeyError, InvalidOptionError
from jumpstarter_driver_ssh_mount.reach.relay import MAX_RELAYS, Relays
from jumpstarter_driver_ssh_mount.reach.relaydial import TOKEN_BYTES
from jumpstarter_driver_ssh_mount.reach.relaygate import MAX_PENDING, TOKEN_TIMEOUT

THIEF_ADDR = "127.0.0.2"  # another host, as far as the relay on 127.0.0.1 can tell
#: What thieves send first: nothing, what an ssh client sends, a wrong token, half a token.
THIEVES = {
    "silent": b"",
    "ssh client": b"SSH-2.0-OpenSSH_9.2\r\n",
    "wrong token": bytes(TOKEN_BYTES),
    "half a token": b"x" * (TOKEN_BYTES // 2),
}


def thief(port: int, first: bytes) -> socket.socket:
    """A connection from THIEF_ADDR to the relay on 127.0.0.1:``port`` that has sent ``first``."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=5, source_address=(THIEF_ADDR, 0))
    if first:
        sock.sendall(first)
    return sock


def everything(sock: socket.socket) -> bytes:
    """All ``sock`` receives until the far end closes it (the relay drops a thief within TOKEN_TIMEOUT)."""
    sock.settimeout(TOKEN_TIMEOUT + 10)
    data = b""
    try:
        while chunk := sock.recv(4096):
            data += chunk
    except ConnectionResetError:  # closed with the thief's bytes unread
        pass
    return data


def listening(port: int) -> bool:
    """True when a TCP socket of this host listens on ``port`` (/proc/net/tcp and tcp6, state 0A)."""
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for row in Path(table).read_text().splitlines()[1:]:
            fields = row.split()
            if int(fields[1].rsplit(":", 1)[1], 16) == port and fields[3] == "0A":
                return True
    return False


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# -- the token ---------------------------------------------------------------------------------
def test_connections_without_the_token_get_nothing_and_leave_the_relay(device: LoopbackDevice) -> None:
    relays = Relays("127.0.0.1", None)
    relay = relays.open((device.host, device.port))
    try:
        with ExitStack() as stack:
            thieves = {name: stack.enter_context(thief(relay.port, first)) for name, first in THIEVES.items()}
            with socket.create_connection(("127.0.0.1", relay.port), timeout=5) as client:
                client.sendall(relay.token)  # behind every thief in the queue, the silent one still pending
                client.settimeout(5)
                assert client.recv(64).startswith(b"SSH-2.0-")  # the device's sshd
                assert {name: everything(sock) for name, sock in thieves.items()} == dict.fromkeys(THIEVES, b"")
    finally:
        relays.close_all()
    assert len(relays) == 0


def test_a_wrong_token_is_dropped_and_the_relay_keeps_waiting(device: LoopbackDevice) -> None:
    relays = Relays("127.0.0.1", None)
    relay = relays.open((device.host, device.port))
    try:
        wrong = bytes(b ^ 1 for b in relay.token)  # one bit off in every byte
        with thief(relay.port, wrong) as sock:
            assert everything(sock) == b""
        assert relay.alive and listening(relay.port)
        with thief(relay.port, relay.token) as sock:  # the token is what counts, not the address
            sock.settimeout(5)
            assert sock.recv(64).startswith(b"SSH-2.0-")
    finally:
        relays.close_all()


def test_a_flood_of_silent_connections_does_not_keep_the_client_out(device: LoopbackDevice) -> None:
    relays = Relays("127.0.0.1", None)
    relay = relays.open((device.host, device.port))
    try:
        with ExitStack() as stack:
            flood = [stack.enter_context(thief(relay.port, b"")) for _ in range(2 * MAX_PENDING)]
            with thief(relay.port, relay.token) as client:  # the newest: the oldest silent ones make room
                client.settimeout(5)
                assert client.recv(64).startswith(b"SSH-2.0-")
            assert [everything(sock) for sock in flood] == [b""] * len(flood)
    finally:
        relays.close_all()


@contextmanager
def thieves_at_each_window(client, stolen: dict[str, bytes]) -> Iterator[None]:
    """Whenever ``client`` is offered a relay, thieves from THIEF_ADDR connect before it can; what they
    receive is put in ``stolen``."""
    real_call = client.call
    with ExitStack() as stack:

        def steal(name: str, sock: socket.socket) -> None:
            stolen[name] = everything(sock)

        def call(method: str, *args):
            answer = real_call(method, *args)
            if method == "open_relay" and answer.get("port"):
                for name, first in THIEVES.items():
                    sock = stack.enter_context(thief(int(answer["port"]), first))
                    stack.callback(functools.partial(steal, name, sock))
            return answer

        client.call = call
        try:
            yield
        finally:
            client.call = real_call


def test_a_thief_in_the_window_gets_nothing_and_the_mount_keeps_its_relay(
    device: LoopbackDevice, mountpoint: Path
) -> None:
    driver = make_driver(device, enable_address=False, relay_listen="127.0.0.1")
    stolen: dict[str, bytes] = {}
    with serve(driver) as client:
        with thieves_at_each_window(client, stolen), client.mounted(mountpoint, remote_path=device.remote("/")) as m:
            assert m.transport == "relay" and m.warnings == [], m.transport_note  # not the forward fallback
            assert (m.mountpoint / "etc/os-release").read_text().startswith("NAME=")
            (m.mountpoint / "data/guard.txt").write_text("through the relay")
        assert stolen == dict.fromkeys(THIEVES, b"")
        assert (device.root / "data/guard.txt").read_text() == "through the relay"
        (device.root / "data/guard.txt").unlink()
    assert len(driver._relays) == 0


def test_an_offer_without_a_token_is_not_used(device: LoopbackDevice, mountpoint: Path) -> None:
    """An older exporter's relay serves whoever connects first: the mount takes the port forward.

    Simulated: the offer's token is removed on its way to the client (no older exporter runs here).
    """
    driver = make_driver(device, enable_address=False, relay_listen="127.0.0.1")
    with serve(driver) as client:
        real_call = client.call
        client.call = lambda method, *args: (
            {**real_call(method, *args), "token": ""} if method == "open_relay" else real_call(method, *args)
        )
        with client.mounted(mountpoint, remote_path=device.remote("/")) as m:
            assert m.transport == "forward"
            [warning] = m.warnings
            assert "serves whoever connects first (an older SSHMount without relay tokens)" in warning
            wait_until(lambda: len(driver._relays) == 0, 5, "the unused relay to be closed")


def test_the_users_proxy_command_and_the_relay(device: LoopbackDevice, mountpoint: Path) -> None:
    """The relay needs its own ProxyCommand: forced, a usage error naming the option; auto, the forward."""
    driver = make_driver(device, enable_address=False, relay_listen="127.0.0.1")
    proxy = "ProxyCommand=nc %h %p"
    with serve(driver) as client:
        with pytest.raises(InvalidOptionError, match=r"^transport 'relay': .*option 'ProxyCommand=nc %h %p' would"):
            client.mounted(mountpoint, remote_path=device.remote("/"), transport="relay", extra_args=[proxy])
        assert len(driver._relays) == 0  # none was opened for nothing
        with client.mounted(mountpoint, remote_path=device.remote("/"), extra_args=["ProxyJump=none"]) as m:
            assert m.transport == "forward"
            assert "option 'ProxyJump=none' would replace the ProxyCommand" in m.transport_note


def test_the_token_is_in_no_argv_and_no_environment(device: LoopbackDevice, mountpoint: Path) -> None:
    """argv is world-readable (/proc/PID/cmdline); the environment could be sent on (SendEnv)."""
    driver = make_driver(device, enable_address=False, relay_listen="127.0.0.1")
    tokens: list[str] = []
    with serve(driver) as client:
        real_call = client.call

        def call(method: str, *args):
            answer = real_call(method, *args)
            tokens.extend([answer["token"]] if method == "open_relay" else [])
            return answer

        client.call = call
        with client.mounted(mountpoint, remote_path=device.remote("/")) as m:
            assert m.transport == "relay"
            seen = []
            for pid in filter(str.isdigit, os.listdir("/proc")):
                for part in ("cmdline", "environ"):
                    try:
                        seen.append(Path(f"/proc/{pid}/{part}").read_bytes().decode(errors="replace"))
                    except OSError:
                        continue  # gone meanwhile
    [token] = tokens
    assert len(token) == 2 * TOKEN_BYTES and not any(token in text for text in seen)


def test_the_host_key_is_checked_end_to_end_through_the_relay(
    device: LoopbackDevice, mountpoint: Path, tmp_path: Path
) -> None:
    """The relay and its token are a path, not a trust anchor: a key the exporter does not vouch for gets no login."""
    wrong = keygen(tmp_path / "other_host_key").with_suffix(".pub").read_text()
    driver = make_driver(device, enable_address=False, relay_listen="127.0.0.1", host_key=wrong)
    logins = (device.base / "sshd.log").read_text().count("Accepted publickey")
    with serve(driver) as client, pytest.raises(HostKeyError, match="no login was attempted") as refused:
        client.mounted(mountpoint, remote_path=device.remote("/"), transport="relay")
    assert "(relay)" in str(refused.value)  # refused on the relay's path, not a fallback
    assert (device.base / "sshd.log").read_text().count("Accepted publickey") == logins
    assert len(driver._relays) == 0


def test_the_users_bashrc_does_not_run_in_the_dialers_shell(
    device: LoopbackDevice, mountpoint: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """bash with a socket for stdin and SHLVL below 2 reads ~/.bashrc: one that prints would corrupt the
    descriptor ssh receives. HOME (where bash looks) is a folder of this test's, not the user's."""
    home, ran = tmp_path / "home", tmp_path / "bashrc-ran"
    home.mkdir()
    (home / ".bashrc").write_text(f"touch {ran}\necho 'welcome to the test host'\n")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("SHELL", "/bin/bash")
    monkeypatch.delenv("SHLVL", raising=False)
    driver = make_driver(device, enable_address=False, relay_listen="127.0.0.1")
    with serve(driver) as client, client.mounted(mountpoint, remote_path=device.remote("/")) as m:
        assert m.transport == "relay" and m.warnings == [], m.transport_note
        assert (m.mountpoint / "etc/os-release").read_text().startswith("NAME=")
    assert not ran.exists()


# -- bounds, ports, descriptors ------------------------------------------------------------------
def test_relays_are_bounded_and_the_refusal_names_the_bound(device: LoopbackDevice, mountpoint: Path) -> None:
    driver = make_driver(device, enable_address=False, relay_listen="127.0.0.1")
    with serve(driver) as client:
        offers = [client.call("open_relay") for _ in range(MAX_RELAYS)]
        try:
            assert all(offer["problem"] == "" for offer in offers) and len(driver._relays) == MAX_RELAYS
            refusal = client.call("open_relay")
            assert refusal["problem"] == (
                f"{MAX_RELAYS} relays are open, the most one SSHMount keeps at once "
                f"(MAX_RELAYS = {MAX_RELAYS}); each ends with its mount"
            )
            with client.mounted(mountpoint, remote_path=device.remote("/")) as m:
                assert m.transport == "forward"
                [warning] = m.warnings
                assert f"(MAX_RELAYS = {MAX_RELAYS})" in warning
        finally:
            for offer in offers:
                client.call("close_relay", offer["id"])
    assert len(driver._relays) == 0


def test_a_relay_that_cannot_start_leaves_no_listener(device: LoopbackDevice, monkeypatch: pytest.MonkeyPatch) -> None:
    """Simulated: thread creation fails (as when the exporter is out of threads, which cannot be made safely)."""
    port = free_port()
    relays = Relays("127.0.0.1", (port, port))

    def cannot_start(self: threading.Thread) -> None:
        raise RuntimeError("can't start new thread")

    with monkeypatch.context() as patch:
        patch.setattr(threading.Thread, "start", cannot_start)
        with pytest.raises(OSError, match=r"^cannot start a relay thread: can't start new thread$"):
            relays.open((device.host, device.port))
    assert not listening(port) and len(relays) == 0
    relay = relays.open((device.host, device.port))  # the port is free again
    try:
        assert relay.port == port and listening(port)
    finally:
        relays.close_all()


@pytest.mark.parametrize(
    "spelling",
    [
        *("0", "0x0", "00", "0.0", "0.0.0", "0.0.0.0", "000.000.000.000", "0x00000000", " 0.0.0.0 ", "[0]"),
        *("::", "[::]", "::0", "0:0:0:0:0:0:0:0", "::ffff:0.0.0.0", "::ffff:0:0", "[::ffff:0.0.0.0]", "::0.0.0.0"),
    ],
)
def test_every_spelling_of_a_wildcard_is_refused(device: LoopbackDevice, spelling: str) -> None:
    with pytest.raises(
        ConfigurationError, match=rf"^SSHMount relay_listen {re.escape(repr(spelling))} is a wildcard address; "
    ):
        make_driver(device, relay_listen=spelling)


def test_a_numeric_spelling_is_given_in_its_usual_form(device: LoopbackDevice) -> None:
    offer = anyio.run(make_driver(device, relay_listen="0x7f000001").open_relay)
    assert offer["host"] == "127.0.0.1" and offer["problem"] == ""


def not_consecutive(ports: list[int]) -> bool:
    """True unless each port is the one before it plus one (as handing them out in order gives)."""
    return any(b != a + 1 for a, b in itertools.pairwise(ports))


@pytest.mark.parametrize("range_", [True, False], ids=["relay_ports", "kernel"])
def test_ports_are_not_predictable(device: LoopbackDevice, range_: bool) -> None:
    """Eight relays in a row do not come out sequential, and fresh drivers do not all start on the same
    port, as handing ports out in order did (by chance, in a 200-port range: below one in a million)."""
    low = free_port() // 200 * 200 if range_ else 0
    ports = (max(low, 1024), max(low, 1024) + 199) if range_ else None
    relays = Relays("127.0.0.1", ports)
    try:
        opened = [relays.open((device.host, device.port)).port for _ in range(8)]
    finally:
        relays.close_all()
    assert len(set(opened)) == 8 and not_consecutive(opened), opened
    if ports is not None:
        firsts = []
        for _ in range(4):
            fresh = Relays("127.0.0.1", ports)
            firsts.append(fresh.open((device.host, device.port)).port)
            fresh.close_all()
        assert len(set(firsts)) > 1, firsts  # not always the same first port


def test_a_relay_serves_with_descriptors_above_1024(device: LoopbackDevice, mountpoint: Path) -> None:
    """Every descriptor below 1100 is taken in this process (which runs the exporter too), so the
    relay's listener, wake pipe and connections are all above select()'s limit of 1024."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < 4096:
        pytest.skip(f"the hard descriptor limit is {hard}")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, 4096), hard))
    taken: list[int] = []
    try:
        while not taken or taken[-1] < 1100:
            taken.append(os.open(os.devnull, os.O_RDONLY))
        driver = make_driver(device, enable_address=False, relay_listen="127.0.0.1")
        with serve(driver) as client, client.mounted(mountpoint, remote_path=device.remote("/")) as m:
            probe = os.open(os.devnull, os.O_RDONLY)
            os.close(probe)
            assert probe > 1024  # what the relay opened is above it too (lowest free number first)
            assert m.transport == "relay" and m.warnings == [], m.transport_note
            assert (m.mountpoint / "etc/os-release").read_text().startswith("NAME=")
    finally:
        for fd in taken:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
