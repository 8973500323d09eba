"""What a mount may leave behind, read from /proc: mounts, processes, key material, directories."""

from __future__ import annotations

import os

from jumpstarter_driver_ssh_mount.sshfs.mountinfo import sshfs_mounts_under
from jumpstarter_driver_ssh_mount.sshfs.procfs import processes

IDENTITY_MEMFD = "memfd:jmp-mount-identity"


def live_processes_mentioning(text: str, names: tuple[str, ...] = ("sshfs", "ssh", "fusermount3", "sh")) -> list[str]:
    """Live (non-zombie) processes named in ``names`` whose command line contains ``text``.

    ``sh`` is the unmount watchdog, which names the mountpoint in its arguments.
    """
    found = []
    for process in processes():
        argv = process.argv()
        if argv and os.path.basename(argv[0]) in names and text in " ".join(argv):
            found.append(f"{process.pid}: {' '.join(argv)}")
    return found


def sshfs_mounts(under: str | os.PathLike[str] = "/") -> list[str]:
    """Mountpoints of sshfs mounts at ``under`` or below it (default: all)."""
    return [e.mountpoint for e in sshfs_mounts_under(under)]


def identity_fds() -> list[str]:
    """Our open in-memory identity files."""
    found = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            if os.readlink(f"/proc/self/fd/{fd}").startswith(IDENTITY_MEMFD):
                found.append(fd)
        except OSError:
            continue
    return found


def leftovers(mountpoint: str | os.PathLike[str], *, dir_should_exist: bool) -> list[str]:
    """Everything a finished mount at ``mountpoint`` left behind; empty when clean."""
    path = os.fspath(mountpoint)
    problems = [f"still mounted: {m}" for m in sshfs_mounts() if m == path]
    problems += [f"process left: {p}" for p in live_processes_mentioning(path)]
    problems += [f"identity fd left open: {fd}" for fd in identity_fds()]
    if os.path.exists(path) != dir_should_exist:
        problems.append(f"mountpoint directory {'missing' if dir_should_exist else 'left behind'}: {path}")
    return problems
