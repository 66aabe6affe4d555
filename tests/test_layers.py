"""The layers, bottom to top: study (the core) -> search_spaces -> runners beside analysis ->
the study CLI (runners.cli). Each layer is imported in a fresh interpreter, with every one
of its modules, and must load nothing above it (docs/architecture.md; study.run, the thin entry, hands
its command line to runners.cli only when called). The imports read from the source,
function-level ones included (tests/_imports.py): no module imports a layer above its own, no
modules import each other in a circle, and an import inside a function defers a heavy
dependency (or it belongs at the top of the module)."""

from __future__ import annotations

import json
import pkgutil
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # the import reader, whatever pytest's import mode
from _imports import PACKAGES, closure, project_modules, read_imports, strongly_connected

ROOT = Path(__file__).resolve().parents[1]

#: layer -> the packages it must not load
ABOVE = {
    "study": ("search_spaces", "runners", "analysis"),
    "search_spaces": ("runners", "analysis"),
    "runners": ("analysis", "runners.cli"),
    "analysis": ("runners",),
}
#: the one documented upward import: the study CLI's entry hands its command line on when called
UPWARD_ALLOWED = {("study.run", "runners.cli")}

#: what an import inside a function may defer: the dependencies that take a second or more to
#: import (torch, Ray, matplotlib, scipy and MLflow, and what imports scipy at its top:
#: scikit-learn, statsmodels), and those the core's command lines start without (Optuna,
#: pandas, SQLAlchemy: 0.8-1.4 s each on this project's machine, `python -X importtime`)
HEAVY = {"torch", "ray", "matplotlib", "scipy", "mlflow", "sklearn", "statsmodels", "optuna", "pandas", "sqlalchemy",
         "psutil"}  # psutil: optional (the mlflow extra), imported where system metrics are asked for

def _modules(package: str) -> list[str]:
    """Every module of ``package`` except the study CLI (for runners) and __main__ files."""
    path = ROOT / package.replace(".", "/")
    out = [package]
    for info in pkgutil.walk_packages([str(path)], prefix=f"{package}."):
        name = info.name
        if name.endswith("__main__") or name.startswith("runners.cli") or ".notebooks" in name:
            continue
        out.append(name)
    return out


@pytest.mark.parametrize("layer", sorted(ABOVE))
def test_a_layer_loads_nothing_above_it(layer):
    code = (
        "import importlib, json, sys\n"
        f"for m in {_modules(layer)!r}:\n"
        "    importlib.import_module(m)\n"
        "print(json.dumps(sorted(sys.modules)))\n"
    )
    res = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=240)
    assert res.returncode == 0, res.stderr[-2000:]
    loaded = json.loads(res.stdout.strip().splitlines()[-1])
    for above in ABOVE[layer]:
        bad = [m for m in loaded if m == above or m.startswith(above + ".")]
        assert not bad, f"importing {layer} loads {bad[:5]} from the layer above"


def test_the_study_cli_is_the_top_floor():
    """runners.cli imports runners and analysis; no module below it imports it."""
    hits = []
    for path in (ROOT / "study").rglob("*.py"):
        text = path.read_text()
        if "runners.cli" in text and path.name != "run.py":
            hits.append(str(path.relative_to(ROOT)))
    for pkg in ("search_spaces", "analysis", "runners"):
        for path in (ROOT / pkg).rglob("*.py"):
            if "runners/cli" in str(path):
                continue
            if "from runners.cli" in path.read_text() or "import runners.cli" in path.read_text():
                hits.append(str(path.relative_to(ROOT)))
    assert not hits, f"modules below the study CLI import it: {hits}"


# ----------------------------------------------------------------------------- read from the source

MODULES = project_modules()
IMPORTS = read_imports(MODULES)


def _node(module: str) -> str:
    """A project module by name (an attribute imported as ``from pkg import name`` is ``pkg``),
    or a third-party package as ``@name``."""
    if module in MODULES or module.split(".")[0] in PACKAGES:
        while module not in MODULES and "." in module:
            module = module.rsplit(".", 1)[0]
        return module
    return "@" + module.split(".")[0]


def _layer(module: str) -> str:
    return "runners.cli" if module.startswith("runners.cli") else module.split(".")[0]


def test_the_reader_sees_the_imports_inside_functions():
    """A known function-level import is read (the CLI entry's hand-over), and a TYPE_CHECKING one is not."""
    inside = {(i.importer, i.module) for i in IMPORTS if not i.top}
    assert ("study.run", "runners.cli") in inside
    assert len(inside) > 50 and all(i.module for i in IMPORTS)


def test_no_import_runs_upward_function_level_ones_included():
    order = ["study", "search_spaces", "runners", "analysis", "runners.cli"]
    above = {"study": set(order[1:]), "search_spaces": set(order[2:]), "runners": {"analysis", "runners.cli"},
             "analysis": {"runners", "runners.cli"}, "runners.cli": set()}
    bad = [f"{i.importer}:{i.line} imports {i.module}" for i in IMPORTS
           if (n := _node(i.module))[0] != "@" and _layer(n) in above[_layer(i.importer)]
           and (i.importer, _layer(n)) not in UPWARD_ALLOWED]
    assert not bad, bad


def test_no_modules_import_each_other_in_a_circle():
    """Between the packages' modules, function-level imports included (a circle of them is
    one module whose parts cannot be understood, or imported, one without the others)."""
    arrows: dict[str, set[str]] = defaultdict(set)
    for i in IMPORTS:
        n = _node(i.module)
        if n[0] != "@" and n != i.importer:
            arrows[i.importer].add(n)
    circles = strongly_connected(arrows)
    assert not circles, circles


def _heavy(module: str, top: dict[str, set[str]]) -> set[str]:
    """The heavy dependencies importing ``module`` loads (its top-level imports, followed)."""
    return {n[1:] for n in closure(_node(module), top) if n[0] == "@" and n[1:] in HEAVY}


def test_imports_inside_functions_defer_a_heavy_dependency():
    top: dict[str, set[str]] = defaultdict(set)
    for i in IMPORTS:
        if i.top:
            top[i.importer].add(_node(i.module))
    needless = [f"{i.importer}:{i.line} imports {i.module}" for i in IMPORTS
                if not i.top and (i.importer, _layer(_node(i.module))) not in UPWARD_ALLOWED
                and not (_heavy(i.module, top) - _heavy(i.importer, top))]
    assert not needless, f"imports inside functions that defer nothing heavy (move them to the top): {needless}"
