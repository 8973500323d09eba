"""Host keys that change under a running mount: ssh asks the client, the client asks the exporter.

sshfs runs ssh again each time it reconnects (a device reboot), with the options it was
started with. A reflashed device comes back with a new host key; the known-hosts file holds
the old one, so ssh would refuse it for good. ``KeyHook`` makes every such ssh ask first:
its ``KnownHostsCommand`` (``hostkeyask``) sends the key the device offers to a Unix socket
in the known-hosts file's private folder, and the hook answers with the keys the exporter
vouches for, asking the exporter again (``refresh``) when the offered key is not among them.
ssh accepts the device only if the offered key is in the answer or the file: a key nobody
vouches for is still refused, and the hook says so with both fingerprints. Nothing is trusted
on first use, and nothing is written to a file ssh reads. What happened is in ``notes``
(each once), and goes to ``report`` (``Mount.warnings``) once set.
"""

from __future__ import annotations

import contextlib
import logging
import os
import selectors
import shlex
import socket
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import jumpstarter_driver_ssh_mount.ssh.hostkeyask as hostkeyask
from jumpstarter_driver_ssh_mount.ssh.hostkeys import HostKey, KnownHosts, VouchedKeys, describe

logger = logging.getLogger("jumpstarter_driver_ssh_mount")

#: Seconds before the exporter is asked again about the same offered key (sshfs retries on every request).
ASK_AGAIN_AFTER = 5.0
MAX_REQUEST = 16 * 1024
SOCKET_PATH_MAX = 100  # AF_UNIX paths are limited to 108 bytes on Linux


