"""The project's imports read from the source (nothing is imported): which module imports
which, at the top of a module or inside a function, for tests/test_layers.py.

A module's *top-level* imports run when it is imported: the statements of its body, its
classes' bodies, ``try`` / ``if`` blocks among them, but not an ``if TYPE_CHECKING:`` block
(annotations only). Its *function-level* imports run when a function runs. An import of
``a.b.c`` (``import a.b.c``, ``from a.b.c import x``, or ``from a.b import c`` where ``c`` is
a module) is an arrow to the module ``a.b.c`` itself, as a picture of the code draws it: the
parent packages Python initialises on the way are not arrows of their own.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("study", "search_spaces", "runners", "analysis")


@dataclass(frozen=True)
class Import:
    """One import statement's target: ``module`` imported by ``importer`` on ``line``,
    at the top of the module (``top``) or inside a function."""

    importer: str
    module: str
    line: int
    top: bool


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def project_modules() -> dict[str, Path]:
    """Every module of the packages (notebooks are not modules), by name."""
    out = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            out[module_name(path)] = path
    return out


def _type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _targets(node: ast.Import | ast.ImportFrom, importer: str, is_package: bool, known: set[str]) -> list[str]:
    if isinstance(node, ast.Import):
        return [a.name for a in node.names]
    base = node.module or ""
    if node.level:  # relative: resolved against the importer's package
        package = importer.split(".") if is_package else importer.split(".")[:-1]
        package = package[: len(package) - node.level + 1]
        base = ".".join([*package, base] if base else package)
    out = []
    for alias in node.names:
        sub = f"{base}.{alias.name}"
        out.append(sub if sub in known else base)
    return list(dict.fromkeys(out))


def _module_imports(name: str, path: Path, known: set[str]) -> list[Import]:
    """The import statements of one module (TYPE_CHECKING blocks left out)."""
    is_package = path.name == "__init__.py"
    found: list[Import] = []

    def visit(node: ast.AST, top: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _type_checking(child):
                for sub in child.orelse:
                    visit_one(sub, top)
                continue
            visit_one(child, top)

    def visit_one(child: ast.AST, top: bool) -> None:
        if isinstance(child, (ast.Import, ast.ImportFrom)):
            for target in _targets(child, name, is_package, known):
                found.append(Import(name, target, child.lineno, top))
        elif isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            visit(child, False)
        else:
            visit(child, top)

    visit(ast.parse(path.read_text()), True)
    return found


def read_imports(modules: dict[str, Path] | None = None) -> list[Import]:
    """Every import statement of the project's modules (TYPE_CHECKING blocks left out)."""
    modules = project_modules() if modules is None else modules
    known = set(modules)
    return [imp for name, path in modules.items() for imp in _module_imports(name, path, known)]


def closure(start: str, arrows: dict[str, set[str]]) -> set[str]:
    """Every module reached from ``start`` along ``arrows`` (``start`` included)."""
    seen, todo = {start}, [start]
    while todo:
        for nxt in arrows.get(todo.pop(), ()):
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    return seen


def strongly_connected(arrows: dict[str, set[str]]) -> list[list[str]]:
    """The groups of modules that reach each other (Tarjan's algorithm), larger than one."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    groups: list[list[str]] = []
    counter = [0]

    def connect(v: str) -> None:  # recursion depth: the project's import chains are short
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(arrows.get(v, ())):
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for v in sorted(arrows):
        if v not in index:
            connect(v)
    return groups
