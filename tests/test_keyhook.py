"""The key hook alone: ssh's ``KnownHostsCommand`` script, the client's answer, and what it refuses."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from jumpstarter_driver_ssh_mount.ssh import hostkeyask
from jumpstarter_driver_ssh_mount.ssh.hostkeys import SCANNED, HostKey, KnownHosts, VouchedKeys
from jumpstarter_driver_ssh_mount.ssh.keyhook import KeyHook
from pytest_jumpstarter_mount.testing import keygen


def new_key(tmp_path: Path, name: str) -> HostKey:
    keygen(tmp_path / name)
    return HostKey.parse((tmp_path / f"{name}.pub").read_text())


def ask(hook: KeyHook, key: HostKey) -> str:
    """What ssh reads when the device offers ``key``: the hook's script, run as ssh runs it."""
    command = hook.option.split("=", 1)[1].split("\t")
    argv = [command[0], key.keytype, key.blob]
    return subprocess.run(argv, capture_output=True, text=True, timeout=30, check=True).stdout


def test_a_key_the_exporter_now_vouches_for_is_answered_once_asked(tmp_path: Path) -> None:
    old, new = new_key(tmp_path, "old"), new_key(tmp_path, "new")
    asked: list[int] = []

    def refresh() -> VouchedKeys:
        asked.append(1)
        return VouchedKeys((new,), SCANNED)

    with KnownHosts((old,)) as known, KeyHook(known, VouchedKeys((old,), SCANNED), refresh, "10.0.0.7:22") as hook:
        assert hook.option.startswith("KnownHostsCommand=") and hook.option.endswith("\t%t\t%K")
        assert ask(hook, old) == "" and asked == []  # in the file already: the script leaves it to the file
        assert ask(hook, new) == f"{known.alias} {new.line}\n" and asked == [1]
        assert hook.notes == [f"host key changed on 10.0.0.7:22: now {new.fingerprint}, vouched by the exporter"]
        reported: list[str] = []
        hook.report_to(reported.append)
        assert reported == hook.notes  # those so far, once
        folder = Path(known.path).parent
        assert sorted(os.listdir(folder)) == ["ask", "ask.sock", "known_hosts", "owner"]
    assert not folder.exists()


def test_a_key_nobody_vouches_for_gets_no_line_and_both_fingerprints(tmp_path: Path) -> None:
    old, other = new_key(tmp_path, "old"), new_key(tmp_path, "other")
    asked: list[int] = []

    def refresh() -> VouchedKeys:
        asked.append(1)
        return VouchedKeys((old,), SCANNED)

    with KnownHosts((old,)) as known, KeyHook(known, VouchedKeys((old,), SCANNED), refresh, "10.0.0.7:22") as hook:
        assert other.line not in ask(hook, other)
        assert other.line not in ask(hook, other)  # sshfs retries at every request ...
        assert asked == [1]  # ... the exporter is asked again at most every ASK_AGAIN_AFTER seconds
        assert hook.refused == (
            f"host key mismatch at 10.0.0.7:22: it offered {other}, the exporter vouches for {old} "
            "(read from the device by the exporter); no login was attempted"
        )
        assert hook.notes == [hook.refused]


def test_when_the_client_cannot_be_asked_ssh_reads_nothing_more(tmp_path: Path) -> None:
    key = new_key(tmp_path, "key")
    script = hostkeyask.__file__
    gone = str(tmp_path / "no.sock")
    argv = [sys.executable, "-I", "-S", script, gone, key.keytype, key.blob]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    assert (result.returncode, result.stdout) == (0, "")  # ssh then checks its known-hosts file alone
    assert result.stderr.startswith("jmp-mount host key check: cannot ask the client: ")
