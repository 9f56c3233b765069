"""What a step's code is: the mlwarden source it can reach, hashed by content.

A step's cache key must change whenever mlwarden code that can change its outputs changes:
a check, an attack, ``harden``, an estimator builder, not only the step function itself. The
code reached is found statically, never by importing anything:

* in the step function's own module (parsed with :mod:`ast`), at the level of top-level
  names: the function, the module-level helpers and constants it names (transitively), and
  every top-level statement that is not a definition or an import (it may have side
  effects). So editing ``evaluate`` does not rerun ``train``, although both are in
  ``_steps.py``;
* from there, whole modules, hashed by file content, transitively: every mlwarden module
  imported at module level or inside a function (``if TYPE_CHECKING:`` blocks excepted: they
  never run), and every mlwarden module named in a string such as the estimator catalogue's
  ``"mlwarden.models._dp.DPSGDClassifier"`` (imported by name at run time).

``from package import name`` reaches the module that defines ``name``: an ``__init__`` that
only re-exports it is looked through, so taking ``classification_metrics`` from
``mlwarden.audit`` does not make ``evaluate`` depend on every check. ``import package.module``
and ``from package import module`` reach that module only. The parents' ``__init__`` files
run too, but the code the step calls is not in them, except where they fill a registry: a
name that reads one (``run_check``, ``CHECKS``) reaches the package whose ``__init__`` imports
every module that registers into it (``_REGISTRIES``), so the audit step covers every check.
That is sound as long as every registry is listed there; a test checks the check registry.

The granularity is the module: a step that imports a module depends on all of it, so editing
one function of ``attacks/_tabular.py`` reruns every step that imports that module, even
where the function is not called (``train`` reaches ``harden`` whether or not the spec
hardens). Coarser than necessary never serves a stale result; finer would need a call graph.
Each module is read and scanned once per process (tens of milliseconds for a whole DAG).
"""

from __future__ import annotations

import ast
import hashlib
import inspect
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from mlwarden._version import __version__
from mlwarden.errors import UnknownNameError

_PACKAGE = "mlwarden"
_DOTTED = re.compile(r"^mlwarden(\.[A-Za-z_]\w*)+$")
# A name that reads a registry -> the package whose import fills it (every module with a
# ``@register_check`` is imported by ``mlwarden/audit/__init__.py``): code that runs checks
# through the registry depends on every check.
_REGISTRIES: dict[tuple[str, str], str] = {
    ("mlwarden.audit._checks", "CHECKS"): "mlwarden.audit",
    ("mlwarden.audit._checks", "run_check"): "mlwarden.audit",
}


@dataclass(frozen=True)
class _Module:
    """One mlwarden module: its content hash and the mlwarden modules it reaches directly."""

    name: str
    sha256: str
    imports: frozenset[str]


def _root() -> Path:
    return Path(__file__).resolve().parents[1]


@cache
def _file_of(name: str) -> Path | None:
    """The source file of module ``name`` of mlwarden, or None if there is none."""
    parts = name.split(".")
    if parts[0] != _PACKAGE:
        return None
    base = _root().joinpath(*parts[1:])
    for candidate in (base / "__init__.py", base.with_suffix(".py")):
        if candidate.is_file():
            return candidate
    return None


def _is_package(name: str) -> bool:
    file = _file_of(name)
    return file is not None and file.name == "__init__.py"


def _absolute(node: ast.ImportFrom, module: str) -> str:
    if not node.level:
        return node.module or ""
    package = module if _is_package(module) else module.rpartition(".")[0]
    for _ in range(node.level - 1):
        package = package.rpartition(".")[0]
    return f"{package}.{node.module}" if node.module else package


def _reexported(package: str, name: str) -> tuple[str, str]:
    """Where ``name``, taken from ``package``, is defined: a package ``__init__`` that only
    re-exports it (``from package._impl import name``) is looked through."""
    for _ in range(10):  # re-export chains are short; a cycle must not loop forever
        if not _is_package(package):
            break
        for top, stmt in _statements(package):
            if (
                top
                and isinstance(stmt, ast.ImportFrom)
                and any((a.asname or a.name) == name for a in stmt.names)
            ):
                alias = next(a for a in stmt.names if (a.asname or a.name) == name)
                source = _absolute(stmt, package)
                if _file_of(source) is None:
                    return package, name
                package, name = source, alias.name
                break
        else:
            break
    return package, name


