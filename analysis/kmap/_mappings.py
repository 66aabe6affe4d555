"""Mappings k = m(C) scored by the top-1 they are predicted to lose, with intervals that hold
whatever the truth is.

What matters about a mapping is not how far its k lie from a noisy k* (the squared error in
k that the ECA paper's plots invite) but how much top-1 a network loses by using it. For a
network of the study (a backbone at one of its widths, the analysed attention in every
stage) the fitted model (:mod:`analysis.kmap._effect`) predicts

- **regret**: sum over its stages of max_k theta(C, k) - theta(C, the mapping's k), averaged
  over the study's widths. The best k is unknown, so its interval is built from
  simultaneous (max-t) intervals of every difference between two k at every C of the study
  (all C at once): at each C the regret lies between max(0, max_k lower bound) and
  max(0, max_k upper bound) of the contrasts theta(C, k) - theta(C, m(C)), whatever k is
  best, and the network's interval sums these. The point estimate is the best of noisy
  estimates, biased upward when k matters little; the interval is not.
- **vs paper**: the mapping's top-1 minus the paper's psi (gamma=2, b=1) top-1, a linear
  contrast. For a mapping fixed before the data (the paper's psi, timm's rule, k=3 everywhere,
  the authors' released per-stage k, a mapping the user names) it has an exact t interval.

**The fitted psi** is chosen on this study's data: the (gamma, b) whose psi curve maximises
the predicted top-1 (over a grid; every equal optimum reported). It is scored on the same
data with intervals that account for the choice: its ``vs_paper`` interval is simultaneous
over every distinct psi curve on the grid (max-t over all of them), so it holds whichever
curve the data picked, and its regret interval is the simultaneous one above. Its point
estimates remain optimistic; a confirmation study on fresh data (``python -m study.run
--space kmap_confirm --from RUN``) scores it without selection. (Splitting the study by
replicate to cross-fit would not be independent when a configuration's replicates share
noise, and halves of the configurations cannot each fit the model at the inference
design's budget.)

A mapping whose k was never tried at some C, or whose effect there is not estimable
(aliased in the design), cannot be scored there, and says so (``missing``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np
import pandas as pd

from analysis.kmap._effect import KModel, pair_contrasts
from analysis.kmap._fits import DEFAULT_BS as BS
from analysis.kmap._fits import DEFAULT_GAMMAS as GAMMAS
from analysis.kmap._fits import PAPER_B, PAPER_GAMMA, psi
from analysis.kmap._model import simultaneous_critical
from study.validate import ConfigError

__all__ = [
    "PAPER_B",
    "PAPER_GAMMA",
    "REGRET_CAVEAT",
    "Mapping",
    "MappingScore",
    "PsiChoice",
    "fit_psi_by_top1",
    "parse_mapping",
    "score_mappings",
]

#: what a regret is, in words, for the report and the CLI
REGRET_CAVEAT = ("Regret is measured against the best k per C, which the data estimate: its interval is simultaneous over every "
                 "pair of k at every C (it holds whatever k is best), and its estimate, the best of noisy estimates, is biased "
                 "upward; a regret whose interval reaches 0 is no evidence of loss")

#: a mapping: (stage index, C, backbone) -> k, or None where it gives none
KFn = Callable[[int, float, str], "int | None"]


@dataclass(frozen=True)
class Mapping:
    """A candidate mapping: ``name``, ``description`` and ``k(i, C, backbone)``; ``chosen``
    True for one chosen on the study's data (the fitted psi)."""

    name: str
    description: str
    k: KFn
    chosen: bool = False


