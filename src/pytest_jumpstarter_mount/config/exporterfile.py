"""Loading an exporter config file so that its errors say where: line and column in the file."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any


class ExporterFileError(Exception):
    """The exporter config file is not valid YAML or not an exporter config (``line L, column C: ...``)."""


def load_exporter_config(path: Path) -> Any:
    """``ExporterConfigV1Alpha1`` from ``path``, as ``ExporterConfigV1Alpha1.load_path`` reads it.

    :raises ExporterFileError: a YAML error (at yaml's mark) or a schema error (at the YAML node
        of the field it names, or of the nearest enclosing one that exists).
    """
    import yaml  # type: ignore[import-untyped]
    from jumpstarter.config.exporter import ExporterConfigV1Alpha1
    from pydantic import ValidationError

    text = path.read_text()
    try:
        data = yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        what = " ".join(part for part in (exc.context, exc.problem) if part) or type(exc).__name__
        raise ExporterFileError(f"{at(mark)}{what}") from None
    except yaml.YAMLError as exc:
        raise ExporterFileError(str(exc).strip().splitlines()[0]) from None
    try:
        config = ExporterConfigV1Alpha1.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        node, keys = node_at(yaml.compose(text), first["loc"])
        if first["type"] == "missing" and first["loc"]:
            keys.append(str(first["loc"][-1]))  # the field that is not there
        more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
        field = ".".join(keys) or "the file"
        raise ExporterFileError(f"{at(node.start_mark if node else None)}{field}: {first['msg']}{more}") from None
    config.path = path
    return config


def at(mark: Any) -> str:
    """``"line L, column C: "`` for a yaml mark (0-based inside), or "" without one."""
    return f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""


def node_at(root: Any, loc: Sequence[Any]) -> tuple[Any, list[str]]:
    """The YAML node that ``loc`` (pydantic's path) leads to, and the keys and indexes of the file on the way.

    Parts of ``loc`` that are no key of the file (pydantic's names of union members) are skipped;
    a key that is not there leaves the node at the mapping that lacks it.
    """
    import yaml

    node, keys = root, []
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            found = [value for key, value in node.value if getattr(key, "value", None) == str(part)]
            if found:
                node = found[0]
                keys.append(str(part))
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            node = node.value[part]
            keys.append(str(part))
    return node, keys
