"""The docs agree with the code: options tables as generated, every --help option documented, links that land."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from jumpstarter_driver_ssh_mount import CACHE_MODES, TRANSPORTS
from pytest_jumpstarter_mount.config.options import OPTIONS
from pytest_jumpstarter_mount.config.optionsdoc import DOC_FILES, REGENERATE, regenerate

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
PAGES = sorted((ROOT / "docs").glob("*.md"))
STALE = f"is out of step with the options the plugin registers (options.py); run `{REGENERATE}`"


def documented_options() -> dict[str, tuple[str, str]]:
    """docs/configuration.md's full table: flag -> (metavar or "", ini key)."""
    rows = {}
    for line in (ROOT / "docs/configuration.md").read_text().splitlines():
        m = re.match(r"\| `(--jmp-mount-[a-z-]+)(?: ([^`]+))?` \| `(jmp_mount_\w+)`", line)
        if m:
            rows[m[1]] = ((m[2] or "").replace("\\|", "|"), m[3])
    return rows


def help_options(text: str) -> tuple[dict[str, str], set[str]]:
    """``pytest --help``'s --jmp-mount-* flags (flag -> metavar or "") and its jmp_mount_* ini keys."""
    flags = {m[1]: m[2] or "" for m in re.finditer(r"^  (--jmp-mount-[a-z-]+)(?:=(\S+))?", text, re.M)}
    ini = set(re.findall(r"^  (jmp_mount_\w+) \(", text, re.M))
    return flags, ini


@pytest.mark.parametrize("name", DOC_FILES)
def test_options_tables_are_generated(name: str) -> None:
    """The committed tables are exactly what options.py renders: one source for every option."""
    text = (ROOT / name).read_text()
    assert "<!-- options table: " in text, f"{name} has no options table"
    assert regenerate(text) == text, f"{name}: the options table {STALE}"


def test_help_and_docs_list_the_same_options(pytester: pytest.Pytester) -> None:
    """Every --jmp-mount-* option in `pytest --help` is in the docs' table (flag, metavar, ini key), and back."""
    result = pytester.runpytest_subprocess("--help", "-p", "no:cacheprovider")
    assert result.ret == 0, result.stderr.str()
    flags, ini = help_options(result.stdout.str())
    documented = documented_options()
    assert set(flags) == set(documented), f"docs/configuration.md {STALE}"
    assert flags == {flag: metavar for flag, (metavar, _) in documented.items()}, f"metavars differ; {STALE}"
    assert ini == {key for _, key in documented.values()}, f"ini keys differ; {STALE}"
    assert len(flags) == len(OPTIONS)


def test_help_metavars_read_as_values(pytester: pytest.Pytester) -> None:
    """A metavar shows what to type (`fresh|fast`, `SECONDS`), never argparse's `JMP_MOUNT_CACHE`."""
    result = pytester.runpytest_subprocess("--help", "-p", "no:cacheprovider")
    flags, _ = help_options(result.stdout.str())
    assert flags["--jmp-mount-cache"] == "|".join(CACHE_MODES) == "fresh|fast"
    assert flags["--jmp-mount-transport"] == "|".join(TRANSPORTS)
    assert {"auto", "direct", "forward", "relay"} <= set(TRANSPORTS)
    assert flags["--jmp-mount-timeout"] == flags["--jmp-mount-collect-timeout"] == "SECONDS"
    assert flags["--jmp-mount-remote"] == flags["--jmp-mount-exporter-config"] == "PATH"
    assert not [flag for flag, metavar in flags.items() if metavar.startswith("JMP_MOUNT_")]
    bools = {o.flag for o in OPTIONS if o.kind == "bool"}
    assert {flag for flag, metavar in flags.items() if not metavar} == bools


def test_plugin_does_not_load_the_docs_renderer(pytester: pytest.Pytester) -> None:
    """Rendering tables is for `make docs` and this test: a pytest run does not import it."""
    pytester.makepyfile(
        test_light="""
        import sys

        def test_no_renderer():
            assert "pytest_jumpstarter_mount.config.options" in sys.modules
            assert "pytest_jumpstarter_mount.config.optionsdoc" not in sys.modules
        """
    )
    pytester.runpytest_subprocess("-p", "no:cacheprovider").assert_outcomes(passed=1)


def test_readme_is_a_front_door() -> None:
    """Short enough to read to the end; its two commands come first; it links every docs page."""
    text = README.read_text()
    assert len(text.splitlines()) <= 250
    first_block = text.split("```")[1]
    assert re.search(r"^make demo\b", first_block, re.M) and re.search(r"^make test\b", first_block, re.M)
    linked = set(re.findall(r"\]\((docs/[\w-]+\.md)\)", text))
    assert {f"docs/{page.name}" for page in PAGES} <= linked, "a docs page the README does not link"


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces as dashes."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    found, in_code = set(), False
    for line in path.read_text().splitlines():
        if line.startswith("```"):
            in_code = not in_code
        elif not in_code and (m := re.match(r"#+ (.*)", line)):
            found.add(slug(m[1]))
    return found


@pytest.mark.parametrize("path", [README, *PAGES], ids=lambda p: p.name)
def test_links_land(path: Path) -> None:
    """Every relative link names a file that exists, and a heading in it when it has an anchor."""
    broken = []
    for target in re.findall(r"\]\(([^)\s]+)\)", path.read_text()):
        if re.match(r"[a-z]+:", target):
            continue
        file, _, anchor = target.partition("#")
        linked = (path.parent / file).resolve() if file else path
        if not linked.exists() or (anchor and anchor not in anchors(linked)):
            broken.append(target)
    assert broken == []