@dataclass(frozen=True)
class MappingScore:
    """One mapping's predicted cost. ``regret``/``regret_ci``: top-1 points a network of the
    study loses against the best k per C (mean over the scored widths; simultaneous interval,
    see the module doc); ``vs_paper`` and ``vs_paper_ci``: its top-1 minus the paper's psi
    (exact t interval for a fixed mapping, simultaneous over every psi curve for the fitted
    one); ``widths``: where it could be scored; ``missing``: (C, k) it asks for that the
    study never ran or whose effect it cannot estimate (aliased)."""

    name: str
    description: str
    regret: float | None
    regret_ci: tuple[float, float] | None
    vs_paper: float | None
    vs_paper_ci: tuple[float, float] | None
    widths: tuple[str, ...]
    missing: tuple[tuple[int, int], ...]

    def row(self) -> dict[str, Any]:
        f = lambda v: None if v is None or not math.isfinite(v) else float(v)
        return {"mapping": self.name, "regret": f(self.regret),
                "regret_lo": f(self.regret_ci[0]) if self.regret_ci else None, "regret_hi": f(self.regret_ci[1]) if self.regret_ci else None,
                "vs_paper": f(self.vs_paper), "vs_paper_lo": f(self.vs_paper_ci[0]) if self.vs_paper_ci else None,
                "vs_paper_hi": f(self.vs_paper_ci[1]) if self.vs_paper_ci else None,
                "widths": ",".join(self.widths), "missing": " ".join(f"C={c}:k={k}" for c, k in self.missing),
                "description": self.description}


@dataclass(frozen=True)
class PsiChoice:
    """psi's (gamma, b) chosen by predicted top-1 on the study's data: ``equal`` holds every
    grid pair with the best value, ``gamma``/``b`` the one nearest their centroid; ``ks`` the
    k it gives per C; ``candidates``: the distinct psi curves on the grid it was chosen among
    (its ``vs_paper`` interval is simultaneous over them); ``critical``: that interval's
    max-t critical value."""

    gamma: float
    b: float
    equal: tuple[tuple[float, float], ...]
    contains_paper: bool
    ks: dict[int, int]
    candidates: int = 0
    critical: float = math.nan

    def to_dict(self, max_set: int = 50) -> dict[str, Any]:
        return {"gamma": self.gamma, "b": self.b, "n_equal": len(self.equal),
                "gamma_range": [min(g for g, _ in self.equal), max(g for g, _ in self.equal)],
                "b_range": [min(b for _, b in self.equal), max(b for _, b in self.equal)],
                "contains_paper": self.contains_paper, "equal_set": [list(p) for p in self.equal[:max_set]],
                "k_per_C": {str(c): k for c, k in self.ks.items()},
                "chosen_on": "this study's data (in-sample); intervals simultaneous over every psi curve on the grid",
                "candidates": self.candidates, "critical": self.critical if math.isfinite(self.critical) else None}


def _networks(model: KModel) -> dict[str, tuple[str, list[float]]]:
    """stratum -> (backbone, C per stage that has k effects) for every width of the study."""
    cf = model.data.configs
    out = {}
    for stratum, g in cf.groupby("stratum", sort=True):
        r = g.iloc[0]
        Cs = [float(r[f"C{i}"]) for i in range(model.data.num_stages)]
        out[str(stratum)] = (str(r["backbone"]), Cs)
    return out


def _t_interval(model: KModel, L: np.ndarray, alpha: float, crit: float | None = None) -> tuple[float, tuple[float, float]]:
    """The estimate of the linear contrast L @ theta and its 1 - alpha interval: exact t, or
    est +- ``crit`` se with a simultaneous critical value."""
    from scipy import stats

    est = float(L @ model.beta)
    se = math.sqrt(max(L @ model.cov @ L, 0.0))
    t = stats.t.ppf(1 - alpha / 2, max(model.df_resid, 1.0)) if crit is None else crit
    return est, (est - t * se, est + t * se)


class _Regret:
    """Regret bounds per C from simultaneous intervals of every pair of k at every C."""

    def __init__(self, model: KModel, alpha: float, seed: int):
        self.model = model
        L, _ = pair_contrasts(model)
        self.crit = simultaneous_critical(model, L, alpha, seed) if len(L) else math.nan

    def at(self, C: float, k: float) -> tuple[float, float, float]:
        """(estimate, lower, upper) of max_j theta(C, j) - theta(C, k)."""
        m = self.model
        est, lo, hi = 0.0, 0.0, 0.0
        for j in m.estimable_levels()[C]:
            if j == k:
                continue
            d, se = m.contrast(C, j, k)
            est, lo, hi = max(est, d), max(lo, d - self.crit * se), max(hi, d + self.crit * se)
        return est, lo, hi


