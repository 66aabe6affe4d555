"""analysis.kmap: recovering psi's (gamma, b), the continuous fit's intervals, k* from a
study, and the --points command line."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys

import numpy as np
import pytest

import analysis
from analysis.kmap import fit_continuous, fit_kmap, fit_linear, fit_psi
from analysis.kmap import main as kmap_main
from study.attention import psi

CS = [16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512, 768, 1024, 1536, 2048, 3072, 4096]


@pytest.mark.parametrize("gamma,b,rule", [(2.0, 1.0, "paper"), (3.0, 2.0, "paper"), (1.5, 0.5, "paper"), (4.0, 0.0, "timm"),
                                         (2.5, -1.0, "timm")])
def test_psi_fit_recovers_truth_without_noise(gamma, b, rule):
    k = [psi(c, gamma, b, rule) for c in CS]
    f = fit_psi(CS, k, rule=rule)
    assert f.loss == 0
    assert (gamma, b) in f.equal_loss
    # every member of the set reproduces the points exactly, and nothing outside it does
    for g, bb in f.equal_loss:
        assert [psi(c, g, bb, rule) for c in CS] == k
    outside = np.argwhere(f.losses > 0)
    assert len(outside) + len(f.equal_loss) == f.losses.size
    assert f.contains_paper == ((2.0, 1.0) in f.equal_loss)
    assert f.gamma_range[0] <= gamma <= f.gamma_range[1] and f.b_range[0] <= b <= f.b_range[1]


def test_psi_fit_recovers_truth_with_noise():
    rng = np.random.default_rng(3)
    gamma, b = 3.0, 2.0
    C, K = [], []
    for c in CS:
        true = psi(c, gamma, b)
        # seven looks per C, two of them off by +-2 at random: the truth stays the best odd k per C
        noise = [0] * 5 + list(rng.choice([-2, 2], size=2))
        C += [c] * 7
        K += [max(1, true + d) for d in noise]
    fit = fit_kmap(C, K, n_bootstrap=200)
    for rule in ("paper", "timm"):
        f = fit.psi[rule]
        assert f.loss > 0 and (gamma, b) in f.equal_loss
        assert not f.contains_paper and f.paper_loss > f.loss
    # a weight of zero silences a point entirely
    w = np.ones(len(C))
    f2 = fit_psi(C + [64], K + [15], np.append(w, 0.0))
    assert f2.loss == fit.psi["paper"].loss and f2.equal_loss == fit.psi["paper"].equal_loss


def test_timm_rule_differs_where_k_below_3():
    k = [psi(c, 4.0, 0.0, "paper") for c in CS]  # contains k = 1 for small C
    assert min(k) == 1
    assert (4.0, 0.0) in fit_psi(CS, k, rule="paper").equal_loss
    assert fit_psi(CS, k, rule="timm").loss > 0  # timm's floor of 3 cannot produce k = 1


def test_continuous_fit_interval_covers_truth():
    alpha, beta = 0.5, 0.5  # gamma = 2, b = 1
    C = np.repeat(CS, 3)
    covered = np.zeros(4)
    n = 80
    for seed in range(n):  # a 95% interval should cover the truth in about 95% of data sets
        rng = np.random.default_rng(seed)
        k = alpha * np.log2(C) + beta + rng.normal(0, 0.3, len(C))
        f = fit_continuous(C, k, n_bootstrap=200, seed=seed)
        covered += [f.alpha_ci[0] <= alpha <= f.alpha_ci[1], f.beta_ci[0] <= beta <= f.beta_ci[1],
                    f.gamma_ci[0] <= 2.0 <= f.gamma_ci[1], f.b_ci[0] <= 1.0 <= f.b_ci[1]]
        assert f.alpha_ci[1] - f.alpha_ci[0] < 0.1  # informative, not vacuous
        assert abs(f.gamma - 1 / f.alpha) < 1e-12 and abs(f.b - f.beta / f.alpha) < 1e-12
    assert (covered / n >= 0.85).all(), covered / n
    # noise-free points: a point interval at the truth
    exact = fit_continuous(CS, alpha * np.log2(CS) + beta, n_bootstrap=50)
    assert exact.alpha_ci == pytest.approx((alpha, alpha)) and exact.b_ci == pytest.approx((1.0, 1.0))
    # the linear-in-C baseline fits log-shaped data worse
    assert fit_linear(C, alpha * np.log2(C) + beta).loss > 0.1


def test_fit_input_errors():
    with pytest.raises(ValueError, match="C: must be integers >= 1"):
        fit_psi([0, 64], [3, 3])
    with pytest.raises(ValueError, match="same length"):
        fit_psi([64, 128], [3])
    with pytest.raises(ValueError, match="rule: must be one of"):
        fit_psi([64], [3], rule="odd")
    with pytest.raises(ValueError, match="two distinct C"):
        fit_continuous([64, 64], [3, 5])
    one = fit_kmap([64, 64], [3, 3])
    assert one.continuous is None and one.notes


def test_k_effect_on_a_study_recovers_psi(demo_run):
    # the demo study plants k* = psi(C; 2, 1) with a quadratic loss of 0.3 points per odd step squared
    fr = analysis.load(demo_run)
    an = analysis.analyze_kmap(fr, seed=0)
    e = an.effect
    assert e.evidence and e.p_value <= 0.001 and e.model.f_p < 1e-6 and e.verdict().startswith("Evidence that k matters")
    tab = e.table
    assert tab["C"].tolist() == [64, 128, 256, 512, 1024, 2048, 4096]
    truth = [psi(int(c), 2, 1) for c in tab["C"]]
    assert tab["k_star"].tolist() == truth
    assert ((tab["k_lo"] <= truth) & (np.array(truth) <= tab["k_hi"])).all()
    # pruned trials enter with their value at the last epoch all trials ran; failed ones are counted out
    assert e.model.data.epoch == 1 and e.n_trials == 120 + 24 + 10 and e.model.data.excluded == {"failed": 3}
    # the paper's psi is the truth: it loses nothing, k=3 loses more than the released k
    m = an.mappings.set_index("mapping")
    assert m.loc["paper_psi", "regret"] == pytest.approx(0, abs=1e-9)
    assert m.loc["k3", "regret"] > m.loc["released", "regret"] > 0.5 and m.loc["k3", "vs_paper_hi"] < 0
    assert an.fitted.contains_paper and an.fitted.candidates > 1 and an.fitted.critical > 1.96
    out = an.to_dict()
    for key in ("evidence", "p_value", "method", "effect_pts", "sigma_seed", "n_trials"):
        assert key in out["k_effect"]


def test_k_effect_needs_eca_trials_and_enough_configurations(make_study):
    fr = analysis.load(make_study("few", n_eca=0, n_psi=0, n_se=3, n_none=3, n_pruned=0, n_failed=0))
    with pytest.raises(ValueError, match="no trial with 'eca' attention"):
        analysis.k_effect(fr)
    fr = analysis.load(make_study("small", n_eca=12, n_psi=0, n_se=0, n_none=0, n_pruned=0, n_failed=0))
    with pytest.raises(ValueError, match="parameters .* but the study has only 12 configurations"):
        analysis.k_effect(fr)
    with pytest.raises(ValueError, match="alpha: must be in"):
        analysis.k_effect(fr, alpha=1.5)


def test_gamma_b_plane(demo_run):
    fr = analysis.load(demo_run)
    plane = analysis.gamma_b_plane(fr)
    assert plane["n"].sum() == 24  # the psi trials, sampled on a grid: one cell per grid point
    best = plane.loc[plane["mean_top1"].idxmax()]
    assert (best["gamma"], best["b"]) == (2.0, 1.0)  # the demo study's truth
    assert ((plane["gamma_lo"] < plane["gamma"]) & (plane["gamma"] < plane["gamma_hi"])).all()
    several = plane[plane["n"] >= 2]  # each cell's mean inside its t interval; a cell of one trial has none
    assert len(several) and ((several["mean_lo"] < several["mean_top1"]) & (several["mean_top1"] < several["mean_hi"])).all()
    assert plane.loc[plane["n"] < 2, ["mean_lo", "mean_hi"]].isna().all().all()
    # sampled continuously: equal-width bins that hold every trial once
    rng = np.random.default_rng(0)
    t = fr.trials.copy()
    m = t["gamma"].notna()
    t.loc[m, "gamma"], t.loc[m, "b"] = rng.uniform(1, 4, m.sum()), rng.uniform(0, 4, m.sum())
    cont = analysis.gamma_b_plane(dataclasses.replace(fr, trials=t), bins=3)
    assert cont["n"].sum() == 24 and len(cont) <= 9
    widths = (cont["gamma_hi"] - cont["gamma_lo"]).round(9)
    assert widths.nunique() == 1


def test_cli_points_json_and_table(tmp_path, capsys):
    pts = tmp_path / "pts.csv"
    rows = ["C,k,weight"] + [f"{c},{psi(c, 2, 1)},1" for c in CS]
    pts.write_text("\n".join(rows) + "\n")
    assert kmap_main(["--points", str(pts), "--json", "--bootstrap", "50"]) == 0
    out = json.loads(capsys.readouterr().out)
    for key in ("gamma", "b", "rounding", "loss", "paper_loss", "alpha", "beta", "equal_loss_set", "fits"):
        assert key in out
    assert out["rounding"] == "paper" and out["loss"] == 0 and out["paper_loss"] == 0 and [2.0, 1.0] in out["equal_loss_set"]
    assert set(out["fits"]) == {"psi_paper", "psi_timm", "continuous", "linear"}
    assert kmap_main(["--points", str(pts), "--bootstrap", "20"]) == 0
    text = capsys.readouterr().out
    assert "psi (paper)" in text and "continuous" in text and "linear in C" in text and "is among them" in text


def test_cli_errors_are_one_line(tmp_path, capsys):
    from study.cli import run_cli

    bad = tmp_path / "bad.csv"
    bad.write_text("C,kk\n64,3\n")
    text = tmp_path / "text.csv"
    text.write_text("C,k\n64,three\n")
    for args, msg in ((["--points", str(bad)], "missing column 'k'"),
                      (["--points", str(text)], "line 2: expected numbers"),
                      (["--points", str(tmp_path / "none.csv")], "cannot read points"),
                      (["--points", str(bad), str(tmp_path)], "give exactly one of"),
                      ([str(tmp_path / "no-run")], "does not exist")):
        with pytest.raises(SystemExit) as exc:
            run_cli(kmap_main, args, prog="python -m analysis.kmap")
        assert exc.value.code == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("python -m analysis.kmap: error:") and msg in err[0], err
    # and through the module entry point
    r = subprocess.run([sys.executable, "-m", "analysis.kmap", "--points", str(bad)], capture_output=True, text=True)
    expected = f"python -m analysis.kmap: error: {bad}: missing column 'k' (header: C, kk)"
    assert r.returncode == 2 and r.stderr.strip().splitlines() == [expected]


def test_plots_of_a_study_and_of_points(demo_run):
    an = analysis.analyze_kmap(analysis.load(demo_run))
    for fig in (analysis.plot_kmap(an), analysis.plot_kmap_curves(an)):
        assert fig.axes[0].get_legend() is not None and "k matters" in fig.axes[0].get_title()
    fit = fit_kmap(CS, [psi(c, 2, 1) for c in CS], n_bootstrap=10)
    assert "error in k" in analysis.plot_kmap(fit).axes[0].get_title()


def test_continuous_fit_interval_of_gamma_when_k_falls_with_C():
    # alpha < 0 throughout its interval: gamma = 1/alpha and b = beta/alpha stay bounded (negative gamma)
    f = fit_continuous(CS, -0.5 * np.log2(CS) + 8, n_bootstrap=50)
    assert f.gamma_ci == pytest.approx((-2.0, -2.0)) and f.b_ci == pytest.approx((-16.0, -16.0))
