"""The tree passes ``ruff check .`` with the rules chosen in pyproject.toml."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_ruff_finds_nothing():
    exe = shutil.which("ruff")
    cmd = [exe, "check", "."] if exe else [sys.executable, "-m", "ruff", "check", "."]
    res = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120)
    if res.returncode != 0 and "No module named ruff" in res.stderr:
        pytest.fail("ruff is not installed: pip install -e '.[test]' installs it")
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-1000:]


#: the longest a function of the packages may be: one job reads top to bottom on a screen or two
MAX_FUNCTION_LINES = 100
#: no package imports another package's private (underscore) module; the benchmarks neither
PACKAGES = ("study", "search_spaces", "runners", "analysis")


def _functions(path: Path):
    import ast

    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            yield node


def test_no_function_is_over_100_lines():
    long = [f"{p.relative_to(ROOT)}:{fn.name} ({fn.end_lineno - fn.lineno + 1} lines)"
            for package in PACKAGES for p in sorted((ROOT / package).rglob("*.py"))
            for fn in _functions(p) if fn.end_lineno - fn.lineno + 1 > MAX_FUNCTION_LINES]
    assert not long, long


#: the longest a module of the packages may be: split by what its parts do, not by lines
MAX_MODULE_LINES = 450


def test_no_module_is_over_450_lines():
    long = [f"{p.relative_to(ROOT)} ({n} lines)" for package in PACKAGES for p in sorted((ROOT / package).rglob("*.py"))
            if (n := len(p.read_text().splitlines())) > MAX_MODULE_LINES]
    assert not long, long


def _imports(path: Path):
    import ast

    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module, [a.name for a in node.names]
        elif isinstance(node, ast.Import):
            for a in node.names:
                yield a.name, []


def test_no_module_reaches_into_another_packages_private_modules():
    """``from runners._bridge import X`` outside runners/ (or ``from study.data._decode``
    outside study/): what another package needs is public."""
    bad = []
    for folder in (*PACKAGES, "benchmarks"):
        for p in sorted((ROOT / folder).rglob("*.py")):
            own = p.relative_to(ROOT).parts[0]
            for module, names in _imports(p):
                parts = module.split(".")
                private = [n for n in names if n.startswith("_")]  # from study.data import _prepare
                if parts[0] in PACKAGES and parts[0] != own and (any(part.startswith("_") for part in parts[1:]) or private):
                    bad.append(f"{p.relative_to(ROOT)}: {module} {' '.join(private)}".strip())
    assert not bad, bad
