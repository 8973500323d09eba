"""The unused plugin's import cost: ``import pytest_jumpstarter_mount.plugin`` after ``import pytest``.

Each run is a fresh interpreter with bytecode cached (``python -X importtime``; its cumulative figure
for the plugin module, in microseconds); the best of several runs is the cost, the others are noise.
"""

from __future__ import annotations

import os
import subprocess
import sys

MODULE = "pytest_jumpstarter_mount.plugin"
TARGET_MS = 10.0


def import_ms_once() -> float:
    """Milliseconds ``import pytest_jumpstarter_mount.plugin`` took, cumulative, in a fresh interpreter."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}  # as a user runs it
    code = f"import pytest; import {MODULE}"
    stderr = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", code], capture_output=True, text=True, check=True, env=env
    ).stderr
    for line in stderr.splitlines():
        fields = [field.strip() for field in line.removeprefix("import time:").split("|")]
        if len(fields) == 3 and fields[2] == MODULE:
            return int(fields[1]) / 1000
    raise RuntimeError(f"no import time for {MODULE} in: {stderr[-400:]}")


def plugin_import_ms(runs: int) -> float:
    """The best of ``runs`` fresh-interpreter imports (after two that write the bytecode caches)."""
    for _ in range(2):
        import_ms_once()
    return min(import_ms_once() for _ in range(runs))


if __name__ == "__main__":
    print(f"{MODULE}: {plugin_import_ms(10):.1f} ms (target <= {TARGET_MS:.0f} ms)")