def _score(model: KModel, mapping: Mapping, paper: KFn, regret: _Regret, alpha: float,
           fitted_crit: float | None) -> MappingScore:
    lv = model.estimable_levels()
    fn = mapping.k
    per_net, deltas_L, widths, missing = [], [], [], set()
    for stratum, (backbone, Cs) in _networks(model).items():
        choice = [fn(i, C, backbone) for i, C in enumerate(Cs)]
        scored = [(C, k) for C, k in zip(Cs, choice) if C in lv]
        bad = [(int(C), int(k) if k is not None else -1) for C, k in scored if k is None or float(k) not in lv[C]]
        if bad or not scored:
            missing.update(b for b in bad if b[1] >= 0)
            continue
        widths.append(stratum)
        per_net.append(np.sum([regret.at(C, float(k)) for C, k in scored], axis=0))
        pk = [paper(i, C, backbone) for i, C in enumerate(Cs)]
        if all(C not in lv or (p is not None and float(p) in lv[C]) for C, p in zip(Cs, pk)):
            deltas_L.append(sum(model.theta_vector(C, float(k)) - model.theta_vector(C, float(p))
                                for (C, k), p in zip(zip(Cs, choice), pk) if C in lv))
    if not widths:
        return MappingScore(mapping.name, mapping.description, None, None, None, None, (), tuple(sorted(missing)))
    est, lo, hi = np.mean(per_net, axis=0)
    vs = vs_ci = None
    if deltas_L:
        vs, vs_ci = _t_interval(model, np.mean(np.stack(deltas_L), axis=0), alpha, fitted_crit if mapping.chosen else None)
    return MappingScore(mapping.name, mapping.description, float(est), (float(lo), float(hi)), vs, vs_ci, tuple(widths),
                        tuple(sorted(missing)))


@lru_cache(maxsize=32)
def _psi_grid(Cs: tuple[float, ...], rule: str = "paper") -> tuple[np.ndarray, np.ndarray]:
    """The distinct k vectors psi(C; gamma, b) gives over the (gamma, b) grid: ``patterns``
    (one row per distinct vector, one column per C) and ``inverse`` (grid shape -> row).

    The grid is computed with :func:`study.attention.psi`'s own arithmetic in IEEE doubles
    (``int(abs((log2(C) + b) / gamma))``, then even -> odd), vectorized over the grid;
    ``tests/analysis/test_kmap.py`` checks it against psi cell by cell."""
    g = GAMMAS[:, None, None]
    b = BS[None, :, None]
    logs = np.array([math.log2(int(c)) for c in Cs])[None, None, :]
    t = np.floor(np.abs((logs + b) / g)).astype(np.int64)
    pred = np.where(t % 2 == 1, t, t + 1)
    if rule == "timm":
        pred = np.maximum(pred, 3)
    patterns, inverse = np.unique(pred.reshape(-1, len(Cs)), axis=0, return_inverse=True)
    return patterns, inverse.reshape(GAMMAS.size, BS.size)


def _best_on_grid(value: np.ndarray, inverse: np.ndarray, *, members: bool = True) -> tuple[float, float, tuple[tuple[float, float], ...]]:
    """The grid cells whose pattern has the largest ``value``: the one nearest their centroid
    (in grid steps, so that neither end of a flat valley is favoured), and (``members``) all
    of them."""
    grid = value[inverse]
    best = np.nanmax(grid)
    gi, bi = np.nonzero(grid >= best - 1e-9 * max(1.0, abs(best)))
    r = int(np.argmin((gi - gi.mean()) ** 2 + (bi - bi.mean()) ** 2))
    every = tuple(sorted(zip(GAMMAS[gi].tolist(), BS[bi].tolist()))) if members else ()
    return float(GAMMAS[gi[r]]), float(BS[bi[r]]), every


