"""Parameter importance, learning curves and proxy fidelity."""

from __future__ import annotations

import pytest

import analysis


def test_param_importances(demo_run):
    imp = analysis.param_importances(analysis.load(demo_run))
    assert set(imp["param"]) <= {"width", "attention", "stage0_k", "stage1_k", "stage2_k", "stage3_k", "se_r", "gamma", "b"}
    assert {"width", "attention"} <= set(imp["param"])
    assert imp["importance"].sum() == pytest.approx(1.0)
    assert imp["importance"].is_monotonic_decreasing


def test_importance_too_few_trials(make_study):
    fr = analysis.load(make_study("tiny", n_eca=2, n_psi=0, n_se=1, n_none=0, n_pruned=1, n_failed=1))
    with pytest.raises(ValueError, match="needs at least 5 complete trials with sampled parameters; the study has 3"):
        analysis.param_importances(fr)
    with pytest.raises(ValueError, match="evaluator: must be one of"):
        analysis.param_importances(fr, evaluator="shap", min_trials=2)


def test_learning_curves_mark_pruned(demo_run):
    lc = analysis.learning_curves(analysis.load(demo_run))
    per = lc.groupby("trial").agg(n=("epoch", "size"), state=("state", "first"))
    assert (per.loc[per["state"] == "pruned", "n"] < 4).all() and (per.loc[per["state"] == "complete", "n"] == 4).all()
    assert lc["attention"].notna().all()


def test_fidelity_rank_correlation(make_study):
    kw = dict(n_eca=14, n_psi=0, n_se=3, n_none=3, n_pruned=1, n_failed=1, seed=7)
    a = analysis.load(make_study("proxy", **kw))
    same = analysis.load(make_study("full", noise_seed=99, transform=lambda x: 0.5 * x + 30, **kw))
    flipped = analysis.load(make_study("flipped", noise_seed=98, transform=lambda x: 200 - x, **kw))
    good = analysis.fidelity(a, same)
    assert good.n == len(set(a.complete["key"]))  # matched by configuration, repeats averaged
    assert good.kendall_tau > 0.8 and good.spearman_rho > 0.9 and good.kendall_p < 1e-3
    bad = analysis.fidelity(a, flipped)
    assert bad.kendall_tau < -0.8 and bad.spearman_rho < -0.9
    assert good.to_dict()["a"] == "proxy" and good.to_dict()["b"] == "full"
    other = analysis.load(make_study("other", n_eca=6, n_psi=0, n_se=0, n_none=0, n_pruned=0, n_failed=0, seed=1234))
    with pytest.raises(ValueError, match="needs at least 3 configurations present in both studies"):
        analysis.fidelity(a, other)


def test_importance_of_a_maximized_objective_in_a_multi_objective_study(make_study):
    # the same trials in a single- and a two-objective study: top-1's importance must agree
    # (Optuna's default evaluator treats a target as minimized unless told otherwise)
    kw = dict(n_eca=40, n_psi=10, n_se=10, n_none=10, n_pruned=0, n_failed=0)
    single = analysis.param_importances(analysis.load(make_study("single", **kw)))
    multi = analysis.param_importances(analysis.load(make_study("multi", objectives=("top1", "params"), **kw)))
    assert single.set_index("param")["importance"].to_dict() == pytest.approx(multi.set_index("param")["importance"].to_dict())
