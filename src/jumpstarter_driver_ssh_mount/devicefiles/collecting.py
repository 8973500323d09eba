"""Collecting device globs in a bounded time: ``collect_globs``, what ``DeviceFiles.collect`` runs."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

from jumpstarter_driver_ssh_mount.devicefiles.collection import Collection, collect, run_bounded
from jumpstarter_driver_ssh_mount.devicefiles.fs import DeviceFS


class Collectable(Protocol):
    """What ``collect_globs`` reads through: a ``DeviceFiles``."""

    @property
    def remote_path(self) -> str: ...

    @property
    def chore_fs(self) -> DeviceFS: ...

    @property
    def where(self) -> str: ...

    def is_mounted(self) -> bool: ...

    def device_path(self, path: str, usage: str = "") -> str: ...


def collect_globs(
    files: Collectable, device_globs: Sequence[str], dest: Path, *, max_bytes: int, timeout: float
) -> Collection:
    """``collect`` each of ``device_globs`` (device paths) into ``dest``, all within ``max_bytes`` and ``timeout``."""
    work_result = Collection()
    deadline = time.monotonic() + timeout

    def work(stop: threading.Event) -> None:
        for device_glob in device_globs:
            if stop.is_set():
                return
            if not files.is_mounted():
                work_result.notes.append(f"{device_glob}: not collected, {files.where} is no longer mounted")
                continue
            collect(
                files.chore_fs,
                files.remote_path,
                files.device_path,
                device_glob,
                dest,
                work_result,
                max_bytes=max_bytes,
                deadline=deadline,
                stop=stop,
            )

    problem = run_bounded(work, timeout + 1.0)
    # a copy: an abandoned thread may still add to its own
    result = Collection(
        list(work_result.files), list(work_result.notes), work_result.bytes, list(work_result.cut_short)
    )
    if problem is not None:
        result.notes.append(f"collection {problem}")
        result.cut(f"it {problem}")
    return result
