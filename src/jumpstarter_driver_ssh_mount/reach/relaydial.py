"""Dialing the exporter's relay for ssh: connect, send the relay's token, hand the socket to ssh.

ssh runs this file as its ``ProxyCommand`` with ``ProxyUseFdpass=yes``::

    python -I -S relaydial.py HOST PORT TOKEN_FILE TIMEOUT

It connects to the relay at HOST:PORT, writes the relay's token (read, as hex, from TOKEN_FILE:
the client's in-memory file ``/proc/<pid>/fd/<n>``, which only its user can open), passes the
connected socket to ssh over its stdout (``SCM_RIGHTS``) and exits. ssh then speaks to the relay
itself and verifies the device's host key as on any other path (``HostKeyAlias``); no process
copies the bytes in between. The token is never in an argv (world-readable in ``/proc``) nor in
the environment ssh could pass on (``SendEnv``).

It starts in milliseconds, once per relay mount: no ``site`` (``-S``), and no ``socket`` module
either, whose imports (``selectors``, ``enum``, ``collections``) would take twice as long as the
rest of the start-up; ``_socket``, the C core ``socket`` itself is built on, does all it needs.
"""

from __future__ import annotations

import _socket
import os
import sys

#: Bytes of a relay's token: the secret a connection sends first, before any SSH byte.
TOKEN_BYTES = 32
#: The ssh options this module adds or needs; a user's own value for any of them would replace it.
PROXY_KEYS = ("proxycommand", "proxyjump", "proxyusefdpass")
#: The environment ssh needs for this dialer. ssh runs a ProxyCommand as ``$SHELL -c "exec ..."``;
#: bash, with its stdin a socket (as ``ProxyUseFdpass`` makes it) and ``SHLVL`` below 2, takes itself
#: for a login over the network and reads ``~/.bashrc`` first: slow (a ``pyenv init`` there cost
#: 0.3 s a mount here), and anything it prints would be read by ssh instead of the connection.
PROXY_ENVIRONMENT = {"SHELL": "/bin/sh"}


def proxy_options(host: str, port: int, token_path: str, timeout: float) -> list[str]:
    """The ssh options that reach ``host:port`` through this dialer, sending the token in ``token_path``.

    The command is quoted for ssh's shell; ``%`` is doubled (ssh expands ``%h``...), and ``,``
    and ``\\`` are escaped for sshfs, which splits ``-o`` values at commas.
    """
    import shlex  # here: the dialer itself does not need it

    argv = [sys.executable, "-I", "-S", os.path.abspath(__file__), host, str(port), token_path, f"{timeout:g}"]
    command = " ".join(shlex.quote(arg) for arg in argv).replace("%", "%%")
    command = command.replace("\\", "\\\\").replace(",", "\\,")
    return [f"ProxyCommand={command}", "ProxyUseFdpass=yes"]


def dial(host: str, port: int, token: bytes, timeout: float) -> _socket.socket:
    """A blocking TCP connection to the relay that has sent ``token``; OSError if it cannot be made."""
    problem: OSError = OSError(f"{host} has no address")
    for family, kind, proto, _, address in _socket.getaddrinfo(host, port, 0, _socket.SOCK_STREAM):
        sock = _socket.socket(family, kind, proto)
        try:
            sock.settimeout(timeout)
            sock.connect(address)
            sock.setsockopt(_socket.IPPROTO_TCP, _socket.TCP_NODELAY, 1)  # as the relay's own sockets
            sock.sendall(token)
            sock.settimeout(None)  # blocking, as ssh expects its connection
            return sock
        except OSError as exc:
            sock.close()
            problem = exc
    raise problem


def pass_to_ssh(sock: _socket.socket) -> None:
    """Hand ``sock`` to ssh over stdout, a Unix socket (``ProxyUseFdpass``): one NUL byte carrying it."""
    to_ssh = _socket.socket(fileno=sys.stdout.fileno())
    try:
        descriptor = sock.fileno().to_bytes(4, sys.byteorder)  # a C int, as SCM_RIGHTS carries it
        to_ssh.sendmsg([b"\0"], [(_socket.SOL_SOCKET, _socket.SCM_RIGHTS, descriptor)])
    finally:
        to_ssh.detach()


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
    try:
        pass_to_ssh(sock)
    except OSError as exc:
        print(f"relay {where}: cannot hand the connection to ssh (ProxyUseFdpass): {exc}", file=sys.stderr)
        return 1
    finally:
        sock.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
