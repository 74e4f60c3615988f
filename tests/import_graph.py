"""The import graph of one package, read from its source with :mod:`ast` (nothing is imported).

Why: an import cycle inside a package means its modules cannot be read, tested or replaced one at a
time, and it breaks at import time as soon as someone moves a lazy import to the top. So every
import counts as an edge: top-level, inside a function (a lazy import is still a cycle in the
design) and under ``if TYPE_CHECKING:`` (kept apart, as those only bind names for mypy).

Edges go to the most specific module: ``from . import x`` where ``x`` is a submodule is an edge to
``x``, not to the package ``__init__``. Dynamic imports with a computed name are not seen.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Import:
    """One import statement of ``source`` naming the absolute module ``target``."""

    source: str
    target: str
    path: Path
    line: int
    type_checking: bool


def module_files(package_dir: Path) -> dict[str, Path]:
    """Every module of the package in ``package_dir`` by dotted name (``pkg.sub`` for ``pkg/sub/__init__.py``)."""
    modules = {}
    for path in sorted(package_dir.rglob("*.py")):
        parts = path.relative_to(package_dir.parent).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        modules[".".join(parts)] = path
    return modules


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _statements(nodes: Iterable[ast.AST], type_checking: bool = False) -> Iterator[tuple[ast.Import | ast.ImportFrom, bool]]:
    """Every import statement in ``nodes`` (at any depth) with whether it sits under ``if TYPE_CHECKING:``."""
    for node in nodes:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node, type_checking
        elif isinstance(node, ast.If) and _is_type_checking(node.test):
            yield from _statements(node.body, True)
            yield from _statements(node.orelse, type_checking)
        else:
            yield from _statements(ast.iter_child_nodes(node), type_checking)


def imports_of(module: str, path: Path) -> Iterator[Import]:
    """The names ``module`` imports, relative imports made absolute; ``from m import n`` yields ``m.n`` (a module
    or a name in ``m``: :func:`resolve` tells which)."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    for stmt, type_checking in _statements(tree.body):
        if isinstance(stmt, ast.Import):
            targets = [alias.name for alias in stmt.names]
        else:
            base = stmt.module or ""
            if stmt.level:
                parent = package.split(".")[: len(package.split(".")) - (stmt.level - 1)]
                base = ".".join([*parent, *([stmt.module] if stmt.module else [])])
            targets = [f"{base}.{alias.name}" for alias in stmt.names]
        for target in targets:
            yield Import(module, target, path, stmt.lineno, type_checking)


def resolve(name: str, modules: dict[str, Path]) -> str | None:
    """The most specific module of ``modules`` that ``name`` (a module, or a module + a name in it) refers to."""
    parts = name.split(".")
    for end in range(len(parts), 0, -1):
        if ".".join(parts[:end]) in modules:
            return ".".join(parts[:end])
    return None


def intra_package_edges(package_dir: Path) -> list[Import]:
    """The imports between modules of one package (one edge per statement and target, no self-imports)."""
    modules = module_files(package_dir)
    edges: dict[tuple[str, str, int], Import] = {}
    for module, path in modules.items():
        for imp in imports_of(module, path):
            target = resolve(imp.target, modules)
            if target is not None and target != module:
                edges.setdefault((module, target, imp.line), Import(module, target, path, imp.line, imp.type_checking))
    return list(edges.values())


def cycles(edges: list[Import]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan), each sorted, in a stable order."""
    graph: dict[str, set[str]] = {}
    for edge in edges:
        graph.setdefault(edge.source, set()).add(edge.target)
        graph.setdefault(edge.target, set())
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for succ in sorted(graph[node]):
            if succ not in index:
                visit(succ)
                low[node] = min(low[node], low[succ])
            elif succ in on_stack:
                low[node] = min(low[node], index[succ])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return sorted(found)


def describe(component: list[str], edges: list[Import], root: Path) -> str:
    """One cycle for a failure message: its modules, then the imports that close it (TYPE_CHECKING ones apart)."""
    members = set(component)
    inner = [e for e in edges if e.source in members and e.target in members]
    lines = [f"cycle of {len(component)} modules: {', '.join(component)}"]
    for label, type_checking in (("imports", False), ("imports under TYPE_CHECKING", True)):
        chosen = [e for e in inner if e.type_checking is type_checking]
        if chosen:
            lines.append(f"  {label}:")
            lines += [f"    {e.path.relative_to(root)}:{e.line}  {e.source} -> {e.target}" for e in chosen]
    return "\n".join(lines)


def top_level_imports(package_dir: Path) -> list[Import]:
    """Every absolute import of the package (for layering checks), with ``importlib.import_module("name")`` calls."""
    found = []
    for module, path in module_files(package_dir).items():
        found += [imp for imp in imports_of(module, path) if not imp.target.startswith(module.split(".")[0] + ".")]
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        for node in ast.walk(tree):
            if (isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", None)) in (
                    "import_module", "__import__") and node.args and isinstance(node.args[0], ast.Constant)
                    and isinstance(node.args[0].value, str) and not node.args[0].value.startswith(".")):
                found.append(Import(module, node.args[0].value, path, node.lineno, False))
    return found
