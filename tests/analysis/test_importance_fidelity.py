"""Parameter importance, learning curves and proxy fidelity."""

from __future__ import annotations

import dataclasses
import math

import pytest

import analysis


def test_param_importances_by_branch_with_a_noise_test(demo_run):
    imp = analysis.param_importances(analysis.load(demo_run))
    assert "validation top-1 at epoch 1" in imp.attrs["response"]  # the epoch every finished trial reached
    ranked = imp.dropna(subset=["importance"])
    # every trial has width and attention; the conditional parameters are ranked in their own branch
    assert set(ranked.loc[ranked["branch"] == "all", "param"]) == {"width", "attention"}
    k_branch = ranked[ranked["branch"] == "{stage0_k, stage1_k, stage2_k, stage3_k}"]
    assert set(k_branch["param"]) == {"width", "attention", "stage0_k", "stage1_k", "stage2_k", "stage3_k"}
    assert k_branch["n"].iloc[0] == 130  # 120 complete + 10 pruned fixed-k trials
    for _, g in ranked.groupby("branch"):
        assert g["importance"].sum() == pytest.approx(1.0) and g["importance"].is_monotonic_decreasing
    # the planted effects (width, k) are distinguishable from noise
    assert k_branch.set_index("param").loc["stage0_k", "significant"] and k_branch.set_index("param").loc["width", "significant"]
    # a branch below the minimum is listed, not ranked
    small = imp[imp["branch"] == "{se_r}"]
    assert small["importance"].isna().all() and "not ranked: 12 trials < 20" in small["note"].iloc[0]


def test_importance_refuses_too_few_trials(make_study):
    fr = analysis.load(make_study("tiny", n_eca=2, n_psi=0, n_se=1, n_none=0, n_pruned=1, n_failed=1))
    with pytest.raises(ValueError, match="needs at least 20 finished trials sharing their sampled parameters .* the largest branch has 4"):
        analysis.param_importances(fr)
    with pytest.raises(ValueError, match="evaluator: must be one of"):
        analysis.param_importances(fr, evaluator="shap", min_trials=3)


def test_importance_of_noise_is_not_significant(make_study):
    # no planted effect of k (lam=0) and no width effect visible through a constant transform
    fr = analysis.load(make_study("noise", n_eca=40, n_psi=0, n_se=0, n_none=0, n_pruned=0, n_failed=0, lam=0.0, noise=1.0,
                                  transform=lambda x: 60.0))
    imp = analysis.param_importances(fr)
    assert not imp["significant"].any()


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
    for res in (good, bad):  # each correlation inside its interval, the interval inside [-1, 1]
        (tlo, thi), (rlo, rhi) = res.kendall_ci, res.spearman_ci
        assert -1 <= tlo < res.kendall_tau < thi <= 1 and -1 <= rlo < res.spearman_rho < rhi <= 1
    assert good.verdict().startswith("The two rank the configurations alike") and "in opposite orders" in bad.verdict()
    # a weak correlation over few configurations: no evidence, and an interval that covers 0
    weak = dataclasses.replace(good, pairs=good.pairs.head(8), kendall_tau=0.14, kendall_p=0.72)
    lo, hi = weak.kendall_ci
    assert lo < 0 < hi and weak.verdict().startswith("No evidence that the two rank the configurations alike")
    assert all(math.isnan(x) for x in dataclasses.replace(good, pairs=good.pairs.head(4)).kendall_ci)
    other = analysis.load(make_study("other", n_eca=6, n_psi=0, n_se=0, n_none=0, n_pruned=0, n_failed=0, seed=1234))
    with pytest.raises(ValueError, match="needs at least 3 configurations present in both studies"):
        analysis.fidelity(a, other)


def test_importance_of_a_maximized_objective_in_a_multi_objective_study(make_study):
    # the same trials in a single- and a two-objective study: top-1's importance must agree
    # (Optuna's default evaluator treats a target as minimized unless told otherwise)
    kw = dict(n_eca=40, n_psi=20, n_se=20, n_none=20, n_pruned=0, n_failed=0)
    single = analysis.param_importances(analysis.load(make_study("single", **kw)))
    multi = analysis.param_importances(analysis.load(make_study("multi", objectives=("top1", "params"), **kw)))
    key = ["branch", "param"]
    assert single.set_index(key)["importance"].to_dict() == pytest.approx(multi.set_index(key)["importance"].to_dict(), nan_ok=True)


def test_fidelity_against_full_training_runs(tmp_path, capsys, tiny_flags):
    """A real study, its exports trained with study.train, and the report closing the loop."""
    from runners.cli import main as run_main
    from study.train import main as train_main

    assert run_main(["--space", "eca_kmap", "--runner", "local", "--name", "proxy", "--trials", "4", "--epochs", "1",
                     "--pruner", "none", "--out", str(tmp_path), "--quiet", *tiny_flags]) == 0
    run = tmp_path / "proxy"
    index = analysis.export_trials(analysis.load(run), run / "export", top=3, num_classes=10, resolution=16, data=None)
    trained = tmp_path / "train"
    for e in index:
        assert train_main(["--config", str(run / "export" / e["file"]), "--epochs", "1", "--out", str(trained / e["file"][:-5])]) == 0
    capsys.readouterr()
    frames = analysis.load_trained(trained)
    assert len(frames.trials) == 3 and (frames.trials["state"] == "complete").all()
    assert frames.trials["config"].map(lambda c: c["arch"]["stem"]).eq("imagenet").all()  # export switched the stem
    res = analysis.fidelity(analysis.load(run), frames, key="net")
    assert res.n == 3 and -1 <= res.kendall_tau <= 1
    with pytest.raises(ValueError, match="needs at least 3 configurations"):
        analysis.fidelity(analysis.load(run), frames, key="arch")  # the stems differ: nothing matches by architecture
    from analysis._report import main as report_main

    assert report_main([str(run), "--out", str(tmp_path / "report"), "--compare", str(trained)]) == 0
    md = (tmp_path / "report" / "report.md").read_text()
    assert "Against `train` (full-training runs, matched by network (backbone, width, attention per stage)): 3 common configurations" in md
