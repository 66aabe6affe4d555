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
