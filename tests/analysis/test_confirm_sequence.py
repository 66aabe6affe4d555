"""The sequential confirmation's statistics: confidence sequences that hold at every round
at once (checked by simulation, so they can fail), the decision rule on known differences,
the plan's runs and power, the fixed-size design it is compared with."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from analysis.confirm import (
    Rule,
    cs_radius_t,
    decide,
    e_value,
    fixed_power,
    fixed_size,
    plan_confirmation,
    running_bounds,
    simulate_rounds,
    tune_g,
)
from study.validate import ConfigError


def test_the_sequence_holds_at_every_round_at_once():
    """Optional stopping: the share of 600 sequences of 150 Gaussian differences whose
    interval misses the mean at any round stays below alpha (a fixed-size t interval
    checked at every round would miss far more often: shown beside it)."""
    from scipy import stats

    rng = np.random.default_rng(3)
    alpha, g, mu = 0.05, tune_g(30, 0.05), 0.4
    miss_cs = miss_t = 0
    for _ in range(600):
        x = rng.normal(mu, 1.3, 150)
        b = running_bounds(x, g, alpha)
        miss_cs += bool(((b.lo > mu) | (b.hi < mu)).any())
        n = np.arange(2, 151)
        m = np.cumsum(x)[1:] / n
        s = np.array([x[:k].std(ddof=1) for k in n])
        half = stats.t.ppf(1 - alpha / 2, n - 1) * s / np.sqrt(n)
        miss_t += bool((np.abs(m - mu) > half).any())
    assert miss_cs / 600 <= alpha  # the bound holds with room: 0.05 + nothing
    assert miss_t / 600 > 2 * alpha  # peeking at a fixed-size interval does not


def test_the_closed_form_bound_is_where_the_e_value_crosses_one_over_alpha():
    rng = np.random.default_rng(4)
    x = rng.normal(0.2, 1.0, 25)
    g, alpha = 0.3, 0.01
    half = cs_radius_t(len(x), g, alpha) * x.std(ddof=1) / math.sqrt(len(x))
    for edge in (x.mean() - half, x.mean() + half):
        assert e_value(x, edge, g) == pytest.approx(1 / alpha, rel=1e-6)
    assert e_value(x, x.mean(), g) < 1  # the mean itself is never rejected
    assert cs_radius_t(1, g, alpha) == math.inf


def _pairs(diffs: dict[str, float], rounds: int, sd: float, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame([{"arm": a, "round": r, "d": mu + rng.normal(0, sd)} for r in range(rounds) for a, mu in diffs.items()])


def test_an_arm_that_beats_is_claimed_and_stops_and_equal_arms_are_equivalent():
    rule = Rule(delta=0.3, arms=("k3", "k5", "timm_rule", "fitted_psi"), widths=(0.25, 0.5, 1.0), budget=5000, sigma=0.6,
                identical=("timm_rule",), same_as={"fitted_psi": "k3"})
    dec = decide(_pairs({"k3": 0.8, "k5": 0.0}, 300, 0.6), rule, runs=900)
    by = {a.arm: a for a in dec.arms}
    assert by["k3"].claim == "beats" and by["k3"].decided_at < 60 and by["k3"].lo > 0
    assert by["k5"].claim == "equivalent" and -0.3 < by["k5"].lo and by["k5"].hi < 0.3
    assert by["timm_rule"].claim == "equivalent" and by["timm_rule"].pairs == 0 and "same networks" in by["timm_rule"].note
    assert by["fitted_psi"].claim == "beats" and "same networks as k3" in by["fitted_psi"].note
    assert rule.level == pytest.approx(0.025)  # Bonferroni over the two arms actually tested
    assert rule.bounds.test.level == pytest.approx(0.0125) and rule.bounds.equivalence.level == pytest.approx(0.025)
    text = dec.sentence()
    assert text.startswith("k3 beats the paper's psi by ") and "within 0.3 points" in text
    d = dec.to_dict()
    assert set(d) >= {"decision", "delta", "alpha", "runs", "stopped", "claims"}
    assert {c["arm"] for c in d["claims"]} == {"k3", "k5", "timm_rule", "fitted_psi"}
    assert all(set(c) >= {"arm", "claim", "diff", "lo", "hi", "pairs"} for c in d["claims"])


def test_undecided_arms_say_what_budget_would_decide_them():
    rule = Rule(delta=0.3, arms=("k3",), widths=(1.0,), budget=40, sigma=0.6)
    dec = decide(_pairs({"k3": 0.0}, 8, 0.6, seed=1), rule, runs=16, stopped="budget spent")
    assert dec.arms[0].claim == "undecided" and dec.undecided == ("k3",)
    assert dec.extra_runs and dec.extra_runs > 0 and f"about {dec.extra_runs} more runs" in dec.sentence()


def test_a_rule_refuses_what_it_cannot_decide():
    for kw, field in (({"delta": 0}, "delta"), ({"arms": ()}, "arms"), ({"arms": ("paper_psi",)}, "arms"), ({"alpha": 0.9}, "alpha"),
                      ({"budget": 0}, "budget"), ({"widths": ()}, "widths"), ({"sigma": 0}, "sigma"), ({"method": "sprt"}, "method")):
        args = {"delta": 0.3, "arms": ("k3",), "widths": (1.0,), "budget": 10, "sigma": 0.5, **kw}
        with pytest.raises(ConfigError) as info:
            Rule(**args)
        assert info.value.field == field


def test_the_fixed_size_design_has_the_power_it_claims():
    rng = np.random.default_rng(5)
    from scipy import stats

    n = fixed_size([0.0, 0.0], 0.8, 0.3, 0.05)
    a = 0.05 / 2
    x = rng.normal(0, 0.8, (3000, n))
    m, s = x.mean(1), x.std(1, ddof=1)
    q = stats.t.ppf(1 - a, n - 1)
    assert abs(((np.abs(m) + q * s / math.sqrt(n)) < 0.3).mean() - fixed_power(n, 0.0, 0.8, 0.3, a)) < 0.03
    assert fixed_power(n, 0.0, 0.8, 0.3, a) >= 0.8 > fixed_power(n - 1, 0.0, 0.8, 0.3, a) - 0.02


def test_the_plan_and_the_simulated_rule_agree():
    plan = plan_confirmation(arms=3, widths=2, sigma_d=0.6, delta=0.3, reps=200)
    assert plan.power["equal"] >= 0.8 and plan.power["beats"] >= 0.8
    assert plan.runs_mean["beats"] <= plan.runs_mean["equal"] <= plan.runs_p95["equal"] <= plan.budget + 1
    rule = Rule(delta=0.3, arms=("a", "b", "c"), widths=(0.5, 1.0), budget=plan.budget, sigma=0.6)
    sim = simulate_rounds([0.6, 0.0, 0.0], 0.6, rule=rule, reps=200)
    assert (sim["runs"] <= plan.budget).all()
    assert (sim["claim"][:, 0] == 0).mean() > 0.9  # the arm 2 x delta better is claimed to beat
    assert (sim["claim"][:, 1:] == 2).mean() > 0.8  # the equal ones equivalent
    assert (sim["claim"] == 1).mean() < 0.02  # nothing that is not worse is called worse
    assert any("fixed-size design" in line for line in plan.lines())


def test_one_sided_sequences_keep_their_levels_at_the_margin():
    """At the margin (true difference = delta) a false "equivalent" stays under alpha / arms,
    and where arms are equal false "beats" and "loses" stay under alpha / (2 arms) each."""
    rule = Rule(delta=0.3, arms=("a", "b", "c", "d"), widths=(1.0,), budget=3000, sigma=0.7)
    at_margin = simulate_rounds([0.3] * 4, 0.7, rule=rule, reps=1500, seed=7)["claim"]
    assert (at_margin == 2).mean() <= rule.level + 0.006
    equal = simulate_rounds([0.0] * 4, 0.7, rule=rule, reps=1500, seed=8)["claim"]
    assert (equal == 0).mean() <= rule.level / 2 + 0.004 and (equal == 1).mean() <= rule.level / 2 + 0.004
