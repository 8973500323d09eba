"""Dialing the exporter's relay for ssh: connect, send the relay's token, hand the socket to ssh.

ssh runs this file as its ``ProxyCommand`` with ``ProxyUseFdpass=yes``::

    python -I -S relaydial.py HOST PORT TOKEN_FILE TIMEOUT

It connects to the relay at HOST:PORT, writes the relay's token (read, as hex, from TOKEN_FILE:
the client's in-memory file ``/proc/<pid>/fd/<n>``, which only its user can open), passes the
connected socket to ssh over its stdout (``SCM_RIGHTS``) and exits. ssh then speaks to the relay
itself and verifies the device's host key as on any other path (``HostKeyAlias``); no process
copies the bytes in between. The token is never in an argv (world-readable in ``/proc``) nor in
the environment ssh could pass on (``SendEnv``).

Only the standard library is imported, so that it starts in milliseconds without ``site``.
"""

from __future__ import annotations

import os
import shlex
import socket
import sys

#: Bytes of a relay's token: the secret a connection sends first, before any SSH byte.
TOKEN_BYTES = 32
#: The ssh options this module adds or needs; a user's own value for any of them would replace it.
PROXY_KEYS = ("proxycommand", "proxyjump", "proxyusefdpass")


def proxy_options(host: str, port: int, token_path: str, timeout: float) -> list[str]:
    """The ssh options that reach ``host:port`` through this dialer, sending the token in ``token_path``.

    The command is quoted for ssh's shell; ``%`` is doubled (ssh expands ``%h``...), and ``,``
    and ``\\`` are escaped for sshfs, which splits ``-o`` values at commas.
    """
    argv = [sys.executable, "-I", "-S", os.path.abspath(__file__), host, str(port), token_path, f"{timeout:g}"]
    command = " ".join(shlex.quote(arg) for arg in argv).replace("%", "%%")
    command = command.replace("\\", "\\\\").replace(",", "\\,")
    return [f"ProxyCommand={command}", "ProxyUseFdpass=yes"]


def dial(host: str, port: int, token: bytes, timeout: float) -> socket.socket:
    """A blocking TCP connection to the relay that has sent ``token``; OSError if it cannot be made."""
    sock = socket.create_connection((host, port), timeout=timeout)
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # as the relay's own sockets
        sock.sendall(token)
        sock.setblocking(True)
    except OSError:
        sock.close()
        raise
    return sock


def read_token(path: str) -> bytes:
    """The token in ``path`` (hex); ValueError if it is not ``TOKEN_BYTES`` long."""
    with open(path, encoding="ascii") as source:
        token = bytes.fromhex(source.read().strip())
    if len(token) != TOKEN_BYTES:
        raise ValueError(f"the token is {len(token)} bytes, not {TOKEN_BYTES}")
    return token


def main(argv: list[str]) -> int:
    """Dial, pass the connection to ssh on stdout; 1 with a one-line reason on stderr if not."""
    host, port, token_path, timeout = argv
    where = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    try:
        token = read_token(token_path)
    except (OSError, ValueError) as exc:
        print(f"relay {where}: cannot read the relay's token: {exc}", file=sys.stderr)
        return 1
    try:
        sock = dial(host, int(port), token, float(timeout))
    except TimeoutError:
        print(f"relay {where}: connection timed out after {timeout} s", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"relay {where}: {exc.strerror or exc}", file=sys.stderr)  # "Connection refused"...
        return 1
    with sock, socket.socket(fileno=sys.stdout.fileno()) as to_ssh:
        socket.send_fds(to_ssh, [b"\0"], [sock.fileno()])  # ssh reads one NUL byte with the descriptor
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
