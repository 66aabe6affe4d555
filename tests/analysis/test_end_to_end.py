"""A study the runners wrote, analysed: ``python -m study.run`` (local runner, a tiny
eca_kmap study) into a real SQLite storage, then ``python -m analysis.report`` on its run
folder. The other analysis tests write the record by hand; this one keeps the two sides
from drifting apart."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from study.cli import run_cli
from study.run import main as study_main

REPO = Path(__file__).resolve().parents[2]


def test_report_on_a_study_the_runner_wrote(tmp_path, tiny_flags, capsys):
    with pytest.raises(SystemExit) as exc:
        run_cli(study_main, ["--space", "eca_kmap", "--runner", "local", "--trials", "6", "--epochs", "2", "--pruner", "none",
                             "--out", str(tmp_path), "--quiet", *tiny_flags], prog="python -m study.run")
    assert exc.value.code == 0, capsys.readouterr().err
    run = tmp_path / "eca_kmap"
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.run([sys.executable, "-m", "analysis.report", str(run)], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "[report] k-vs-C fit: done" in proc.stdout, proc.stdout

    report = run / "report"
    for name in ("report.md", "trials.csv", "kmap.json", "kmap_points.csv", "kmap.png", "pareto_params.png", "learning_curves.png"):
        assert (report / name).stat().st_size > 0, name
    settings = json.loads((run / "settings.json").read_text())
    study = optuna.load_study(study_name=settings["name"], storage=settings["storage"])
    done = {t.number: t.value for t in study.get_trials() if t.state == TrialState.COMPLETE}
    assert len(done) == 6
    # every trial the runner recorded is in the report's table, with the value the storage holds
    with open(report / "trials.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert {int(r["number"]): float(r["value"]) for r in rows} == done
    assert {r["attention"] for r in rows} == {"eca"} and {int(r["epochs"]) for r in rows} == {2}
    md = (report / "report.md").read_text()
    assert "# Study report: eca_kmap" in md and "- trials: 6 (6 complete)" in md
    best = max(done, key=done.get)
    assert f"| {best} | {done[best]:.4g} | 2 |" in md  # the best trial heads the table
    k_section = md.split("## ECA kernel size k against channels C", 1)[1]
    assert k_section.lstrip().startswith(("**Evidence that k matters (p = ", "**No evidence that k matters at this budget (p = "))
    assert "(6 trials, 6 configurations" in k_section
