"""The note that ends a failed run's summary under ``jmp shell``, whose exit status can hide the failure.

``jmp shell --exporter-config E -- CMD`` exits 0 whatever CMD returned (Jumpstarter 0.9.0;
its ``--tls-grpc`` and client branches pass the status on), so a CI job running pytest that
way is green with failing tests. Inside ``jmp shell`` (``JUMPSTARTER_HOST`` set) a run that
did not pass says so in its last summary line.
"""

from __future__ import annotations

import os

import pytest

PASSING = (pytest.ExitCode.OK, pytest.ExitCode.NO_TESTS_COLLECTED)


def shell_exit_note(exitstatus: int) -> str | None:
    """The note for a run that did not pass inside ``jmp shell``; None otherwise."""
    if not os.environ.get("JUMPSTARTER_HOST") or exitstatus in PASSING:
        return None
    return (
        f"jumpstarter mount: pytest exits {int(exitstatus)}, but `jmp shell --exporter-config ... -- pytest` "
        "may still exit 0 (Jumpstarter 0.9.0); in CI run `pytest --jmp-mount-exporter-config=...` instead"
    )