class KeyHook:
    """Answers ssh's ``KnownHostsCommand`` for the connections that use ``known``; close it before ``known``."""

    def __init__(
        self,
        known: KnownHosts,
        vouched: VouchedKeys,
        refresh: Callable[[], VouchedKeys | None],
        where: str,
    ) -> None:
        folder = os.path.dirname(known.path)
        self.socket_path = os.path.join(folder, "ask.sock")
        if len(os.fsencode(self.socket_path)) > SOCKET_PATH_MAX:
            raise OSError(f"the known-hosts folder's path is too long for a Unix socket: {folder}")
        self.alias, self.where = known.alias, where
        self.keys: tuple[HostKey, ...] = vouched.keys
        self.configured = vouched.configured
        self.notes: list[str] = []
        self.refused: str | None = None  # why the latest key offered was refused (both fingerprints), if it was
        self._report: Callable[[str], None] | None = None
        self._refresh = refresh
        self._asked: dict[str, float] = {}
        self._lock = threading.Lock()
        self.script = os.path.join(folder, "ask")
        Path(self.script).write_text(
            "#!/bin/sh\n"
            # the common case, the key the file already holds: print nothing (ssh checks the file) and save the
            # interpreter's start; this line never accepts a key, the file decides
            + f'grep -qsF -- " $1 $2" {shlex.quote(known.path)} && exit 0\n'
            + "exec "
            + shlex.join([sys.executable, "-I", "-S", os.path.abspath(hostkeyask.__file__), self.socket_path])
            + ' "$@"\n'
        )
        os.chmod(self.script, 0o700)
        self._listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            self._listener.bind(self.socket_path)  # in a 0700 folder of this user
            self._listener.listen(8)
        except OSError:
            self._listener.close()
            os.unlink(self.script)
            raise
        self._wake_r, self._wake_w = os.pipe()
        self._thread = threading.Thread(target=self._serve, name="jmp-mount-key-hook", daemon=True)
        self._thread.start()

    @property
    def option(self) -> str:
        """The ssh option: ``KnownHostsCommand`` with the offered key's type and blob (words split at tabs,
        which sshfs leaves alone in ``ssh_command`` and ssh splits at)."""
        return "KnownHostsCommand=" + "\t".join([self.script.replace("%", "%%"), "%t", "%K"])

    def report_to(self, report: Callable[[str], None]) -> None:
        """Send every note, those so far and those to come, to ``report`` (each once)."""
        with self._lock:
            self._report = report
            for note in self.notes:
                report(note)

    def answer(self, offered: HostKey) -> str:
        """The known-hosts lines ssh should read for a device offering ``offered``."""
        with self._lock:
            lines = {key.line for key in self.keys}
            now = time.monotonic()
            if offered.line in lines:
                self.refused = None  # the latest key offered is vouched for
            elif now - self._asked.get(offered.line, -ASK_AGAIN_AFTER) >= ASK_AGAIN_AFTER:
                self._asked[offered.line] = now
                self._ask_exporter(offered)
            return "".join(f"{self.alias} {key.line}\n" for key in self.keys)

    def vouches_for(self, offered: HostKey) -> bool:
        """True when ``offered`` is among the keys ``answer`` gives (the exporter asked again, at most every
        ``ASK_AGAIN_AFTER`` s, when it is not): an in-process SSH client's check of a key that is not in the
        known-hosts file, by ssh's rule for ``KnownHostsCommand``."""
        return any(line.split(" ", 1)[-1] == offered.line for line in self.answer(offered).splitlines())

    def _ask_exporter(self, offered: HostKey) -> None:
        try:
            renewed = self._refresh()
        except Exception as exc:  # the exporter cannot read the key now: ssh refuses, sshfs retries later
            logger.info("asking the exporter for %s's host key again failed: %s", self.where, exc)
            return
        if renewed is not None and offered.line in renewed.lines:
            self.keys, self.configured = renewed.keys, renewed.configured
            self._note(f"host key changed on {self.where}: now {offered.fingerprint}, vouched by the exporter")
            self.refused = None
            return
        vouched = renewed.keys if renewed is not None else self.keys
        source = "the configured host_key" if (renewed or self).configured else "read from the device by the exporter"
        self.refused = (
            f"host key mismatch at {self.where}: it offered {offered}, the exporter vouches for "
            f"{describe(vouched)} ({source}); no login was attempted"
        )
        self._note(self.refused)

    def _note(self, note: str) -> None:
        if note in self.notes:
            return
        logger.log(logging.INFO if self.refused == note else logging.WARNING, "%s", note)
        self.notes.append(note)
        if self._report is not None:
            self._report(note)

    def _serve(self) -> None:
        with selectors.DefaultSelector() as selector:
            selector.register(self._listener, selectors.EVENT_READ)
            selector.register(self._wake_r, selectors.EVENT_READ)
            while True:
                for key, _ in selector.select():
                    if key.fd == self._wake_r:
                        return
                    with contextlib.suppress(OSError):
                        conn, _ = self._listener.accept()
                        with conn:
                            self._handle(conn)

    def _handle(self, conn: socket.socket) -> None:
        conn.settimeout(hostkeyask.ANSWER_TIMEOUT)
        request = b""
        while b"\n" not in request and len(request) < MAX_REQUEST:
            chunk = conn.recv(MAX_REQUEST)
            if not chunk:
                break
            request += chunk
        try:
            offered = HostKey.parse(request.decode("ascii").strip())
        except (UnicodeError, ValueError):
            conn.sendall(self.answer_current().encode())
            return
        conn.sendall(self.answer(offered).encode())

    def answer_current(self) -> str:
        """The lines of the keys vouched for so far."""
        with self._lock:
            return "".join(f"{self.alias} {key.line}\n" for key in self.keys)

    def close(self) -> None:
        """Stop answering and remove the socket and script (before the known-hosts folder goes)."""
        if self._wake_w < 0:
            return
        os.write(self._wake_w, b"x")
        self._thread.join(hostkeyask.ANSWER_TIMEOUT)
        self._listener.close()
        for fd in (self._wake_r, self._wake_w):
            os.close(fd)
        self._wake_w = -1
        for path in (self.socket_path, self.script):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)

    def __enter__(self) -> KeyHook:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
