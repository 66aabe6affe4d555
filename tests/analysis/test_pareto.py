"""Pareto fronts (against brute force, with ties), hypervolume, attention cost vs gain."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

import analysis
from analysis import hypervolume, non_dominated


def _brute(P, maximize):
    sign = np.where(maximize, -1.0, 1.0)
    Q = P * sign
    out = []
    for i, a in enumerate(Q):
        dominated = any(np.all(b <= a) and np.any(b < a) for j, b in enumerate(Q) if j != i)
        out.append(not dominated)
    return np.array(out)


@pytest.mark.parametrize("seed", range(6))
def test_front_equals_brute_force_with_ties(seed):
    rng = np.random.default_rng(seed)
    n, d = 60 + 20 * seed, 2 + seed % 2
    P = rng.integers(0, 8, size=(n, d)).astype(float)  # few values: many ties and duplicates
    P[: n // 4] = P[n // 4: n // 2]  # exact duplicate points
    maximize = [bool(j % 2) for j in range(d)]
    mask = non_dominated(P, maximize=maximize, chunk=17)
    assert mask.tolist() == _brute(P, np.array(maximize)).tolist()
    # equal points share their fate: both on the front or both off it
    for i, j in itertools.combinations(range(n), 2):
        if np.array_equal(P[i], P[j]):
            assert mask[i] == mask[j]


def test_front_ignores_nan_rows():
    P = np.array([[1.0, 1.0], [np.nan, 0.0], [2.0, 2.0], [0.5, np.nan]])
    assert non_dominated(P).tolist() == [True, False, False, False]
    with pytest.raises(ValueError, match="maximize: expected 2 flags"):
        non_dominated(P, maximize=[True])


def test_hypervolume_by_hand():
    # cost minimized, top-1 maximized; reference (10, 0)
    assert hypervolume([2], [50], reference=(10, 0)) == pytest.approx(8 * 50)
    # two steps: [2,5) x 50 and [5,10) x 70 -> 3*50 + 5*70
    assert hypervolume([2, 5], [50, 70], reference=(10, 0)) == pytest.approx(150 + 350)
    # dominated and out-of-box points add nothing; duplicates neither
    assert hypervolume([2, 5, 6, 5, 12], [50, 70, 60, 70, 99], reference=(10, 0)) == pytest.approx(500)
    assert hypervolume([], [], reference=(10, 0)) == 0.0


def test_pareto_front_on_study(demo_run):
    fr = analysis.load(demo_run)
    for cost, col in (("params", "params"), ("macs", "macs"), ("latency", "latency_ms")):
        front = analysis.pareto_front(fr, cost=cost)
        done = fr.complete
        expect = done[non_dominated(np.c_[done[col], done["top1"]], maximize=[False, True])]
        assert sorted(front["number"]) == sorted(expect["number"])
        assert front[col].is_monotonic_increasing and front["top1"].is_monotonic_increasing
    with pytest.raises(ValueError, match="cost: must be one of"):
        analysis.pareto_front(fr, cost="flops")


def test_front_hypervolumes_share_a_reference(demo_run, make_study):
    a = analysis.load(demo_run)
    worse = analysis.load(make_study("worse", n_eca=30, n_psi=0, n_se=4, n_none=4, n_pruned=0, n_failed=0, transform=lambda x: x - 5))
    hv = analysis.front_hypervolumes({"a": a, "worse": worse})
    assert hv["ref_cost"].nunique() == 1 and hv["ref_top1"].eq(0).all()
    ref = hv["ref_cost"].iloc[0]
    assert ref == pytest.approx(1.1 * max(a.complete["params"].max(), worse.complete["params"].max()))
    got = hv.set_index("study")["hypervolume"]
    assert got["a"] > got["worse"] > 0
    front = analysis.pareto_front(a)
    assert got["a"] == pytest.approx(hypervolume(front["params"], front["top1"], reference=(ref, 0)))


def test_attention_gain(demo_run):
    g = analysis.attention_gain(analysis.load(demo_run))
    assert set(g["attention"]) == {"eca", "se", "none"}
    base = g[g["attention"] == "none"]
    assert (base["gain_mean"] == 0).all() and (base["added_params"] == 0).all()
    se = g[(g["attention"] == "se") & g["gain_mean"].notna()]
    # the demo's SE adds parameters and (r <= 16) top-1
    assert len(se) and (se["added_params"] > 0).all() and (se["gain_mean"] > 0).all()
    # widths without a none baseline get no gain
    no_base = set(g["width"]) - set(base["width"])
    assert g[g["width"].isin(no_base)]["gain_mean"].isna().all()
    # the gain of the mean carries its Welch interval where both sides have two trials
    tested = g[g["gain_lo"].notna()]
    assert len(tested) and ((tested["gain_lo"] < tested["gain_mean"]) & (tested["gain_mean"] < tested["gain_hi"])).all()
    assert base[["gain_lo", "gain_hi"]].isna().all().all()


def test_attention_gain_interval_is_welchs():
    import pandas as pd
    from scipy import stats

    from analysis._report import _gain_words

    se, none = [71.0, 73.0, 75.0], [70.0, 70.5]
    rows = [{"state": "complete", "top1": v, "backbone": "resnet18", "width": 0.5, "attention": "se", "params": 2.0, "macs": 2.0,
             "latency_ms": 1.0} for v in se]
    rows += [{"state": "complete", "top1": v, "backbone": "resnet18", "width": 0.5, "attention": "none", "params": 1.0, "macs": 1.0,
              "latency_ms": 1.0} for v in none]
    g = analysis.attention_gain(pd.DataFrame(rows)).set_index("attention")
    want = stats.ttest_ind(se, none, equal_var=False).confidence_interval(0.95)
    assert (g.loc["se", "gain_lo"], g.loc["se", "gain_hi"]) == pytest.approx((want.low, want.high))
    assert "No attention's gain over `none` is distinguishable from 0" in _gain_words(g.reset_index())
