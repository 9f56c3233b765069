"""The package's shape: imports point down the layers, no cycles, private modules stay private,
files stay readable, and every error raised on purpose belongs to one tree.

The layers are those of ARCHITECTURE.md: cli -> pipeline | serve -> audit -> attacks -> models ->
data | lineage | report, with ``errors`` and the root's private helpers below them all. A module
may import its own package freely, a lower layer through that package's face (``mlwarden.models``,
not ``mlwarden.models._registry``), and nothing above it.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from functools import cache
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "mlwarden"
MAX_LINES = 600

# rank of each top-level part of the package; an import must go to a strictly lower rank, or
# stay inside its own package. The facades (the root and mlwarden.testing) sit above everything.
RANK = {
    "cli": 7,
    "testing": 8,
    "pipeline": 6,
    "serve": 6,
    "audit": 5,
    "attacks": 4,
    "models": 3,
    "data": 2,
    "lineage": 2,
    "report": 2,
    "_sql": 1,
    "_yaml_lines": 1,
    "errors": 0,
    "_version": 0,
    "_lp_ball": 1,
    "_tasks": 1,
}
FACADES = {"__init__", "datasets", "testing"}
BUILTIN_ERRORS = {
    "Exception",
    "ValueError",
    "TypeError",
    "RuntimeError",
    "KeyError",
    "LookupError",
    "IndexError",
    "OSError",
    "NotImplementedError",
}


@dataclass(frozen=True)
class Import:
    source: str  # dotted module that imports
    target: str  # dotted module imported
    line: int


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


@cache
def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(SRC.rglob("*.py"))}


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _resolve(name: str) -> str:
    """The longest known module that ``name`` names (``a.b.C`` -> ``a.b`` when C is a class)."""
    modules = _modules()
    while name and name not in modules:
        name = name.rpartition(".")[0]
    return name


@cache
def _imports() -> tuple[Import, ...]:
    found: list[Import] = []
    for module, path in _modules().items():
        is_package = path.name == "__init__.py"
        tree = ast.parse(path.read_text(encoding="utf-8"))
        skip: set[int] = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.If) and _is_type_checking(node):
                skip.update(id(n) for b in node.body for n in ast.walk(b))
        for node in ast.walk(tree):
            if id(node) in skip:
                continue
            if isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name.startswith("mlwarden"):
                        found.append(Import(module, _resolve(alias.name), node.lineno))
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    package = module if is_package else module.rpartition(".")[0]
                    for _ in range(node.level - 1):
                        package = package.rpartition(".")[0]
                    base = f"{package}.{base}" if base else package
                if not base.startswith("mlwarden"):
                    continue
                for alias in node.names:
                    target = _resolve(f"{base}.{alias.name}")
                    found.append(Import(module, target, node.lineno))
    return tuple(found)


def _part(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _where(imp: Import) -> str:
    return f"{imp.source} -> {imp.target}"


def _unique(found: list[str]) -> list[str]:
    return sorted(set(found))


def upward_imports(imports: tuple[Import, ...] | None = None) -> list[str]:
    bad = []
    for imp in _imports() if imports is None else imports:
        src, dst = _part(imp.source), _part(imp.target)
        if src == dst or src in FACADES:
            continue
        if dst in FACADES or RANK[dst] >= RANK[src]:
            bad.append(_where(imp))
    return _unique(bad)


def private_imports(imports: tuple[Import, ...] | None = None) -> list[str]:
    """Imports of another package's underscore modules instead of its face."""
    bad = []
    for imp in _imports() if imports is None else imports:
        src, dst = _part(imp.source), _part(imp.target)
        if src == dst or _part(imp.source) in FACADES:
            continue
        private = [p for p in imp.target.split(".")[2:] if p.startswith("_")]
        if private:
            bad.append(_where(imp))
    return _unique(bad)


def module_cycles() -> list[list[str]]:
    graph: dict[str, set[str]] = {m: set() for m in _modules()}
    for imp in _imports():
        if imp.target != imp.source and not imp.source.endswith("__init__"):
            graph[imp.source].add(imp.target)
    # a package face importing its own modules is not a cycle of design
    for module, path in _modules().items():
        if path.name == "__init__.py":
            graph[module] = {t for t in graph[module] if not t.startswith(module + ".")}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []
    counter = 0

    def visit(v: str) -> None:
        nonlocal counter
        index[v] = low[v] = counter
        counter += 1
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return cycles


def long_modules() -> list[str]:
    out = []
    for module, path in _modules().items():
        n = len(path.read_text(encoding="utf-8").splitlines())
        if n > MAX_LINES:
            out.append(f"{module}: {n} lines")
    return out


def stray_errors() -> list[str]:
    """Bare builtin raises and exception classes outside mlwarden.errors."""
    bad = []
    for module, path in _modules().items():
        if module == "mlwarden.errors":
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Raise) and isinstance(node.exc, ast.Call):
                func = node.exc.func
                if isinstance(func, ast.Name) and func.id in BUILTIN_ERRORS:
                    bad.append(f"{module}:{node.lineno} raises {func.id}")
            if isinstance(node, ast.ClassDef):
                bases = {b.id for b in node.bases if isinstance(b, ast.Name)}
                if bases and bases <= BUILTIN_ERRORS:
                    bad.append(f"{module}:{node.lineno} class {node.name} outside the tree")
    return bad


def test_imports_point_down_the_layers() -> None:
    assert upward_imports() == []


def test_no_module_imports_another_package_private_module() -> None:
    assert private_imports() == []


def test_no_import_cycles_between_modules() -> None:
    assert module_cycles() == []


def test_no_source_module_is_longer_than_600_lines() -> None:
    assert long_modules() == []


def test_every_error_raised_on_purpose_is_in_the_tree() -> None:
    assert stray_errors() == []


def test_the_checker_sees_planted_upward_and_private_imports() -> None:
    up = Import("mlwarden.models._registry", "mlwarden.pipeline", 1)
    private = Import("mlwarden.serve._app", "mlwarden.models._registry", 1)
    down = Import("mlwarden.serve._app", "mlwarden.models", 1)
    assert upward_imports((up, private, down)) == ["mlwarden.models._registry -> mlwarden.pipeline"]
    assert private_imports((up, private, down)) == [
        "mlwarden.serve._app -> mlwarden.models._registry"
    ]


if __name__ == "__main__":
    for name, found in [
        ("upward", upward_imports()),
        ("private", private_imports()),
        ("cycles", module_cycles()),
        ("long", long_modules()),
        ("errors", stray_errors()),
    ]:
        print(f"== {name}: {len(found)}")
        for item in found:
            print("  ", item)
