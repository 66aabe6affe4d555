"""Plans for a sequential confirmation, before any compute is spent: how many runs it takes
to a decision, the power at a budget, and the fidelity that decides cheapest.

A confirmation's rounds are simulated where they are cheap - as Gaussian paired differences
with the noise the pilot measured (the paired differences of common-random-number arms) -
through the very decision rule the study will use (:func:`analysis.confirm.decide`'s
sequences and stopping), for two truths: every arm equal to the paper's psi (the equivalence
must be shown) and one arm that beats it by 2 x delta (the other arms equal). A fidelity (more
images, more epochs) lowers the noise of a paired difference and raises the cost of a run;
the plan takes the one with the least expected time to a decision.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from analysis.confirm._decision import Rule
from analysis.confirm._sequence import claim_paths, fixed_size
from study.validate import ConfigError

__all__ = ["ConfirmPlan", "Fidelity", "choose_fidelity", "plan_confirmation", "simulate_rounds"]


def simulate_rounds(diffs: Sequence[float], sigma_d: float, *, rule: Rule, max_runs: int | None = None, reps: int = 400,
                    seed: int = 0) -> dict[str, np.ndarray]:
    """``reps`` confirmations of arms with true differences ``diffs`` (top-1 per network, one
    per tested arm of ``rule``) and paired differences of standard deviation ``sigma_d``,
    decided exactly as :func:`analysis.confirm.decide` decides (``rule``'s sequences; the
    first round that decides an arm stops it) until every arm is decided or the next round
    would pass ``max_runs`` (default the rule's budget; a round costs (active arms + 1) x
    widths). Each round's arm differences share the reference's noise (half of the
    variance, as two runs of equal noise give). Returns per repetition ``runs``, and per
    repetition and arm ``claim`` (0 beats, 1 loses, 2 equivalent, 3 undecided) and ``pairs``."""
    m = len(diffs)
    if m == 0:
        raise ConfigError("arms", "a plan needs at least one arm")
    widths = len(rule.widths)
    max_runs = rule.budget if max_runs is None else max_runs
    max_rounds = max(2, max_runs // (2 * widths))  # a round costs at least one arm and the reference
    rng = np.random.default_rng(seed)
    sig = sigma_d / math.sqrt(2)
    ref = rng.normal(0, sig, (reps, 1, max_rounds))
    x = np.asarray(diffs, float)[None, :, None] + rng.normal(0, sig, (reps, m, max_rounds)) - ref
    p = claim_paths(x, rule.bounds, max_rounds)
    code = np.full(x.shape, 3)
    code = np.where((p["eq_lo"] > -rule.delta) & (p["eq_hi"] < rule.delta), 2, code)
    code = np.where(p["test_hi"] < 0, 1, code)
    code = np.where(p["test_lo"] > 0, 0, code)
    decided = code < 3
    first = np.where(decided.any(axis=2), decided.argmax(axis=2) + 1, max_rounds + 1)  # the pairs each arm needs, unlimited
    k = np.arange(1, max_rounds + 1)
    active = (first[:, :, None] >= k[None, None, :]).sum(axis=1)  # arms still running in round k
    spent = np.cumsum((active + 1) * widths * (active > 0), axis=1)
    last = ((spent <= max_runs) & (active > 0)).sum(axis=1)  # rounds run: until every arm decided or the budget
    runs = np.where(last > 0, spent[np.arange(reps), np.maximum(last - 1, 0)], 0)
    within = first <= last[:, None]
    at = np.clip(first - 1, 0, max_rounds - 1)
    claim = np.where(within, np.take_along_axis(code, at[:, :, None], axis=2)[:, :, 0], 3)
    pairs = np.where(within, first, last[:, None])
    return {"runs": runs, "claim": claim, "pairs": pairs}


@dataclass(frozen=True)
class ConfirmPlan:
    """What a confirmation needs: for ``arms`` tested arms (plus ``identical`` ones that need
    no runs) at ``widths`` widths, paired differences of ``sigma_d`` points and margin
    ``delta``: how its sequences are built (``method``); per truth (``equal``: every arm equal to the
    paper's psi; ``beats``: one arm beats it by 2 x delta) the mean and 95th-percentile runs to
    a decision with no budget limit, and the power at ``budget`` (the share of arms with a
    correct claim within it); ``fixed_runs``: the runs a fixed-size design with the same
    error rates and power 0.8 needs for each truth; ``budget``: the budget given, or the
    default one (the 95th percentile of the equal truth, which nothing can end early)."""

    arms: int
    widths: int
    sigma_d: float
    delta: float
    alpha: float
    method: str
    budget: int
    runs_mean: dict[str, float]
    runs_p95: dict[str, float]
    power: dict[str, float]
    fixed_runs: dict[str, int]

    def lines(self) -> list[str]:
        out = [f"confirmation plan: {self.arms} arms against the paper's psi at {self.widths} widths, paired differences of "
               f"{self.sigma_d:.2f} points, margin {self.delta:g}, alpha {self.alpha:g} (Bonferroni), {self.method} sequences"]
        for truth, words in (("equal", "every arm equal to the paper's psi"), ("beats", f"one arm beats it by {2 * self.delta:g}")):
            out.append(f"  {words}: {self.runs_mean[truth]:.0f} runs to a decision on average, {self.runs_p95[truth]:.0f} at the "
                       f"95th percentile (a fixed-size design: {self.fixed_runs[truth]}); power within {self.budget} runs "
                       f"{self.power[truth]:.2f}")
        return out

    def to_dict(self) -> dict[str, object]:
        return {"arms": self.arms, "widths": self.widths, "sigma_d": self.sigma_d, "delta": self.delta, "alpha": self.alpha,
                "method": self.method, "budget": self.budget, "runs_mean": self.runs_mean, "runs_p95": self.runs_p95, "power": self.power,
                "fixed_runs": self.fixed_runs}


def _correct(claim: np.ndarray, diffs: Sequence[float], delta: float) -> np.ndarray:
    d = np.asarray(diffs, float)[None, :]
    ok = np.zeros(claim.shape, bool)
    ok |= (claim == 0) & (d > 0)
    ok |= (claim == 1) & (d < 0)
    ok |= (claim == 2) & (np.abs(d) < delta)
    return ok


def plan_confirmation(*, arms: int, widths: int, sigma_d: float, delta: float, alpha: float = 0.05, budget: int | None = None,
                      method: str = "one_sided", reps: int = 400, seed: int = 0) -> ConfirmPlan:
    """Plan a confirmation (see the module doc and :class:`ConfirmPlan`): its rule's
    sequences simulated for both truths with no budget limit (runs to a decision), then at
    the budget (power)."""
    if not sigma_d > 0:
        raise ConfigError("sigma", f"the noise of a paired difference must be > 0, got {sigma_d!r}")
    truths = {"equal": [0.0] * arms, "beats": [2 * delta] + [0.0] * (arms - 1)}
    fixed = {name: fixed_size(d, sigma_d, delta, alpha) for name, d in truths.items()}
    names = tuple(f"arm{i}" for i in range(arms))
    free = 2 * widths * 8 * fixed["equal"]  # room for eight times the fixed design's pairs: every arm decides within it
    rule = Rule(delta=delta, arms=names, widths=tuple(range(1, widths + 1)), budget=free, sigma=sigma_d, alpha=alpha, method=method)
    sims = {name: simulate_rounds(d, sigma_d, rule=rule, reps=reps, seed=seed) for name, d in truths.items()}
    mean = {k: float(v["runs"].mean()) for k, v in sims.items()}
    p95 = {k: float(np.percentile(v["runs"], 95)) for k, v in sims.items()}
    if budget is None:
        budget = int(math.ceil(p95["equal"]))
    power = {}
    for name, d in truths.items():
        at = simulate_rounds(d, sigma_d, rule=rule, max_runs=budget, reps=reps, seed=seed + 1)
        power[name] = float(_correct(at["claim"], d, delta).mean())
    fixed_runs = {k: (arms + 1) * widths * n for k, n in fixed.items()}
    return ConfirmPlan(arms, widths, sigma_d, delta, alpha, method, int(budget), mean, p95, power, fixed_runs)


@dataclass(frozen=True)
class Fidelity:
    """One proxy fidelity a pilot measured: its ``name``, the noise of a paired difference
    ``sigma_d`` (points, with ``df`` degrees of freedom) and the seconds a run takes."""

    name: str
    sigma_d: float
    seconds: float
    df: int = 0  # the degrees of freedom of sigma_d


def choose_fidelity(fidelities: Sequence[Fidelity], *, arms: int, widths: int, delta: float, alpha: float = 0.05,
                    reps: int = 200, seed: int = 0) -> tuple[Fidelity, dict[str, ConfirmPlan], str]:
    """The fidelity with the least expected time to a decision (every arm equal: the longest
    case), with each one's plan and the reason in words."""
    if not fidelities:
        raise ConfigError("fidelities", "the pilot measured no fidelity")
    plans = {f.name: plan_confirmation(arms=arms, widths=widths, sigma_d=f.sigma_d, delta=delta, alpha=alpha, reps=reps, seed=seed)
             for f in fidelities}
    hours = {f.name: plans[f.name].runs_mean["equal"] * f.seconds / 3600 for f in fidelities}
    best = min(fidelities, key=lambda f: hours[f.name])
    why = "; ".join(f"{f.name}: noise {f.sigma_d:.2f} points, {f.seconds:.0f} s a run, {plans[f.name].runs_mean['equal']:.0f} runs "
                    f"-> {hours[f.name]:.2f} h expected" for f in fidelities)
    return best, plans, f"{best.name} decides cheapest ({why})"