def _pattern_values(patterns: np.ndarray, Cs: Sequence[float], weights: Sequence[float],
                    theta: dict[float, dict[float, np.ndarray]], skip: float | None = None) -> np.ndarray:
    """Predicted top-1 (sum over C of weight x theta(C, psi(C))) of every pattern for every
    draw: shape (draws, patterns); -inf where a pattern asks for a k never run at some C."""
    n_draws = len(next(iter(next(iter(theta.values())).values())))
    total = np.zeros((n_draws, len(patterns)))
    for j, (C, w) in enumerate(zip(Cs, weights)):
        if C == skip:
            continue
        lut = np.full((n_draws, int(patterns[:, j].max()) + 1), -np.inf)
        for k, v in theta[C].items():
            if int(k) < lut.shape[1]:
                lut[:, int(k)] = v
        total += w * lut[:, patterns[:, j]]
    return total


def _pattern_contrasts(model: KModel, patterns: np.ndarray, Cs: Sequence[float], weights: Sequence[float],
                       n_nets: int) -> tuple[np.ndarray, np.ndarray]:
    """L (one row per pattern) with L @ beta = the pattern's predicted top-1 minus the paper's
    psi, averaged over the networks; ``valid``: patterns whose every k is estimable."""
    nb = len(model.beta)
    lv = model.estimable_levels()
    total = np.zeros((len(patterns), nb))
    valid = np.ones(len(patterns), bool)
    paper = np.zeros(nb)
    for j, (C, w) in enumerate(zip(Cs, weights)):
        lut = np.full((int(max(patterns[:, j].max(), 9)) + 2, nb), np.nan)
        for k in lv[C]:
            lut[int(k)] = model.theta_vector(C, k)
        rows = lut[patterns[:, j]]
        valid &= np.isfinite(rows).all(axis=1)
        total += w * np.nan_to_num(rows)
        kp = psi(int(C), PAPER_GAMMA, PAPER_B)
        if kp < len(lut) and np.isfinite(lut[kp]).all():
            paper += w * lut[kp]
        else:
            valid[:] = False  # the paper's psi cannot be scored: no vs_paper for any curve
    return (total - paper) / max(n_nets, 1), valid


def fit_psi_by_top1(model: KModel, *, alpha: float = 0.05, seed: int = 0) -> PsiChoice:
    """psi's (gamma, b) that maximises the predicted top-1 of the study's networks, and the
    simultaneous critical value of its comparison with the paper's psi (see the module doc)."""
    lv = model.estimable_levels()
    nets = _networks(model)
    Cs = list(lv)
    weights = [sum(C in set(cs) for _, cs in nets.values()) for C in Cs]
    patterns, inverse = _psi_grid(tuple(Cs))
    th_hat = {C: {k: np.array([model.theta_vector(C, k) @ model.beta]) for k in ks} for C, ks in lv.items()}
    value = _pattern_values(patterns, Cs, weights, th_hat)[0]
    if not np.isfinite(value).any():
        raise ValueError("k-vs-C: no psi(C; gamma, b) on the grid gives only k values the study ran at every C")
    g, b, members = _best_on_grid(value, inverse)
    ks = {int(C): psi(int(C), g, b) for C in Cs}
    contains = any(abs(x - PAPER_GAMMA) < 1e-9 and abs(y - PAPER_B) < 1e-9 for x, y in members)
    L, valid = _pattern_contrasts(model, patterns, Cs, weights, len(nets))
    crit = simultaneous_critical(model, L[valid], alpha, seed + 1) if valid.any() else math.nan
    return PsiChoice(g, b, members, contains, ks, int(np.isfinite(value).sum()), crit)


