"""Where ssh (and sshfs over it) connects: ``SshfsTarget``."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SshfsTarget:
    """Where sshfs connects: ``user@host:remote_path`` on ``port``."""

    host: str
    port: int
    user: str = ""
    remote_path: str = "/"

    @property
    def spec(self) -> str:
        """The ``[user@]host:path`` argument, with an IPv6 host in brackets."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        user = f"{self.user}@" if self.user else ""
        return f"{user}{host}:{self.remote_path}"
