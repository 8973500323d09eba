"""The options tables in the docs, rendered from ``options.OPTIONS``: ``make docs`` rewrites them.

A table lives between two marker comments; the first names the options it shows, or ``all``
for the full reference (CLI, ini, environment, default, meaning)::

    <!-- options table: remote cache; generated from options.py by `make docs` -->
    ...
    <!-- end of options table -->

The plugin never imports this module; ``make docs`` and the docs test do.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Sequence
from pathlib import Path

from pytest_jumpstarter_mount.config.options import OPTIONS, Option

REGENERATE = "make docs"
DOC_FILES = ("README.md", "docs/configuration.md")
BLOCK = re.compile(
    r"(?P<start><!-- options table: (?P<names>[^;>]*)(?:;[^>]*)? -->\n)"
    r"(?P<table>.*?)"
    r"(?P<end><!-- end of options table -->)",
    re.S,
)


def _code(text: str) -> str:
    return f"`{text}`"


def _cell(text: str) -> str:
    """Text for a Markdown table cell: a ``|`` would end the cell."""
    return text.replace("|", "\\|")


def cli_cell(o: Option) -> str:
    """``--jmp-mount-x METAVAR`` in code (a list option's help says it is repeatable)."""
    return _code(f"{o.flag} {o.metavar}" if o.metavar else o.flag)


def default_cell(o: Option) -> str:
    """The default: a value in code, words (``20 MiB``, ``off``, "the client config's ...") as they are."""
    text = o.default_text
    if text is None:
        return "—"
    return text if " " in text or o.kind == "bool" else _code(text)


def full_row(o: Option) -> list[str]:
    ini = _code(o.dest) + (" (lines)" if o.kind == "list" else "")
    env = _code(o.env) + (" (shell words)" if o.kind == "list" else "")
    return [cli_cell(o), ini, env, default_cell(o), o.help]


def short_row(o: Option) -> list[str]:
    return [cli_cell(o), default_cell(o), o.help]


def render(names: Sequence[str]) -> str:
    """The table of ``names`` (option names, e.g. ``remote``), or of every option for ``["all"]``."""
    by_name = {o.name: o for o in OPTIONS}
    unknown = [name for name in names if name not in by_name and name != "all"]
    if unknown:
        raise ValueError(f"options table names unknown options: {', '.join(unknown)}")
    if list(names) == ["all"]:
        header, rows = ["CLI", "ini", "environment", "default", "meaning"], [full_row(o) for o in OPTIONS]
    else:
        header, rows = ["CLI", "default", "meaning"], [short_row(by_name[name]) for name in names]
    lines = [header, ["---"] * len(header), *rows]
    return "".join("| " + " | ".join(_cell(c) for c in line) + " |\n" for line in lines)


def regenerate(text: str) -> str:
    """``text`` with every marked options table rendered afresh."""
    return BLOCK.sub(
        lambda m: m["start"] + render(m["names"].split()) + m["end"],
        text,
    )


def main(argv: Sequence[str]) -> int:
    """Rewrite the options tables in each file of ``argv`` (default: README.md and docs/configuration.md)."""
    for name in argv or DOC_FILES:
        path = Path(name)
        old = path.read_text()
        if not BLOCK.search(old):
            print(f"{path}: no <!-- options table: ... --> ... <!-- end of options table --> block", file=sys.stderr)
            return 1
        new = regenerate(old)
        if new != old:
            path.write_text(new)
            print(f"{path}: options table regenerated")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
