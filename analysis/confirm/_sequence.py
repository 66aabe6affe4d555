"""Anytime-valid confidence sequences for the mean of paired differences, and the fixed-size
design they are compared with.

A confirmation observes, round after round, one paired difference per arm: d = top-1 of the
arm minus top-1 of the paper's psi, both trained from one seed (common random numbers) and
averaged over the design's widths. Its differences are modelled as independent draws of
N(mu, sigma^2) with sigma unknown, and it may look after every round and stop whenever it
likes, so its intervals must hold at every round at once.

**The t-mixture e-process** (the Bayes factor of the one-sample t-test with a normal prior
N(0, g) on the standardised effect (mu - mu0) / sigma and the right-Haar prior 1/sigma on
sigma; Rouder et al., "Bayesian t tests for accepting and rejecting the null hypothesis",
Psychon. Bull. Rev. 2009, eq. 1 with the g-prior fixed):

    E_n(mu0) = (1 + n g)^(-1/2) [(1 + t^2/nu) / (1 + t^2 / (nu (1 + n g)))]^((nu + 1)/2),

t the t statistic of mu0 after n >= 2 differences, nu = n - 1. Under mu = mu0 it is a
nonnegative martingale with mean 1 in the filtration of the scale-invariant statistics
(Perez-Ortiz, Lardy, de Heide and Grunwald, "E-statistics, group invariance and anytime-
valid testing", Ann. Statist. 2024; the confidence sequence is Lai's, "On confidence
sequences", Ann. Statist. 1976), so by Ville's inequality P(E_n(mu) >= 1/alpha for some n)
<= alpha. The confidence sequence {mu0 : E_n(mu0) < 1/alpha} is, in closed form,

    mean +- t*_n s / sqrt(n),  t*_n^2 = nu (r - 1) / (1 - r / a),  a = 1 + n g,  r = (sqrt(a) / alpha)^(2 / (nu + 1)),

(the whole line while r >= a), and the running intersection over rounds holds as well. The
prior scale ``g`` does not touch validity; it sets where the sequence is tightest, and is
chosen before the first run (:func:`tune_g`) for the round at which the plan expects the
decision. Compared with the fixed-size t interval at that round the sequence is wider by a
factor that :func:`width_ratio` reports (about 1.2-1.4 at the levels used here).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

__all__ = ["Bound", "SequenceBounds", "cs_radius_t", "e_value", "fixed_power", "fixed_size", "one_sided_t", "running_bounds", "tune_g",
           "width_ratio", "METHODS", "ClaimBounds", "claim_paths"]


def e_value(d: Sequence[float], mu0: float, g: float) -> float:
    """E_n(mu0) of the module doc for the differences ``d`` (1.0 with fewer than 2)."""
    x = np.asarray(d, float)
    n = len(x)
    if n < 2:
        return 1.0
    s = float(x.std(ddof=1))
    nu = n - 1
    a = 1.0 + n * g
    t2 = math.inf if s == 0 else (float(x.mean()) - mu0) ** 2 / (s * s / n)
    if math.isinf(t2):
        return math.inf
    return float(a ** -0.5 * ((1 + t2 / nu) / (1 + t2 / (nu * a))) ** ((nu + 1) / 2))


def cs_radius_t(n: int, g: float, alpha: float) -> float:
    """t*_n: the confidence sequence after ``n`` differences is mean +- t*_n s / sqrt(n)
    (inf while it is the whole line)."""
    if n < 2:
        return math.inf
    nu = n - 1
    a = 1.0 + n * g
    log_r = (0.5 * math.log(a) - math.log(alpha)) * 2.0 / (nu + 1)
    if log_r >= math.log(a):
        return math.inf
    r = math.exp(log_r)
    return math.sqrt(nu * (r - 1.0) / (1.0 - r / a))


def _log_e(t: np.ndarray, n: np.ndarray, g: float, lam: float) -> np.ndarray:
    """log E_n at t statistic ``t`` for the prior N(``lam``, ``g``) on the standardised effect:
    under it, t / sqrt(1 + n g) is noncentral t with nu = n - 1 degrees of freedom and
    noncentrality sqrt(n) lam / sqrt(1 + n g), so E_n is the ratio of that density of t to
    Student's t density (exact; with lam = 0 it is the closed form of the module doc)."""
    from scipy import stats

    a = 1.0 + n * g
    return stats.nct.logpdf(t / np.sqrt(a), n - 1, np.sqrt(n) * lam / np.sqrt(a)) - 0.5 * np.log(a) - stats.t.logpdf(t, n - 1)