def parse_mapping(spec: str) -> Mapping:
    """A mapping the user names: ``gamma=G,b=B`` (psi; ``,rule=timm`` for timm's floor of 3)
    or ``k=K0,K1,...`` (one k per stage). ValueError naming the problem otherwise."""
    text = spec.strip()
    if text.startswith("k="):
        try:
            ks = [int(x) for x in text[2:].split(",")]
        except ValueError:
            raise ConfigError("mapping", about=repr(spec), reason="k= takes one integer per stage, e.g. k=3,5,7,7") from None
        if not ks or any(k < 1 or k % 2 == 0 for k in ks):
            raise ConfigError("mapping", about=repr(spec), reason="every k must be an odd integer >= 1")
        return Mapping(f"k({','.join(map(str, ks))})", f"k = {','.join(map(str, ks))} per stage (named by the user)",
                       lambda i, C, bb, ks=tuple(ks): ks[i] if i < len(ks) else None)
    parts = dict(p.split("=", 1) for p in text.split(",") if "=" in p)
    if not parts or set(parts) - {"gamma", "b", "rule"} or "gamma" not in parts or "b" not in parts \
            or len(parts) != len(text.split(",")):
        raise ConfigError("mapping", about=repr(spec), reason="expected gamma=G,b=B[,rule=paper|timm] or k=K0,K1,... (one odd k per stage)")
    try:
        gamma, b = float(parts["gamma"]), float(parts["b"])
    except ValueError:
        raise ConfigError("mapping", about=repr(spec), reason="gamma and b must be numbers") from None
    rule = parts.get("rule", "paper")
    if not gamma > 0 or not math.isfinite(b) or rule not in ("paper", "timm"):
        raise ConfigError("mapping", about=repr(spec), reason="gamma must be > 0, b finite, rule paper or timm")
    name = f"psi({gamma:g},{b:g}{',timm' if rule == 'timm' else ''})"
    return Mapping(name, f"psi(C) with gamma={gamma:g}, b={b:g}{' and a floor of 3' if rule == 'timm' else ''} (named by the user)",
                   lambda i, C, bb: psi(int(C), gamma, b, rule))


def _paper(i: int, C: float, backbone: str) -> int:
    return psi(int(C), PAPER_GAMMA, PAPER_B)


def candidate_mappings(fitted: PsiChoice | None = None, named: Sequence[Mapping] = ()) -> list[Mapping]:
    """The mappings scored: the paper's psi, timm's rule, k=3, the released k, the user's, the fitted psi."""
    from study.attention import released_k

    def released(i: int, C: float, backbone: str) -> int | None:
        try:
            ks = released_k(backbone)
        except ValueError:
            return None
        return ks[i] if i < len(ks) else None

    out = [
        Mapping("paper_psi", "psi(C) with gamma=2, b=1 (ECA-Net eq. 12, the authors' code)", _paper),
        Mapping("timm_rule", "psi(C) with gamma=2, b=1 and a floor of 3 (timm's EcaModule)",
                lambda i, C, bb: psi(int(C), PAPER_GAMMA, PAPER_B, "timm")),
        Mapping("k3", "k=3 in every stage (the authors' code default)", lambda i, C, bb: 3),
        Mapping("released", "the authors' released per-stage k (ResNet-18 3,5,7,7; ResNet-50 3,5,5,7; ...)", released),
        *named,
    ]
    if fitted is not None:
        out.append(Mapping("fitted_psi", f"psi(C) with gamma={fitted.gamma:g}, b={fitted.b:g}, chosen on this study's data "
                                         f"(in-sample; intervals simultaneous over the {fitted.candidates} psi curves it was chosen among)",
                           lambda i, C, bb, f=fitted: psi(int(C), f.gamma, f.b), chosen=True))
    return out


def score_mappings(model: KModel, *, fitted: PsiChoice | None = None, named: Sequence[Mapping] = (), alpha: float = 0.05,
                   seed: int = 0) -> pd.DataFrame:
    """One row per candidate mapping (see the module doc), best (lowest regret) first."""
    regret = _Regret(model, alpha, seed)
    crit = fitted.critical if fitted is not None else None
    rows = [_score(model, m, _paper, regret, alpha, crit).row() for m in candidate_mappings(fitted, named)]
    out = pd.DataFrame(rows)
    return out.sort_values("regret", na_position="last", kind="stable").reset_index(drop=True)
