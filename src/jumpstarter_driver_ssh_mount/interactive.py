"""Holding a mount open interactively: until Ctrl+C, or for the life of a subshell.

Used by ``SSHMountClient.mount`` (the upstream-compatible blocking call) and ``j mount``.
Knows nothing of Jumpstarter: it works on any ``Mount``.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import threading
from collections.abc import Callable
from concurrent.futures import CancelledError
from typing import Any

import click

from jumpstarter_driver_ssh_mount.common.choices import transport_label
from jumpstarter_driver_ssh_mount.common.errors import MountLostError
from jumpstarter_driver_ssh_mount.common.ownedfolders import KNOWN_HOSTS_FOLDERS
from jumpstarter_driver_ssh_mount.mount import Mount
from jumpstarter_driver_ssh_mount.signals import signals_interrupt
from jumpstarter_driver_ssh_mount.sshfs.mountinfo import is_mountpoint

PROMPT_TAG = "(mount)"
JUMPSTARTER_PROMPT_MARK = "➤"


def hold_foreground(mount: Mount, wait: Callable[[], int] | None = None) -> None:
    """Block until Ctrl+C (or SIGTERM/SIGHUP), or until the mount is unmounted from outside (said so).

    Raises MountLostError if sshfs dies first with the filesystem still mounted, or with an error.

    ``wait`` blocks until sshfs exits and returns its code (default ``mount.wait``); it
    may end early by raising KeyboardInterrupt or ``concurrent.futures.CancelledError``,
    which is how a caller running in a worker thread passes on its event loop's signals.
    """
    click.echo("Press Ctrl+C to unmount and exit.")
    try:
        with signals_interrupt():
            returncode = (wait or mount.wait)()
    except (KeyboardInterrupt, CancelledError):
        click.echo("\nUnmounting...")
        return
    if returncode == 0 and not is_mountpoint(mount.mountpoint):
        click.echo(f"{mount.mountpoint} was unmounted from outside (fusermount -u, umount); sshfs exited")
        return
    tail = "; ".join(mount.stderr_tail(3)) or "no message"
    raise MountLostError(f"sshfs exited unexpectedly (code {returncode}): {tail}; the mount is gone")


def run_subshell(mount: Mount) -> int:
    """Run the user's shell, with a prompt that shows the mount, until it exits."""
    click.echo("Type 'exit' to unmount and return.")
    argv, env = subshell_command(os.environ.get("SHELL", "/bin/sh"), mount.remote_path, dict(os.environ))
    try:
        shell = subprocess.Popen(argv, env=env)
    except FileNotFoundError as exc:
        raise click.ClickException(f"shell {argv[0]!r} not found; set SHELL to a valid shell") from exc
    previous_sigint = signal.getsignal(signal.SIGINT)
    in_main = threading.current_thread() is threading.main_thread()
    try:
        with signals_interrupt():
            if in_main:  # Ctrl+C belongs to the shell and its jobs, not to us
                signal.signal(signal.SIGINT, signal.SIG_IGN)
            return shell.wait()
    except KeyboardInterrupt:
        shell.send_signal(signal.SIGHUP)
        try:
            return shell.wait(5)
        except subprocess.TimeoutExpired:
            shell.kill()
            return shell.wait()
    finally:
        if in_main:
            signal.signal(signal.SIGINT, previous_sigint)


def subshell_command(shell: str, remote_path: str, env: dict[str, str]) -> tuple[list[str], dict[str, str]]:
    """The argv and environment for a subshell whose prompt says a mount is active."""
    name = os.path.basename(shell)
    if name == "fish":
        wrap = (
            "functions -c fish_prompt __jmp_mount_prompt; "
            f"function fish_prompt; set_color yellow; printf '%s' '{PROMPT_TAG} '; set_color normal; "
            "__jmp_mount_prompt; end"
        )
        return [shell, "--init-command", wrap], env
    default_prompt = "%# " if name == "zsh" else "\\$ "
    env["PS1"] = tagged_prompt(env.get("PS1", default_prompt), remote_path)
    if name.endswith("bash"):
        return [shell, "--norc", "--noprofile", "-i"], env
    if name == "zsh":
        return [shell, "--no-rcs", "-i"], env
    return [shell, "-i"], env


def tagged_prompt(prompt: str, remote_path: str) -> str:
    """``prompt`` marked as inside a mount (Jumpstarter's own prompt gets the tag before its arrow)."""
    if JUMPSTARTER_PROMPT_MARK in prompt:
        return prompt.replace(JUMPSTARTER_PROMPT_MARK, f"{PROMPT_TAG}{JUMPSTARTER_PROMPT_MARK}", 1)
    return f"[sshfs:{remote_path}] {prompt}"


def interruptible_wait(mount: Mount, portal: Any) -> Callable[[], int]:
    """``mount.wait``, made to end when the event loop driving the client (``portal``'s) is cancelled.

    ``j`` runs commands in a worker thread and turns SIGINT/SIGTERM into a cancellation
    of its event loop; waiting *in* that loop lets the cancellation reach us, so the
    mount is torn down in order instead of being abandoned at exit.
    """
    fd = mount.exit_fileno()
    if threading.current_thread() is threading.main_thread() or fd is None:
        return mount.wait

    def wait() -> int:
        from jumpstarter_driver_ssh_mount.eventloop import wait_readable_unless_cancelled

        if not portal.call(wait_readable_unless_cancelled, fd):
            raise CancelledError("the event loop was cancelled")
        return mount.wait()

    return wait


def hold_mount(opened: Callable[[], Mount], logger: logging.Logger, portal: Any, *, foreground: bool) -> None:
    """``j mount``: sweep what killed processes left, mount (``opened``), say so, hold it (a subshell, or until
    Ctrl+C with ``foreground``), unmount and say so. SIGTERM and SIGHUP end it like Ctrl+C."""
    swept = KNOWN_HOSTS_FOLDERS.sweep()
    if swept.unseen:
        logger.info("left alone in %s: %s", swept.parent, ", ".join(v.why for v in swept.unseen))
    with signals_interrupt():
        with opened() as m:
            click.echo(
                f"Mounted {m.target.spec} on {m.mountpoint} via {transport_label(m.transport)} ({m.transport_note})"
            )
            if foreground:
                hold_foreground(m, interruptible_wait(m, portal))
            else:
                run_subshell(m)
        click.echo(f"Unmounted {m.mountpoint}")
