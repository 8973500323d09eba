"""What a device command did (``CommandResult``) and how it fails (``DeviceCommandError``).

Apart from ``errors.py`` so that the error family imports nothing that runs commands.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from jumpstarter_driver_ssh_mount.common.errors import MountError


@dataclass(frozen=True)
class CommandResult:
    """What a device command did: ``returncode``, ``stdout``, ``stderr`` (text), and how it was reached."""

    command: str
    returncode: int
    stdout: str
    stderr: str
    transport: str = ""  # "direct", "relay" or "forward"
    #: What went otherwise than asked on the way there (a fallback to the port forward)
    warnings: list[str] = field(default_factory=list, compare=False)

    @property
    def ok(self) -> bool:
        """True when the command exited 0."""
        return self.returncode == 0

    def check(self) -> CommandResult:
        """This result, or ``DeviceCommandError`` if the command exited non-zero."""
        if self.returncode != 0:
            raise DeviceCommandError(self)
        return self


class DeviceCommandError(MountError):
    """A device command exited non-zero (with ``check=True``); the message shows it, its code and stderr's tail."""

    def __init__(self, result: CommandResult, why: str | None = None) -> None:
        self.result = result
        if why is None:
            who = "ssh could not run it" if result.returncode == SSH_FAILED else "it"
            why = f"{who} exited with code {result.returncode}"
        super().__init__(f"device command {result.command!r}: {why}; stderr: {stderr_tail(result.stderr)}")


class DeviceCommandTimeout(DeviceCommandError):
    """A device command did not finish within its timeout (ssh was killed)."""


#: ssh's own failures (cannot connect, host key refused, login refused) exit with this code.
SSH_FAILED = 255
#: How much of a command's stderr an error shows.
STDERR_TAIL_CHARS = 400


def stderr_tail(stderr: str) -> str:
    """The end of ``stderr`` for a message, or ``(empty)``."""
    text = stderr.strip()
    if not text:
        return "(empty)"
    return repr(text if len(text) <= STDERR_TAIL_CHARS else "..." + text[-STDERR_TAIL_CHARS:])
