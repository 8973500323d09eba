"""The shape of the source tree: imports flow one way (no cycles, type-only and function-level imports included)."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parent.parent / "src"
PACKAGES = ("jumpstarter_driver_ssh_mount", "pytest_jumpstarter_mount")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module_name(path): path for package in PACKAGES for path in sorted((SRC / package).rglob("*.py"))}


def _resolve(module: str, path: Path, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    base = package[: len(package) - (node.level - 1)]
    return ".".join([*base, node.module] if node.module else base)


def _imports(module: str, path: Path, known: dict[str, Path]) -> set[str]:
    """Every project module `module` imports anywhere: top level, under TYPE_CHECKING, inside functions."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = _resolve(module, path, node)
            names = [f"{base}.{alias.name}" for alias in node.names] + [base]
        for name in names:
            while name and name not in known:  # `from pkg import mod` names a module; `from mod import f` does not
                name = name.rpartition(".")[0]
            if name and name != module:
                found.add(name)
    return found


def import_graph() -> dict[str, set[str]]:
    """Module -> the project modules it imports (a package's __init__ counts as the package)."""
    known = _modules()
    return {module: _imports(module, path, known) for module, path in known.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as [a, b, ..., a], or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(module: str) -> list[str] | None:
        state[module] = 1
        path.append(module)
        for target in sorted(graph.get(module, ())):
            if state.get(target) == 1:
                return [*path[path.index(target) :], target]
            if target not in state and (cycle := visit(target)):
                return cycle
        path.pop()
        state[module] = 2
        return None

    for module in sorted(graph):
        if module not in state and (cycle := visit(module)):
            return cycle
    return None


def test_find_cycle_reports_one() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_import_cycles_in_src() -> None:
    """No module imports (even type-only or inside a function) a module that imports it back, at any distance."""
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


#: What ``import pytest_jumpstarter_mount.plugin`` may load of ours: the options and the hook specifications.
#: Everything else (the manager, restore, artifacts, device logs, Jumpstarter) loads at configure or first use.
PLUGIN_START = {
    "pytest_jumpstarter_mount",
    "pytest_jumpstarter_mount.config",
    "pytest_jumpstarter_mount.config.options",
    "pytest_jumpstarter_mount.hooks",
    "pytest_jumpstarter_mount.plugin",
    "pytest_jumpstarter_mount.reporting",
    "pytest_jumpstarter_mount.reporting.notices",
    "jumpstarter_driver_ssh_mount",
    "jumpstarter_driver_ssh_mount.common",
    "jumpstarter_driver_ssh_mount.common.choices",
    "jumpstarter_driver_ssh_mount.common.defaults",
}

SHOW_IMPORTS = """
import json, sys
import pytest
before = set(sys.modules)
import pytest_jumpstarter_mount.plugin
print(json.dumps(sorted(set(sys.modules) - before)))
"""


def test_the_plugin_entry_point_imports_only_what_every_run_needs() -> None:
    """Every pytest run imports the entry point: it loads the options and hook specs, nothing heavier."""
    out = subprocess.run([sys.executable, "-c", SHOW_IMPORTS], capture_output=True, text=True, check=True).stdout
    loaded = set(json.loads(out))
    ours = {name for name in loaded if name.split(".")[0] in PACKAGES}
    assert ours == PLUGIN_START
    assert not {name for name in loaded if name.split(".")[0] in ("jumpstarter", "grpc", "yaml", "anyio")}


def test_mounts_and_device_commands_share_the_route_layer() -> None:
    """Mounts and device commands open their way to the device with ``reach.open_route``; neither builds a
    port forward itself, nor reaches into the client's private methods."""
    graph = import_graph()
    route_layer = "jumpstarter_driver_ssh_mount.reach.route"
    for consumer in ("jumpstarter_driver_ssh_mount.client", "jumpstarter_driver_ssh_mount.reach.device_command"):
        assert route_layer in graph[consumer], consumer
        text = _modules()[consumer].read_text()
        assert "open_route(" in text and "TcpPortforwardAdapter" not in text, consumer
    device_command = _modules()["jumpstarter_driver_ssh_mount.reach.device_command"].read_text()
    assert "client._" not in device_command
    plan = "jumpstarter_driver_ssh_mount.reach.routes"  # auto's order of ways: one plan for every consumer
    for consumer in ("jumpstarter_driver_ssh_mount.client", "jumpstarter_driver_ssh_mount.reach.device_command"):
        assert plan in graph[consumer] and "RoutePlan(" in _modules()[consumer].read_text(), consumer


def test_the_route_layer_knows_no_consumer() -> None:
    """``reach/`` hands ways to attempts; it imports neither the mount, the sshfs process nor device files."""
    graph = import_graph()
    for module, imports in graph.items():
        if module.startswith("jumpstarter_driver_ssh_mount.reach."):
            bad = [i for i in imports if i == "jumpstarter_driver_ssh_mount.mount" or ".devicefiles" in i]
            assert not bad, (module, bad)


def test_a_run_without_a_device_source_builds_no_device_parts(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The unused plugin (no device source: most pytest runs in an environment) builds only the manager,
    the marker check and the availability gate; reports, lease, journal and device logs are never imported."""
    pytester.makeconftest(
        """
        import json, sys
        def pytest_unconfigure(config):
            names = [m for m in sys.modules if m.startswith("pytest_jumpstarter_mount.")]
            print("LOADED " + json.dumps(names))
        """
    )
    pytester.makepyfile("def test_nothing_of_the_device():\n    pass\n")
    for variable in ("JUMPSTARTER_HOST", "JMP_MOUNT_EXPORTER_CONFIG", "JMP_MOUNT_TLS_GRPC", "JMP_MOUNT_CLIENT"):
        monkeypatch.delenv(variable, raising=False)
    result = pytester.runpytest_subprocess("-s", "-p", "no:randomly")
    result.assert_outcomes(passed=1)
    line = next(line for line in result.outlines if line.startswith("LOADED "))
    loaded = set(json.loads(line.removeprefix("LOADED ")))
    device_parts = {
        "pytest_jumpstarter_mount.pertest.artifacts",
        "pytest_jumpstarter_mount.pertest.devicelog",
        "pytest_jumpstarter_mount.pertest.restoreguard",
        "pytest_jumpstarter_mount.sources.farm",
        "pytest_jumpstarter_mount.sources.rootclient",
    }
    assert "pytest_jumpstarter_mount.manager" in loaded and not loaded & device_parts


#: The folders, lowest first: a module imports only from its own folder and the folders before it.
DRIVER_LAYERS = ("common", "ssh", "sshfs", "devicefiles", "reach", "")  # "": the face (driver, client, cli, mount)
PLUGIN_LAYERS = ("config", "reporting", "runstate", "sources", "pertest", "")  # "": manager, composition, plugin


def _layer(module: str) -> tuple[str, int] | None:
    package, _, rest = module.partition(".")
    layers = {"jumpstarter_driver_ssh_mount": DRIVER_LAYERS, "pytest_jumpstarter_mount": PLUGIN_LAYERS}.get(package)
    if layers is None or rest.startswith("testing"):
        return None
    folder = rest.split(".")[0] if "." in rest else ""
    return package, layers.index(folder if folder in layers else "")


def test_folders_import_one_way() -> None:
    """The tree is the layering: no folder imports a folder above it (the plugin may use any driver layer)."""
    wrong = []
    for module, imports in import_graph().items():
        here = _layer(module)
        for imported in imports:
            there = _layer(imported)
            if here and there and here[0] == there[0] and there[1] > here[1]:
                wrong.append(f"{module} -> {imported}")
    assert not wrong, wrong
