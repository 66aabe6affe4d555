"""python -m analysis.report: plots (PNG + SVG), tables and report.md; clear messages for
what cannot be made; nothing written to the storage."""

from __future__ import annotations

import hashlib
import subprocess
import sys

import pytest

from analysis._report import main as report_main
from study.cli import run_cli


def _png_ok(path):
    data = path.read_bytes()
    return data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000


def _run(args, capsys):
    with pytest.raises(SystemExit) as exc:
        run_cli(report_main, args, prog="python -m analysis.report")
    cap = capsys.readouterr()
    return exc.value.code, cap.out, cap.err


def test_report_writes_every_plot_and_table(demo_run, make_study, tmp_path, capsys):
    before = hashlib.sha256((demo_run / "study.db").read_bytes()).hexdigest()
    # the same first 20 ECA configurations as the demo study, at another "fidelity"
    other = make_study("proxy2", n_eca=20, n_psi=0, n_se=0, n_none=0, n_pruned=0, n_failed=0, seed=0, noise_seed=5,
                       transform=lambda x: 0.8 * x + 5)
    out = tmp_path / "report"
    code, stdout, err = _run([str(demo_run), "--out", str(out), "--compare", str(other)], capsys)
    assert code == 0, err
    for item in ("pareto params", "pareto macs", "pareto latency", "hypervolume", "attention gain", "learning curves",
                 "importance", "k-vs-C fit", "gamma-b plane", "fidelity vs proxy2"):
        assert f"[report] {item}: done" in stdout, stdout
    for name in ("pareto_params", "pareto_macs", "pareto_latency", "attention_gain", "learning_curves", "importance", "kmap",
                 "kmap_curves", "gamma_b", "fronts_params", "fidelity_proxy2"):
        assert _png_ok(out / f"{name}.png"), name
        assert "<svg" in (out / f"{name}.svg").read_text()[:2000], name
    for name in ("trials", "pareto_params", "attention_gain", "hypervolume", "importance", "kmap_points", "kmap_effects", "kmap_mappings",
                 "gamma_b",
                 "fidelity_proxy2"):
        assert (out / f"{name}.csv").stat().st_size > 50, name
    md = (out / "report.md").read_text()
    for head in ("# Study report: demo", "## Pareto fronts", "## ECA kernel size k against channels C", "## Proxy fidelity",
                 "![top-1 vs params](pareto_params.png)"):
        assert head in md
    assert "## Not made" not in md
    # the k section opens with its verdict, in words, before any number
    k_section = md.split("## ECA kernel size k against channels C", 1)[1]
    assert k_section.lstrip().startswith("**Evidence that k matters (p = ")
    assert "20 common configurations" in md
    assert hashlib.sha256((demo_run / "study.db").read_bytes()).hexdigest() == before


def test_report_says_what_cannot_be_made(make_study, capsys):
    run = make_study("failing", n_eca=0, n_psi=0, n_se=0, n_none=0, n_pruned=2, n_failed=2)
    url = f"sqlite:///{run / 'study.db'}"
    code, stdout, err = _run(["--storage", url, "--study", "failing", "--out", str(run / "report")], capsys)
    assert code == 0, err
    md = (run / "report" / "report.md").read_text()
    assert "## Not made" in md and "no completed trials" in md
    assert "pareto params: not made (no completed trials)" in stdout
    assert "k-vs-C fit: not made (k-vs-C: no C with two or more k values among the 2 configurations" in stdout
    assert (run / "report" / "learning_curves.png").exists()  # pruned trials still have curves


def test_report_cli_errors(tmp_path, demo_run, capsys):
    for args, msg in (([str(tmp_path / "nope")], "run folder"),
                      ([], "give a run folder or --storage URL"),
                      (["--storage", "sqlite:///" + str(demo_run / "study.db"), "--study", "other"], "no study named 'other'"),
                      (["--storage", "mongodb://x/y", "--study", "s"], "unsupported URL scheme")):
        code, _, err = _run(args, capsys)
        lines = err.strip().splitlines()
        assert code == 2 and len(lines) == 1 and lines[0].startswith("python -m analysis.report: error:") and msg in lines[0], err
    r = subprocess.run([sys.executable, "-m", "analysis.report", str(tmp_path / "nope")], capture_output=True, text=True)
    expected = f"python -m analysis.report: error: run folder '{tmp_path / 'nope'}' does not exist"
    assert r.returncode == 2 and r.stderr.strip().splitlines() == [expected]


def test_report_compares_studies_of_the_same_name(demo_run, make_study, tmp_path):
    from analysis import load, make_report

    # another run folder holding a study also named "demo" (e.g. the same space on another proxy)
    other = load(make_study("demo", n_eca=20, n_psi=0, n_se=0, n_none=0, n_pruned=0, n_failed=0, seed=0, noise_seed=5))
    out = tmp_path / "report"
    make_report(load(demo_run), out, compare=[other], log=None)
    import pandas as pd

    hv = pd.read_csv(out / "hypervolume.csv")
    assert hv["study"].tolist() == ["demo", "demo-2"]  # neither study hides the other
    assert (out / "fidelity_demo-2.csv").exists() and (out / "fronts_params.png").exists()


def test_the_report_states_the_seed_noise_of_its_rankings():
    import pandas as pd
    from scipy import stats

    from analysis._report import _noise_words

    single = pd.DataFrame({"key": ["a", "b", "c"], "top1": [70.0, 72.0, 71.0]})
    assert _noise_words(single).startswith("Each configuration ran once: the seed-to-seed noise of top-1 is not measured")
    runs = pd.DataFrame({"key": ["a", "a", "b", "b", "c"], "top1": [70.0, 72.0, 60.0, 61.0, 80.0]})
    sigma = ((1.0 + 1.0 + 0.25 + 0.25) / 2) ** 0.5  # pooled over a and b, 2 df
    lo = (2.5 / stats.chi2.ppf(0.975, 2)) ** 0.5
    words = _noise_words(runs)
    assert words.startswith("Seed-to-seed noise of top-1, pooled over the 2 configurations run more than once")
    assert f"sigma = {sigma:.2f} points (95 % CI {lo:.2f}-" in words and "2 df" in words