@lru_cache(maxsize=64)
def one_sided_t(n_max: int, g: float, lam: float, alpha: float) -> np.ndarray:
    """t*_n for n = 0..``n_max``: the one-sided sequence that rejects mu0 once the t
    statistic of mu0 reaches t*_n, for the prior N(``lam`` >= 0, ``g``) on alternatives
    above mu0 (mirror it for alternatives below). E_n increases in t >= 0 (the noncentral t
    family has monotone likelihood ratio), so t*_n is where it crosses 1 / ``alpha``;
    inf while it cannot. Vectorised bisection over n."""
    n = np.arange(2, max(n_max, 2) + 1, dtype=float)
    target = math.log(1.0 / alpha)
    lo = np.zeros_like(n)
    hi = np.full_like(n, 4.0)
    with np.errstate(all="ignore"):
        for _ in range(14):  # grow the bracket to 4 x 2^13
            short = _log_e(hi, n, g, lam) < target
            if not short.any():
                break
            hi = np.where(short, hi * 2, hi)
        never = _log_e(hi, n, g, lam) < target
        for _ in range(60):
            mid = (lo + hi) / 2
            up = _log_e(mid, n, g, lam) >= target
            hi, lo = np.where(up, mid, hi), np.where(up, lo, mid)
    out = np.full(int(max(n_max, 2)) + 1, math.inf)
    out[2:] = np.where(never, math.inf, hi)
    return out


@dataclass(frozen=True)
class Bound:
    """One one-sided sequence of a rule: its ``level`` (the chance it ever excludes the
    truth), the centre ``lam`` and spread ``g`` of its prior (in standard deviations of a
    paired difference, alternatives away from mu0)."""

    level: float
    lam: float
    g: float

    def t(self, n_max: int) -> np.ndarray:
        """t*_n for n = 0..``n_max`` (tables are made in blocks of 256 rounds and kept)."""
        size = 256 * math.ceil(max(int(n_max), 2) / 256)
        return one_sided_t(size, self.g, self.lam, self.level)[: int(n_max) + 1]


#: how an arm's sequences are built: "one_sided" (default: four one-sided t-mixtures, each
#: with its prior centred where the claim it serves is decided) or "t_mixture" (one two-sided
#: sequence, the prior centred at 0, for every claim)
METHODS = ("one_sided", "t_mixture")


@dataclass(frozen=True)
class ClaimBounds:
    """The sequences behind an arm's claims. ``method`` "one_sided": a lower and an upper
    one-sided sequence for beats and loses (each at ``test.level``, the prior centred
    ``test.lam`` standard deviations away: the effect of 2 x delta the design must find), and
    a lower and an upper one for the equivalence (each at ``equivalence.level``, centred at
    delta: the margin seen from an arm equal to the paper's psi). "t_mixture": one two-sided
    sequence at twice ``test.level`` (prior N(0, ``test.g``)) serves all claims."""

    method: str
    test: Bound
    equivalence: Bound


def claim_paths(x: np.ndarray, bounds: ClaimBounds, n_max: int) -> dict[str, np.ndarray]:
    """The running bounds of every sequence after each round, for paired differences ``x``
    (last axis: rounds, at most ``n_max``): ``test_lo``/``test_hi`` (beats when test_lo > 0,
    loses when test_hi < 0), ``eq_lo``/``eq_hi`` (equivalent when both lie inside the
    margin), ``mean`` and ``sd``. Works on any leading shape (arms, repetitions)."""
    x = np.asarray(x, float)
    rounds = x.shape[-1]
    n = np.arange(1, rounds + 1, dtype=float)
    mean = np.cumsum(x, axis=-1) / n
    with np.errstate(invalid="ignore", divide="ignore"):
        var = np.where(n > 1, (np.cumsum(x * x, axis=-1) - n * mean**2) / np.maximum(n - 1, 1), np.nan)
        sd = np.sqrt(np.clip(var, 0, None))
        se = sd / np.sqrt(n)
        if bounds.method == "t_mixture":
            t = np.array([cs_radius_t(int(k), bounds.test.g, 2 * bounds.test.level) for k in n])
            t_test = t_eq = t
        else:
            t_test = bounds.test.t(max(n_max, rounds))[1:rounds + 1]
            t_eq = bounds.equivalence.t(max(n_max, rounds))[1:rounds + 1]
        out = {}
        for name, t in (("test", t_test), ("eq", t_eq)):
            r = np.where(np.isfinite(se) & np.isfinite(t), t * se, np.inf)
            r = np.where(np.isnan(r), np.inf, r)
            out[f"{name}_lo"] = np.maximum.accumulate(mean - r, axis=-1)
            out[f"{name}_hi"] = np.minimum.accumulate(mean + r, axis=-1)
    out["mean"], out["sd"] = mean, sd
    return out


