"""The code's layout, read from its source: imports flow one way (no module of gen/, db/ or
schema/ imports itself back through others), db never imports gen, no function is longer than
80 lines (text templates excepted), and no database file is tracked."""

from __future__ import annotations

import ast
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("gen", "db", "schema")
LONGEST = 80  # lines per function
TEMPLATES = {"gen/export/card.py:render_readme", "gen/export/croissant.py:croissant_json"}


def module_files() -> dict[str, Path]:
    """Every module of the project by dotted name: gen.export.dataset, gen.export (its __init__)."""
    modules = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return modules


def imported(path: Path, name: str, modules: dict[str, Path]) -> Iterator[str]:
    """The project modules a module imports, anywhere in it (in functions and TYPE_CHECKING too)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from . import x, from ..db import y
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            # from gen.export import layout names the module gen.export.layout
            targets = [
                f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base for alias in node.names
            ]
        else:
            continue
        for target in targets:
            while target and target not in modules:  # import gen.export.layout as ... -> deepest module
                target = target.rpartition(".")[0]
            if target and target != name:
                yield target


def import_graph() -> dict[str, set[str]]:
    modules = module_files()
    return {name: set(imported(path, name, modules)) for name, path in modules.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for successor in graph[node]:
            if successor not in index:
                visit(successor)
                low[node] = min(low[node], low[successor])
            elif successor in stack:
                low[node] = min(low[node], index[successor])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_the_cycle_finder_finds_a_ring_and_only_a_ring() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": set()}
    assert cycles(graph) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_module_imports_itself_back() -> None:
    assert cycles(import_graph()) == []


def test_db_and_schema_import_nothing_of_gen() -> None:
    graph = import_graph()
    offending = sorted(
        f"{name} imports {target}"
        for name, targets in graph.items()
        if name.split(".")[0] in ("db", "schema")
        for target in targets
        if target.split(".")[0] == "gen"
    )
    assert offending == []


def long_functions() -> list[str]:
    found = []
    for package in ("gen", "db"):
        for path in sorted((ROOT / package).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    where = f"{path.relative_to(ROOT).as_posix()}:{node.name}"
                    length = node.end_lineno - node.lineno + 1
                    if length > LONGEST and where not in TEMPLATES:
                        found.append(f"{where} ({length} lines)")
    return found


def test_no_function_is_longer_than_80_lines() -> None:
    assert long_functions() == []


@pytest.mark.skipif(shutil.which("git") is None or not (ROOT / ".git").exists(), reason="not a git clone")
def test_no_database_file_is_tracked() -> None:
    tracked = subprocess.run(
        ["git", "ls-files", "*.db", "*.sqlite", "*.sqlite3"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    assert tracked.stdout.split() == []
