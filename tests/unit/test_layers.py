"""The layout's rules, checked on the source: the import-linter layers contract of
pyproject.toml holds (and fails when one upward import is added, even inside a function),
no import cycle between aini modules (imports inside functions counted), imports inside
functions only with a reason, and `target.kind` read only where the targets are known."""

from __future__ import annotations

import ast
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SRC = REPO / "src"
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"


def modules() -> dict[str, Path]:
    result = {}
    for path in (SRC / "aini").rglob("*.py"):
        parts = path.relative_to(SRC).with_suffix("").parts
        result[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return result


def imports(name: str, path: Path, known: dict[str, Path]) -> list[tuple[str, int, bool]]:
    """(imported aini module, line, inside a function) for every import statement."""
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found = []

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            inner = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            targets: list[str] = []
            if isinstance(child, ast.Import):
                targets = [a.name for a in child.names]
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:
                    parent = package.split(".")[: len(package.split(".")) - child.level + 1]
                    base = ".".join(parent + ([child.module] if child.module else []))
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in child.names]
            for target in targets:
                while target not in known and "." in target:
                    target = target.rsplit(".", 1)[0]
                if target in known and target != name:
                    found.append((target, child.lineno, in_function))
            visit(child, inner)

    visit(ast.parse(path.read_text()), False)
    return found


def graph() -> dict[str, set[str]]:
    known = modules()
    return {name: {t for t, _, _ in imports(name, path, known)} for name, path in known.items()}


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    result: list[list[str]] = []

    def connect(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in edges.get(v, ()):
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                result.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            connect(v)
    return result


def test_the_layers_contract_holds():
    r = subprocess.run([str(LINT_IMPORTS), "--no-cache"], cwd=REPO, capture_output=True, text=True, timeout=120,
                       env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(SRC)})
    assert r.returncode == 0, r.stdout + r.stderr
    assert "1 kept, 0 broken" in r.stdout


def test_one_upward_import_inside_a_function_breaks_the_contract(tmp_path):
    shutil.copytree(SRC / "aini", tmp_path / "aini", ignore=shutil.ignore_patterns("__pycache__", "ansible"))
    shutil.copy(REPO / "pyproject.toml", tmp_path)
    with open(tmp_path / "aini" / "docker" / "cmd.py", "a") as handle:
        handle.write("\n\ndef _upward():\n    from ..ops import up  # lazy: the test's upward import\n    return up\n")
    r = subprocess.run([str(LINT_IMPORTS), "--no-cache"], cwd=tmp_path, capture_output=True, text=True, timeout=120,
                       env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(tmp_path)})
    assert r.returncode == 1, r.stdout + r.stderr
    assert "aini.docker is not allowed to import aini.ops" in r.stdout
    assert "aini.docker.cmd -> aini.ops.up" in r.stdout


def test_no_import_cycles_counting_imports_inside_functions():
    edges = graph()
    assert sum(len(v) for v in edges.values()) > 150  # the scan sees the code
    assert cycles(edges) == []


def test_the_cycle_finder_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_imports_inside_functions_say_why():
    """Kept inside a function only for start-up time (`aini --help`), with the reason on the line."""
    known = modules()
    unexplained = []
    for name, path in known.items():
        lines = path.read_text().splitlines()
        for target, line, inside in imports(name, path, known):
            if inside and "# lazy:" not in lines[line - 1]:
                unexplained.append(f"{path.relative_to(REPO)}:{line} imports {target}")
    assert unexplained == []


def test_only_ops_and_config_read_the_target_kind():
    readers = []
    for path in (SRC / "aini").rglob("*.py"):
        rel = path.relative_to(SRC / "aini").as_posix()
        if rel.startswith("ops/") or rel == "config.py":
            continue
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if re.search(r"\btarget\.kind\b|\.target\.kind\b", line):
                readers.append(f"{rel}:{number}")
    assert readers == []


@pytest.mark.parametrize("text", ["config.target.kind == 'local'", "if target.kind != 'ssh':"])
def test_the_kind_pattern_matches_what_it_should(text):
    assert re.search(r"\btarget\.kind\b|\.target\.kind\b", text)
