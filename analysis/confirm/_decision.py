"""The decision of a sequential confirmation: each arm against the paper's psi, from
confidence sequences that stay valid however often the study looks.

A confirmation trains, round after round, every arm still undecided and the paper's psi at
each of the design's widths, all from the round's one seed (common random numbers: the
networks of a round share their backbone weights, data order and augmentation). An arm's
paired difference in a round is its top-1 minus the paper's psi's, averaged over the widths:
one draw of the top-1 it gains per network. After every round each undecided arm's
confidence sequences (:mod:`analysis.confirm._sequence`; Bonferroni over the arms tested)
give one of

- ``beats``: its test sequence lies above 0; ``loses``: below 0 (each side at alpha / (2 arms));
- ``equivalent``: its equivalence sequences lie inside (-delta, +delta), the margin stated
  before the run (each side at alpha / arms: two one-sided tests, Schuirmann 1987);
- ``undecided``: none of these yet (the arm keeps running, or the budget ran out).

A decided arm stops: its claim is the one of the round that decided it. The rule - delta,
alpha, the arms, the widths, the budget and the sequence's prior scale - is stored in the
study's settings before any trial runs (:class:`Rule`), and the decision says what held.
Guarantees, each arm, whatever the stopping: P(false beats) and P(false loses) <= alpha /
(2 arms) each, P(equivalent while |true difference| >= delta) <= alpha / arms.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from analysis.confirm._sequence import METHODS, Bound, ClaimBounds, claim_paths, cs_radius_t, fixed_size, tune_g
from study.validate import ConfigError, check_choice, check_int, check_number

__all__ = ["CLAIMS", "REFERENCE", "ArmResult", "Decision", "Rule", "decide"]

#: the claims an arm can end with
CLAIMS = ("beats", "loses", "equivalent", "undecided")
#: the arm every other is compared with
REFERENCE = "paper_psi"


@dataclass(frozen=True, kw_only=True)
class Rule:
    """The decision rule of a confirmation, fixed before its first run.

    ``delta``: the equivalence margin (top-1 points per network); ``alpha``: the error rate
    shared by the ``arms`` (Bonferroni); ``widths``: the widths every round trains;
    ``budget``: the most runs (trainings) the confirmation may spend; ``sigma``: the planned
    standard deviation of a paired difference (from the pilot), which centres the sequences'
    priors (it sets where they are tightest, never their validity); ``method``: how the
    sequences are built (:data:`analysis.confirm.METHODS`); ``identical``: arms whose
    networks equal the paper's psi's at every width (equivalent by construction, never
    trained); ``same_as``: arm -> the arm whose networks it shares (trained once)."""

    delta: float
    arms: tuple[str, ...]
    widths: tuple[float, ...]
    budget: int
    sigma: float
    alpha: float = 0.05
    method: str = "one_sided"
    reference: str = REFERENCE
    identical: tuple[str, ...] = ()
    same_as: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        check_number(self.delta, "delta", 1e-9, 100.0, what="a margin of top-1 points in (0, 100]")
        check_number(self.alpha, "alpha", 1e-9, 0.5, what="a level in (0, 0.5]")
        check_number(self.sigma, "sigma", 1e-9, what="a standard deviation of a paired difference > 0")
        check_int(self.budget, "budget", 1)
        check_choice(self.method, "method", METHODS)
        if not self.arms:
            raise ConfigError("arms", "a confirmation needs at least one arm to compare with the paper's psi")
        if self.reference in self.arms:
            raise ConfigError("arms", f"the reference {self.reference!r} is not an arm of its own comparison")
        if not self.widths:
            raise ConfigError("widths", "a confirmation needs at least one width")
        object.__setattr__(self, "arms", tuple(str(a) for a in self.arms))
        object.__setattr__(self, "widths", tuple(float(w) for w in self.widths))
        object.__setattr__(self, "identical", tuple(str(a) for a in self.identical))
        object.__setattr__(self, "same_as", {str(k): str(v) for k, v in dict(self.same_as).items()})

    @property
    def tested(self) -> tuple[str, ...]:
        """The arms that are trained and tested (not identical to the reference, not sharing another's networks)."""
        return tuple(a for a in self.arms if a not in self.identical and a not in self.same_as)

    @property
    def level(self) -> float:
        """The two-sided level of each arm's beats/loses sequence: alpha / arms tested (Bonferroni)."""
        return self.alpha / max(len(self.tested), 1)

    @property
    def max_rounds(self) -> int:
        """The most rounds the budget allows (one arm and the reference a round)."""
        return max(2, self.budget // (2 * len(self.widths)))

    @property
    def bounds(self) -> ClaimBounds:
        """The sequences behind the claims (:class:`analysis.confirm.ClaimBounds`): beats and
        loses at alpha / (2 arms) a side with priors centred at 2 x delta, the equivalence at
        alpha / arms a side centred at delta (in planned standard deviations)."""
        lam_t, lam_e = 2 * self.delta / self.sigma, self.delta / self.sigma
        if self.method == "t_mixture":
            n = fixed_size([0.0] * max(len(self.tested), 1), self.sigma, self.delta, self.alpha)
            g = tune_g(n, self.level)
            return ClaimBounds("t_mixture", Bound(self.level / 2, 0.0, g), Bound(self.level / 2, 0.0, g))
        spread = lambda lam: float(min(max((lam / 4) ** 2, 1e-4), 1.0))
        return ClaimBounds("one_sided", Bound(self.level / 2, lam_t, spread(lam_t)), Bound(self.level, lam_e, spread(lam_e)))

    def round_runs(self, active: int) -> int:
        """The runs one round costs with ``active`` arms undecided (plus the paper's psi)."""
        return (active + 1) * len(self.widths)

    def text(self) -> str:
        """The rule in words, as the study stores it before its first run."""
        how = ("one-sided t-mixture confidence sequences" if self.method == "one_sided" else "a two-sided t-mixture confidence sequence")
        return (f"each arm against the paper's psi, top-1 per network averaged over widths {', '.join(f'{w:g}' for w in self.widths)}, "
                f"paired by seed (common random numbers); after every round, per arm, {how} (alpha {self.alpha:g} over "
                f"{len(self.tested)} arms, Bonferroni): beats when the lower bound passes 0, loses when the upper bound falls below "
                f"0 (each at {self.level / 2:.3g}), equivalent when both equivalence bounds lie inside +-{self.delta:g} points (each "
                f"at {self.level:.3g}); a decided arm stops; the confirmation ends when every arm is decided or {self.budget} runs "
                f"are spent")

    def to_dict(self) -> dict[str, Any]:
        return {"delta": self.delta, "alpha": self.alpha, "arms": list(self.arms), "widths": list(self.widths), "budget": self.budget,
                "sigma": self.sigma, "method": self.method, "reference": self.reference, "identical": list(self.identical),
                "same_as": dict(self.same_as), "multiplicity": "bonferroni", "text": self.text()}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Rule:
        keep = {"delta", "alpha", "arms", "widths", "budget", "sigma", "method", "reference", "identical", "same_as"}
        return cls(**{k: (tuple(v) if isinstance(v, list) else v) for k, v in d.items() if k in keep})


@dataclass(frozen=True)
class ArmResult:
    """One arm's outcome: its ``claim``, the mean paired difference ``diff`` and the
    sequence's ``lo``..``hi`` when it stopped, the ``pairs`` (rounds) it ran, the round that
    decided it (``decided_at``), the sequence after every round (``path``: n, mean, lo, hi)
    and the rounds it could not use (``failed``: a run of the pair failed or collapsed)."""

    arm: str
    claim: str
    diff: float
    lo: float
    hi: float
    pairs: int
    decided_at: int | None = None
    path: tuple[tuple[int, float, float, float], ...] = ()
    failed: int = 0
    note: str = ""
    sd: float = math.nan  # the standard deviation of its paired differences when it stopped

    def to_dict(self) -> dict[str, Any]:
        f = lambda v: v if isinstance(v, (int, str)) or v is None or math.isfinite(v) else None
        return {"arm": self.arm, "claim": self.claim, "diff": f(self.diff), "lo": f(self.lo), "hi": f(self.hi), "pairs": self.pairs,
                "decided_at": self.decided_at, "failed": self.failed, "note": self.note, "sd": f(self.sd),
                "path": [[n, f(m), f(lo), f(hi)] for n, m, lo, hi in self.path]}


def _claim(p: Mapping[str, np.ndarray], i: int, delta: float) -> str | None:
    if p["test_lo"][i] > 0:
        return "beats"
    if p["test_hi"][i] < 0:
        return "loses"
    if p["eq_lo"][i] > -delta and p["eq_hi"][i] < delta:
        return "equivalent"
    return None


def _arm(arm: str, d: pd.Series, rule: Rule, failed: int) -> ArmResult:
    """Walk one arm's rounds in order; the first round whose sequences decide is its claim.
    The interval reported is the one the claim rests on (the equivalence sequences for
    ``equivalent``, the test sequences otherwise)."""
    x = d.sort_index().to_numpy(float)
    if len(x) == 0:
        return ArmResult(arm, "undecided", math.nan, -math.inf, math.inf, 0, failed=failed)
    p = claim_paths(x, rule.bounds, rule.max_rounds)
    path = []
    for i in range(len(x)):
        claim = _claim(p, i, rule.delta)
        lo, hi = (p["eq_lo"][i], p["eq_hi"][i]) if claim == "equivalent" else (p["test_lo"][i], p["test_hi"][i])
        path.append((i + 1, float(p["mean"][i]), float(lo), float(hi)))
        if claim:
            return ArmResult(arm, claim, float(p["mean"][i]), float(lo), float(hi), i + 1, i + 1, tuple(path), failed,
                             sd=float(p["sd"][i]))
    last = len(x) - 1
    return ArmResult(arm, "undecided", float(p["mean"][last]), float(p["test_lo"][last]), float(p["test_hi"][last]), len(x), None,
                     tuple(path), failed, sd=float(p["sd"][last]))


def rounds_to_decide(result: ArmResult, rule: Rule, *, limit: int = 2048) -> int | None:
    """The pairs at which the arm's sequences would decide if its mean and spread stayed
    where they are (None when they never would within ``limit``, e.g. a mean at the margin):
    what it would take."""
    if result.claim != "undecided" or result.pairs < 2 or not math.isfinite(result.sd) or result.sd <= 0:
        return None
    b = rule.bounds
    n = np.arange(result.pairs + 1, limit + 1)
    x = np.full(limit + 1, result.diff)
    se = result.sd / np.sqrt(np.maximum(np.arange(limit + 1), 1))
    if b.method == "t_mixture":
        t_test = t_eq = np.array([cs_radius_t(int(k), b.test.g, 2 * b.test.level) for k in range(limit + 1)])
    else:
        t_test, t_eq = b.test.t(limit), b.equivalence.t(limit)
    decided = (x - t_test * se > 0) | (x + t_test * se < 0) | ((x - t_eq * se > -rule.delta) & (x + t_eq * se < rule.delta))
    hit = np.flatnonzero(decided[n])
    return int(n[hit[0]]) if len(hit) else None


@dataclass(frozen=True)
class Decision:
    """The outcome of a confirmation: one :class:`ArmResult` per arm of the ``rule``, the
    ``runs`` spent, the ``rounds`` run, and why it ``stopped``."""

    rule: Rule
    arms: tuple[ArmResult, ...]
    runs: int
    rounds: int
    stopped: str
    extra_runs: int | None = None  # what would decide the undecided arms, if their means and spreads held

    @property
    def undecided(self) -> tuple[str, ...]:
        return tuple(a.arm for a in self.arms if a.claim == "undecided")

    def sentence(self) -> str:
        """The decision in one sentence."""
        by = {c: [a for a in self.arms if a.claim == c] for c in CLAIMS}
        conf = f"alpha {self.rule.alpha:g}"
        if self.arms and len(by["equivalent"]) == len(self.arms):
            return (f"The paper's psi is within {self.rule.delta:g} points of every mapping tested "
                    f"({', '.join(a.arm for a in self.arms)}; top-1 per network; confidence sequences at {conf}, Bonferroni over "
                    f"{len(self.rule.tested)} arms)")
        parts = []
        for a in by["beats"]:
            parts.append(f"{a.arm} beats the paper's psi by {a.diff:.2f} points [{a.lo:.2f}, {a.hi:.2f}]")
        for a in by["loses"]:
            parts.append(f"{a.arm} loses {-a.diff:.2f} points to the paper's psi [{a.lo:.2f}, {a.hi:.2f}]")
        if by["equivalent"]:
            parts.append(f"{', '.join(a.arm for a in by['equivalent'])} {'is' if len(by['equivalent']) == 1 else 'are'} within "
                         f"{self.rule.delta:g} points of the paper's psi")
        if by["undecided"]:
            more = f" (about {self.extra_runs} more runs would decide them if their means held)" if self.extra_runs else ""
            parts.append(f"{', '.join(a.arm for a in by['undecided'])} {'stays' if len(by['undecided']) == 1 else 'stay'} "
                         f"undecided after {self.runs} runs{more}")
        return "; ".join(parts) + f" (top-1 per network; confidence sequences at {conf}, Bonferroni over {len(self.rule.tested)} arms)"

    def to_dict(self) -> dict[str, Any]:
        return {"decision": self.sentence(), "delta": self.rule.delta, "alpha": self.rule.alpha, "level": 1 - self.rule.level,
                "runs": self.runs, "rounds": self.rounds, "budget": self.rule.budget, "stopped": self.stopped,
                "extra_runs": self.extra_runs, "rule": self.rule.to_dict(), "claims": [a.to_dict() for a in self.arms]}

    def lines(self) -> list[str]:
        """The decision as text: the sentence, the rule, then one line per arm."""
        out = [self.sentence() + ".", "", f"rule (stored before the first run): {self.rule.text()}",
               f"spent {self.runs} of {self.rule.budget} runs in {self.rounds} rounds; stopped: {self.stopped}", ""]
        for a in self.arms:
            where = f"decided after {a.decided_at} pairs" if a.decided_at else f"{a.pairs} pairs"
            fail = f", {a.failed} rounds left out (a run failed or collapsed)" if a.failed else ""
            note = f"; {a.note}" if a.note else ""
            ci = f"[{a.lo:+.2f}, {a.hi:+.2f}]" if math.isfinite(a.lo) and math.isfinite(a.hi) else "[-inf, +inf]"
            diff = f"{a.diff:+.2f}" if math.isfinite(a.diff) else "n/a"
            out.append(f"  {a.arm}: {a.claim}, {diff} points {ci} ({where}{fail}{note})")
        return out


def decide(pairs: pd.DataFrame, rule: Rule, *, runs: int = 0, stopped: str = "") -> Decision:
    """The decision from paired differences: ``pairs`` has one row per (arm, round) with the
    difference ``d`` (NaN where the round's pair could not be used: a run failed or
    collapsed). Arms identical to the reference are equivalent by construction; arms that
    share another's networks take its claim."""
    results: dict[str, ArmResult] = {}
    for arm in rule.tested:
        rows = pairs[pairs["arm"] == arm] if len(pairs) else pairs
        d = rows.set_index("round")["d"] if len(rows) else pd.Series(dtype=float)
        results[arm] = _arm(arm, d.dropna(), rule, int(d.isna().sum()))
    for arm in rule.identical:
        results[arm] = ArmResult(arm, "equivalent", 0.0, 0.0, 0.0, 0, note="the same networks as the paper's psi at these widths")
    for arm, other in rule.same_as.items():
        r = results.get(other)
        if r is not None:
            results[arm] = ArmResult(arm, r.claim, r.diff, r.lo, r.hi, r.pairs, r.decided_at, r.path, r.failed,
                                     note=f"the same networks as {other} at these widths", sd=r.sd)
    ordered = tuple(results[a] for a in rule.arms if a in results)
    rounds = int(pairs["round"].max()) + 1 if len(pairs) else 0
    extra = None
    undecided = [a for a in ordered if a.claim == "undecided" and a.arm in rule.tested]
    if undecided:
        needs = [rounds_to_decide(a, rule) for a in undecided]
        if all(n is not None for n in needs):
            extra = sum(rule.round_runs(sum(n > k for n in needs)) for k in range(min(a.pairs for a in undecided), max(needs)))
    return Decision(rule, ordered, runs, rounds, stopped or ("every arm decided" if not undecided else "undecided arms remain"), extra)