def _bindings(node: ast.Import | ast.ImportFrom, module: str) -> dict[str, set[str]]:
    """Each name one import statement binds, with the mlwarden modules it reaches.

    See the module docstring: a submodule or the module that defines an imported name, and
    the package that fills a registry for a name that reads one.
    """
    bound: dict[str, set[str]] = {}
    for alias in node.names:
        targets: set[str] = set()
        if isinstance(node, ast.Import):
            local = alias.asname or alias.name.partition(".")[0]
            targets.add(alias.name)
        else:
            local = alias.asname or alias.name
            base = _absolute(node, module)
            sub = f"{base}.{alias.name}"
            if _file_of(sub) is not None:
                targets.add(sub)
            else:
                defined = _reexported(base, alias.name)
                targets.add(defined[0])
                if defined in _REGISTRIES:
                    targets.add(_REGISTRIES[defined])
        targets = {t for t in targets if _file_of(t) is not None and t != module}
        if targets:
            bound.setdefault(local, set()).update(targets)
    return bound


def _string_target(value: str) -> str | None:
    """The mlwarden module a dotted string such as ``"mlwarden.models._dp.Class"`` names."""
    if not _DOTTED.match(value):
        return None
    name = value
    while name != _PACKAGE and _file_of(name) is None:
        name = name.rpartition(".")[0]
    return None if name == _PACKAGE else name  # "mlwarden.charlm" is a format tag, not code


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _walk_running(node: ast.AST) -> Iterator[ast.AST]:
    """Every node under ``node``, leaving out ``if TYPE_CHECKING:`` bodies (they never run)."""
    stack = [node]
    while stack:
        current = stack.pop()
        yield current
        if isinstance(current, ast.If) and _is_type_checking(current):
            stack.extend(current.orelse)
            continue
        stack.extend(ast.iter_child_nodes(current))


def _reached(nodes: list[ast.AST], module: str) -> set[str]:
    """The mlwarden modules that ``nodes`` import or name in strings."""
    found: set[str] = set()
    for node in nodes:
        for child in _walk_running(node):
            if isinstance(child, ast.Import | ast.ImportFrom):
                for targets in _bindings(child, module).values():
                    found |= targets
            elif isinstance(child, ast.Constant) and isinstance(child.value, str):
                target = _string_target(child.value)
                if target is not None:
                    found.add(target)
    found.discard(module)
    return found


_STRING = re.compile(r"""["'](mlwarden(?:\.[A-Za-z_]\w*)+)["']""")
_TYPE_CHECKING = re.compile(r"^(\s*)if\s+(?:typing\.)?TYPE_CHECKING\s*:\s*(?:#.*)?$")
_IMPORT = re.compile(r"^(\s*)(?:from\s+\S+\s+import\b|import\s)")


def _import_statements(text: str) -> Iterator[tuple[bool, ast.Import | ast.ImportFrom]]:
    """Every import statement in ``text`` that can run, and whether it is at top level.

    Found line by line rather than by parsing the whole module (ten times faster, and this
    runs for every module a step reaches): a statement is cut out, continuation lines and all,
    and parsed alone. ``if TYPE_CHECKING:`` blocks are left out. A line in a docstring that
    parses as an import counts too: that only makes a step depend on more, never on less.
    """
    lines = text.splitlines()
    skip_deeper: int | None = None  # indent of the ``if TYPE_CHECKING:`` being skipped
    i = 0
    while i < len(lines):
        line = lines[i]
        i += 1
        stripped = line.lstrip()
        if not stripped or stripped.startswith("#"):
            continue
        indent = len(line) - len(stripped)
        if skip_deeper is not None:
            if indent > skip_deeper:
                continue
            skip_deeper = None
        if guard := _TYPE_CHECKING.match(line):
            skip_deeper = len(guard.group(1))
            continue
        if not _IMPORT.match(line):
            continue
        statement = stripped
        while (statement.count("(") > statement.count(")") or statement.endswith("\\")) and i < len(
            lines
        ):
            statement += "\n" + lines[i]
            i += 1
        if _PACKAGE not in statement and not statement.startswith("from ."):
            continue  # imports nothing of mlwarden
        node = _parse_import(statement)
        if node is not None:
            yield indent == 0, node


@cache
def _parse_import(statement: str) -> ast.Import | ast.ImportFrom | None:
    try:
        node = ast.parse(statement).body[0]
    except (SyntaxError, IndexError):
        return None  # prose in a docstring, not code
    return node if isinstance(node, ast.Import | ast.ImportFrom) else None


@cache
def _source(name: str) -> bytes:
    """The bytes of module ``name``'s file, read once per process."""
    file = _file_of(name)
    if file is None:
        raise UnknownNameError(f"no mlwarden module {name!r}")
    return file.read_bytes()


