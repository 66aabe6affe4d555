"""The layers, bottom to top: study (the core) -> search_spaces -> runners beside analysis ->
the study CLI (runners.cli). Each layer is imported in a fresh interpreter, with every one
of its modules, and must load nothing above it (docs/architecture.md; study.run, the thin entry, hands
its command line to runners.cli only when called)."""

from __future__ import annotations

import json
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

#: layer -> the packages it must not load
ABOVE = {
    "study": ("search_spaces", "runners", "analysis"),
    "search_spaces": ("runners", "analysis"),
    "runners": ("analysis", "runners.cli"),
    "analysis": ("runners",),
}


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
    """runners.cli imports runners and analysis; no module below it imports runners.cli."""
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
