"""Both notebooks run against a small study (passed through the first cell's variables)
and show their plots inline."""

from __future__ import annotations

import base64
from pathlib import Path

import nbclient
import nbformat
import pytest

import analysis

NOTEBOOKS = Path(analysis.__file__).parent / "notebooks"


@pytest.mark.parametrize("name,min_images", [("pareto", 6), ("kmap", 3)])
def test_notebook_runs_and_shows_plots(name, min_images, demo_run, tmp_path, monkeypatch):
    nb = nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)
    first = nb.cells[0]
    assert first.cell_type == "code" and "STUDY" in first.source and "parameters" in first.metadata.get("tags", [])
    monkeypatch.setenv("ANALYSIS_STUDY", str(demo_run))
    monkeypatch.setenv("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    nbclient.NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    images = [base64.b64decode(o["data"]["image/png"]) for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
              if "image/png" in o.get("data", {})]
    assert len(images) >= min_images
    assert all(img[:8] == b"\x89PNG\r\n\x1a\n" and len(img) > 5000 for img in images)
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert not errors
