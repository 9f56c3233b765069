"""Line numbers of YAML fields, so errors about a spec or threat model can point at the line."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import yaml

if TYPE_CHECKING:
    from pydantic import ValidationError

    from mlwarden.errors import SpecError

Lines = dict[tuple[Any, ...], int]


def line_index(node: yaml.Node | None) -> Lines:
    """Map every field path of a composed YAML document to its 1-based line number."""
    out: Lines = {}
    if node is not None:
        _walk(node, (), out)
    return out


def _walk(node: yaml.Node, path: tuple[Any, ...], out: Lines) -> None:
    out[path] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            _walk(value, (*path, key.value), out)
            out[(*path, key.value)] = key.start_mark.line + 1  # the key's line, not the value's
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _walk(item, (*path, i), out)


def line_of(lines: Lines, loc: tuple[Any, ...]) -> int:
    """The line of the deepest known ancestor of ``loc`` (a pydantic error location)."""
    path = tuple(p if isinstance(p, int) else str(p) for p in loc)
    while path and path not in lines:
        path = path[:-1]
    return lines.get(path, 1)


def parse_mapping(text: str, source: str, expected: str) -> tuple[dict[str, Any], Lines]:
    """Parse YAML text that must be a mapping; return it with the line of every field.

    Malformed YAML or a non-mapping raises ``SpecError`` naming ``source`` and the line;
    ``expected`` says what the top-level mapping should hold.
    """
    from mlwarden.errors import SpecError

    try:
        node = yaml.compose(text)
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f":{mark.line + 1}" if mark is not None else ""
        raise SpecError(f"{source}{line}: not valid YAML: {getattr(exc, 'problem', exc)}") from exc
    if not isinstance(raw, dict):
        raise SpecError(f"{source}:1: expected a mapping {expected}")
    return raw, line_index(node)


def validation_error(
    exc: ValidationError,
    lines: Lines,
    source: str,
    skip: Callable[[Any], bool] = lambda part: str(part).startswith("function-"),
) -> SpecError:
    """One ``file:line: field: got X; expected: Y`` line per pydantic error, as a ``SpecError``.

    ``skip`` drops location parts that name validators or union members, not fields.
    """
    from mlwarden.errors import SpecError

    messages = []
    for err in exc.errors():
        loc = tuple(p for p in err["loc"] if not skip(p))
        field = ".".join(str(p) for p in loc) or "(top level)"
        shown = "nothing" if err["type"] == "missing" else repr(err.get("input"))
        if len(shown) > 80:
            shown = shown[:77] + "..."
        expected = err["msg"].removeprefix("Value error, ")
        messages.append(
            f"{source}:{line_of(lines, loc)}: {field}: got {shown}; expected: {expected}"
        )
    return SpecError("\n".join(messages))