@dataclass(frozen=True)
class SequenceBounds:
    """The confidence sequence of one arm after each round: ``n`` differences, their
    ``mean`` and ``sd``, and the running-intersection bounds ``lo``/``hi``."""

    n: np.ndarray
    mean: np.ndarray
    sd: np.ndarray
    lo: np.ndarray
    hi: np.ndarray


def running_bounds(d: Sequence[float], g: float, alpha: float) -> SequenceBounds:
    """The confidence sequence of the mean of ``d`` after each of its rounds (running
    intersection of the closed-form intervals of the module doc)."""
    x = np.asarray(d, float)
    ns = np.arange(1, len(x) + 1)
    csum, csq = np.cumsum(x), np.cumsum(x * x)
    mean = csum / ns
    with np.errstate(invalid="ignore", divide="ignore"):
        var = np.where(ns > 1, (csq - ns * mean**2) / np.maximum(ns - 1, 1), np.nan)
    sd = np.sqrt(np.clip(var, 0, None))
    radius = np.array([cs_radius_t(int(n), g, alpha) for n in ns]) * sd / np.sqrt(ns)
    radius = np.where(np.isnan(radius), np.inf, radius)
    lo = np.maximum.accumulate(mean - radius)
    hi = np.minimum.accumulate(mean + radius)
    return SequenceBounds(ns, mean, sd, lo, hi)


def tune_g(target_n: int, alpha: float) -> float:
    """The prior scale g that makes the confidence sequence narrowest at ``target_n``
    differences (a log grid; chosen before any run, from the plan)."""
    grid = np.exp(np.linspace(math.log(1e-4), math.log(100.0), 241))
    n = max(int(target_n), 2)
    radii = [cs_radius_t(n, float(g), alpha) for g in grid]
    return float(grid[int(np.argmin(radii))])


def width_ratio(n: int, g: float, alpha: float) -> float:
    """The confidence sequence's half-width at ``n`` over the fixed-size t interval's at the same level."""
    from scipy import stats

    return cs_radius_t(n, g, alpha) / float(stats.t.ppf(1 - alpha / 2, max(n - 1, 1)))


def fixed_power(n: int, diff: float, sigma: float, delta: float, a: float) -> float:
    """Power of a fixed-size design of ``n`` paired differences (standard deviation ``sigma``)
    to make a correct claim about an arm whose true difference is ``diff``: "beats" or
    "loses" (two-sided t-test at ``a``) where |diff| >= ``delta``, "equivalent" (two one-sided
    t-tests at ``a`` each, Schuirmann 1987) where diff = 0, and the likelier of the two in
    between (either is correct there). Exact: noncentral t for the test, and for the
    equivalence an average over the distribution of the sample standard deviation."""
    from scipy import stats

    df = max(n - 1, 1)

    def test() -> float:
        nc = diff / (sigma / math.sqrt(n))
        q = stats.t.ppf(1 - a / 2, df)
        return float(stats.nct.sf(q, df, abs(nc)))

    def equivalent() -> float:
        q = stats.t.ppf(1 - a, df)
        c = (np.arange(400) + 0.5) / 400
        s = np.sqrt(stats.chi2.ppf(c, df) / df)  # quantiles of s / sigma
        half = np.clip(delta * math.sqrt(n) / sigma - q * s, 0, None)  # |mean - 0| sqrt(n) / sigma must stay below it
        shift = diff * math.sqrt(n) / sigma
        return float(np.mean(stats.norm.cdf(half - shift) - stats.norm.cdf(-half - shift)))

    if abs(diff) >= delta:
        return test()
    if diff == 0:
        return equivalent()
    return max(test(), equivalent())


def fixed_size(diffs: Sequence[float], sigma: float, delta: float, alpha: float, *, power: float = 0.8) -> int:
    """Paired differences per arm that a fixed-size design needs so that every arm (true
    differences ``diffs`` to the paper's psi) gets a correct claim with probability >=
    ``power``, at the error rates of the sequential claims (``alpha`` shared by the arms,
    Bonferroni; :func:`fixed_power`). The smallest such n, by bisection."""
    a = alpha / max(len(diffs), 1)

    def ok(n: int) -> bool:
        return all(fixed_power(n, d, sigma, delta, a) >= power for d in diffs)

    lo, hi = 2, 4
    while not ok(hi):
        lo, hi = hi, hi * 2
        if hi > 10**6:
            return hi
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if ok(mid) else (mid, hi)
    return hi
