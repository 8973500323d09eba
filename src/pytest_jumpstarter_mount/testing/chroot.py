"""The chrooted loopback device's filesystem, built inside sshd's own mount namespace.

sshd runs under ``unshare --mount --propagation private``: every mount below is made in
that namespace only, so none of them is visible from the host, and all of them vanish
with sshd. The device tree on the host (``DIR/fs``) has nothing mounted on it or under
it; pytest's basetemp cleanup (an ``rm -rf``) can walk it safely. The chroot is a tmpfs
at ``CHROOT_AT`` (inside the namespace) holding:

- ``/etc``, ``/var/log``, ``/data``: bind mounts of the host's ``DIR/fs/...`` (what a test
  writes there is visible on the host at once);
- ``/usr`` (read-only) and ``/bin``, ``/lib``... links into it, so a shell and
  ``device_run`` commands work;
- ``/proc`` and ``/sys``: a fresh procfs and a read-only sysfs, as every device has them.
  ``/proc/sys`` is made read-only, as container runtimes do: the kernel is the host's;
- ``/dev/null`` and a world-writable ``/tmp``.
"""

from __future__ import annotations

from pathlib import Path

CHROOT_AT = "/mnt/jmp-loopback-device"  # inside sshd's private mount namespace only
BOUND_FROM_HOST = ("etc", "var/log", "data")  # device directories that are the host's DIR/fs/...
DEVICE_DIRS = ("/etc", "/var/log", "/data", "/tmp", "/proc", "/sys")  # what a test can use, for the printout


def namespace_command(root: Path, command: list[str]) -> list[str]:
    """``command`` (sshd) in a private mount namespace, chrooted sessions seeing ``root`` as ``/``."""
    r = CHROOT_AT
    setup = [
        f"mount -t tmpfs -o mode=755 jmp-loopback {Path(r).parent}",
        f"mkdir -p {r}/usr {r}/etc {r}/var/log {r}/data {r}/dev {r}/tmp {r}/proc {r}/sys",
        *(f"ln -s usr/{d} {r}/{d}" for d in ("bin", "sbin", "lib", "lib64") if Path(f"/usr/{d}").is_dir()),
        f"mount --bind /usr {r}/usr",
        f"mount -o remount,bind,ro {r}/usr",
        f"touch {r}/dev/null && mount --bind /dev/null {r}/dev/null",
        *(f"mount --bind {root}/{d} {r}/{d}" for d in BOUND_FROM_HOST),
        # a fresh procfs; where a container forbids one (masked /proc), the host's, read-only
        f"mount -t proc -o nosuid,nodev,noexec proc {r}/proc 2>/dev/null"
        f" || {{ mount --rbind /proc {r}/proc && mount -o remount,bind,ro {r}/proc; }}",
        f"mount --bind {r}/proc/sys {r}/proc/sys && mount -o remount,bind,ro {r}/proc/sys",
        f"mount -t sysfs -o ro,nosuid,nodev,noexec sysfs {r}/sys 2>/dev/null"
        f" || {{ mount --rbind /sys {r}/sys && mount -o remount,bind,ro {r}/sys; }}",
        f"chmod 1777 {r}/tmp",
        'exec "$@"',
    ]
    return ["unshare", "--mount", "--propagation", "private", "sh", "-ec", "\n".join(setup), "sh", *command]