@cache
def _statements(name: str) -> tuple[tuple[bool, ast.Import | ast.ImportFrom], ...]:
    """Module ``name``'s import statements of mlwarden code that can run (top level or not)."""
    return tuple(_import_statements(_source(name).decode()))


@cache
def _module(name: str) -> _Module:
    """Module ``name``'s hash and the mlwarden modules it reaches directly."""
    source = _source(name)
    text = source.decode()
    reached: set[str] = set()
    for _, stmt in _statements(name):
        for targets in _bindings(stmt, name).values():
            reached |= targets
    for match in _STRING.finditer(text):
        target = _string_target(match.group(1))
        if target is not None:
            reached.add(target)
    reached.discard(name)
    return _Module(name, hashlib.sha256(source).hexdigest(), frozenset(reached))


def _closure(start: frozenset[str]) -> set[str]:
    seen: set[str] = set()
    todo = list(start)
    while todo:
        name = todo.pop()
        if name not in seen:
            seen.add(name)
            todo.extend(_module(name).imports - seen)
    return seen


def _defined_names(node: ast.stmt) -> list[str]:
    if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
        return [node.name]
    if isinstance(node, ast.Assign):
        return [t.id for t in node.targets if isinstance(t, ast.Name)]
    if isinstance(node, ast.AnnAssign | ast.AugAssign) and isinstance(node.target, ast.Name):
        return [node.target.id]
    return []


@cache
def _function_part(module: str, function: str) -> tuple[tuple[str, ...], frozenset[str]]:
    """In ``module``, the source of the top-level statements ``function`` depends on, in source
    order, and the mlwarden modules they reach."""
    file = _file_of(module)
    if file is None:
        raise UnknownNameError(f"no mlwarden module {module!r}")
    source = file.read_text()
    tree = ast.parse(source, filename=str(file))
    lines = source.splitlines(keepends=True)
    definitions: dict[str, list[int]] = {}
    imported: dict[str, set[str]] = {}
    always: list[int] = []
    for index, stmt in enumerate(tree.body):
        if isinstance(stmt, ast.Import | ast.ImportFrom):
            for local, targets in _bindings(stmt, module).items():
                imported.setdefault(local, set()).update(targets)
        elif isinstance(stmt, ast.If) and _is_type_checking(stmt) and not stmt.orelse:
            continue
        elif names := _defined_names(stmt):
            for name in names:
                definitions.setdefault(name, []).append(index)
        elif not (isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant)):
            always.append(index)  # a statement with possible side effects: always counted
    if function not in definitions:
        raise UnknownNameError(f"{module} has no top-level function {function!r}")
    included: set[int] = set()
    modules: set[str] = set()
    todo = [*definitions[function], *always]
    while todo:
        index = todo.pop()
        if index in included:
            continue
        included.add(index)
        stmt = tree.body[index]
        modules |= _reached([stmt], module)
        for node in _walk_running(stmt):
            if isinstance(node, ast.Name):
                todo.extend(definitions.get(node.id, []))
                modules |= imported.get(node.id, set())
    return tuple(_source_of(tree.body[i], lines) for i in sorted(included)), frozenset(modules)


def _source_of(stmt: ast.stmt, lines: list[str]) -> str:
    """The source lines of a top-level statement, decorators included."""
    decorators = getattr(stmt, "decorator_list", [])
    first = min([stmt.lineno, *(d.lineno for d in decorators)])
    return "".join(lines[first - 1 : stmt.end_lineno])


@cache
def code_version(fn: Callable[..., Any]) -> str:
    """Hash of the mlwarden code ``fn`` (a top-level function of an mlwarden module) reaches.

    Covers the package version, the parts of ``fn``'s module it uses and the content of every
    mlwarden module it reaches (see the module docstring for how coarse that is, and why).
    """
    module, function = fn.__module__, fn.__qualname__
    digest = hashlib.sha256(f"{__version__}\n{module}.{function}\n".encode())
    if _file_of(module) is None or "." in function:
        # Not a top-level function of mlwarden (a test's stand-in step): its own source only.
        digest.update(inspect.getsource(fn).encode())
        return digest.hexdigest()
    sources, reached = _function_part(module, function)
    closure = _closure(reached)
    for source in sources:
        digest.update(source.encode())
    for name in sorted(closure):
        digest.update(f"{name} {_module(name).sha256}\n".encode())
    return digest.hexdigest()


def reached_modules(fn: Callable[..., Any]) -> list[str]:
    """The mlwarden modules ``fn``'s code version covers, sorted (to inspect and test it)."""
    _, reached = _function_part(fn.__module__, fn.__qualname__)
    closure = _closure(reached)
    closure.add(fn.__module__)
    return sorted(closure)
