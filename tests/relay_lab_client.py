"""The test host's side of the relay lab (tests/test_relay.py): run in its network namespace.

    python relay_lab_client.py ACTION EXPORTER_ADDRESS REMOTE MOUNT_DIR [ARGS]

ACTION is ``mount TRANSPORT`` (mount, read, write one file), ``second`` (a connection without
the relay's token, then the client's, then a second one) or ``hold`` (mount through the relay,
read again after a line on stdin). The last line of output is the result as JSON.
"""

from __future__ import annotations

import json
import socket
import sys
import time
import warnings

from pytest_jumpstarter_mount.config.settings import Settings
from pytest_jumpstarter_mount.sources.rootclient import open_device

action, address, remote, mount_dir, *rest = sys.argv[1:]


def mount(client, transport):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            m = client.mounted(None, remote_path=remote, transport=transport, mount_dir=mount_dir)
        except Exception as exc:
            return {"error": type(exc).__name__, "message": str(exc)}
    with m:
        read = (m.mountpoint / "etc/os-release").read_text()
        (m.mountpoint / "data/lab.txt").write_text(f"through {m.transport}")
        return {
            "transport": m.transport,
            "note": m.transport_note,
            "read": read,
            "warnings": [str(w.message) for w in caught] + m.warnings,
        }


def received(sock):
    """Everything ``sock`` gets until the far end closes it."""
    sock.settimeout(10)
    data = b""
    try:
        while chunk := sock.recv(4096):
            data += chunk
    except ConnectionResetError:
        pass
    return data.decode(errors="replace")


def second(client):
    offer = client.call("open_relay")
    where = (offer["host"], int(offer["port"]))
    with socket.create_connection(where, 5) as thief:  # knows the port, not the token
        thief.sendall(b"SSH-2.0-OpenSSH_9.2\r\n" + bytes(32))
        stolen = received(thief)
    first = socket.create_connection(where, 5)
    first.sendall(bytes.fromhex(offer["token"]))
    banner = first.recv(64).decode()
    try:
        socket.create_connection(where, 5).close()
        again = "connected"
    except ConnectionRefusedError:
        again = "refused"
    client.call("close_relay", offer["id"])
    first.settimeout(5)
    return {"stolen": stolen, "banner": banner, "second": again, "after_close": first.recv(64).decode()}


def hold(client):
    m = client.mounted(None, remote_path=remote, transport="relay", mount_dir=mount_dir)
    with m:
        (m.mountpoint / "etc/os-release").read_text()
        print(json.dumps({"transport": m.transport}), flush=True)
        sys.stdin.readline()  # the exporter is killed meanwhile
        started = time.monotonic()
        try:
            (m.mountpoint / "var/log/messages").read_text()
            error = None
        except OSError as exc:
            error = exc.strerror
        return {"error": error, "seconds": time.monotonic() - started}


with open_device(Settings(tls_grpc=address, tls_grpc_insecure=True)) as device:
    client = device.client.children["mount"]
    out = {"mount": lambda: mount(client, *rest), "second": lambda: second(client), "hold": lambda: hold(client)}
    print(json.dumps(out[action]()), flush=True)
