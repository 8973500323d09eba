"""ssh's ``KnownHostsCommand`` for the device: ask the client which host keys the exporter vouches for now.

ssh runs it (through the small script ``keyhook.KeyHook`` writes) as::

    python -I -S hostkeyask.py SOCKET KEYTYPE BASE64

with the key the device offers (``%t %K``). It sends that key to the client's socket (a
0700 folder of the client's user) and prints what the client answers: known-hosts lines of
the keys the exporter vouches for, asked again when the offered one is not among them. ssh
accepts the device only if the offered key is among the lines it reads (this command's, and
the known-hosts file's): nothing is trusted on first use. Any failure prints nothing (ssh
then checks the file alone) and a one-line reason on stderr.

No ``site``, no ``socket`` module: ``_socket`` does all it needs, so it starts in milliseconds.
"""

from __future__ import annotations

import _socket
import sys

#: Seconds to wait for the client's answer (it may ask the exporter to read the device's key again).
ANSWER_TIMEOUT = 20.0
MAX_ANSWER = 64 * 1024


def ask(path: str, keytype: str, blob: str, timeout: float = ANSWER_TIMEOUT) -> bytes:
    """The client's answer to ``KEYTYPE BASE64`` on the Unix socket ``path``."""
    sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    try:
        sock.settimeout(timeout)
        sock.connect(path)
        sock.sendall(f"{keytype} {blob}\n".encode("ascii"))
        chunks: list[bytes] = []
        size = 0
        while size < MAX_ANSWER:
            chunk = sock.recv(MAX_ANSWER - size)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        return b"".join(chunks)
    finally:
        sock.close()


def main(argv: list[str]) -> int:
    """Print the vouched keys' lines; 0 even when the client cannot be asked (ssh then uses its file)."""
    if len(argv) != 3:
        print("usage: hostkeyask.py SOCKET KEYTYPE BASE64", file=sys.stderr)
        return 0
    try:
        answer = ask(argv[0], argv[1], argv[2])
    except (OSError, UnicodeError) as exc:
        print(f"jmp-mount host key check: cannot ask the client: {exc}", file=sys.stderr)
        return 0
    sys.stdout.write(answer.decode("ascii", errors="replace"))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
