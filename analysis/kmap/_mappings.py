"""Mappings k = m(C) scored by the top-1 they are predicted to lose, with intervals.

What matters about a mapping is not how far its k lie from a noisy k* (the squared error in
k that the ECA paper's plots invite) but how much top-1 a network loses by using it. For a
network of the study (a backbone at one of its widths, the analysed attention in every
stage) the fitted model (:mod:`analysis.kmap._effect`) predicts

- **regret**: sum over its stages of theta(C, k*) - theta(C, the mapping's k), averaged over
  the study's widths, where k* is the estimated best k at C (fixed at its estimate): a linear
  contrast with an exact t interval, as ``vs paper``. Regret is measured against the
  estimated best k per C (>= 0 by construction at the point estimate); without evidence that
  k matters it is not evidence of loss;
- **vs paper**: the mapping's top-1 minus the paper's psi (gamma=2, b=1) top-1, a linear
  contrast with an exact t interval.

Candidates: the paper's psi, timm's rule (psi with a floor of 3), k=3 everywhere, the
authors' released per-stage k, and psi with (gamma, b) fitted to this study by maximising the
predicted top-1 over a grid (every equal optimum reported). The fitted mapping is judged on
the points it was fitted to (optimistic) and **leave-one-C-out**: for each C, (gamma, b) is
fitted without that C and scored on it (regret against the estimated best k at that C, exact
t interval, averaged over the held-out C). A mapping whose k was never tried at some C, or whose
effect there is not estimable (aliased in the design), cannot be scored there, and says so
(``missing``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Callable, Sequence

import numpy as np
import pandas as pd

from analysis.kmap._effect import KModel
from analysis.kmap._fits import DEFAULT_BS as BS
from analysis.kmap._fits import DEFAULT_GAMMAS as GAMMAS
from analysis.kmap._fits import PAPER_B, PAPER_GAMMA, psi

__all__ = ["MappingScore", "PsiChoice", "score_mappings", "fit_psi_by_top1", "PAPER_GAMMA", "PAPER_B", "REGRET_CAVEAT"]

#: what a regret is, in words, for the report and the CLI
REGRET_CAVEAT = ("Regret is measured against the estimated best k per C (>= 0 by construction at the point estimate); "
                 "without evidence that k matters it is not evidence of loss")



@dataclass(frozen=True)
class MappingScore:
    """One mapping's predicted cost. ``regret``/``regret_ci``: top-1 points a network of the
    study loses against the estimated best k per C (mean over the scored widths; >= 0 by
    construction at the point estimate, exact t interval; without evidence that k matters it
    is not evidence of loss); ``vs_paper`` and
    ``vs_paper_ci``: its top-1 minus the paper's psi; ``widths``: where it could be scored;
    ``missing``: (C, k) it asks for that the study never ran or whose effect it cannot estimate
    (aliased)."""

    name: str
    description: str
    regret: float | None
    regret_ci: tuple[float, float] | None
    vs_paper: float | None
    vs_paper_ci: tuple[float, float] | None
    widths: tuple[str, ...]
    missing: tuple[tuple[int, int], ...]

    def row(self) -> dict[str, Any]:
        f = lambda v: None if v is None or not math.isfinite(v) else float(v)  # noqa: E731
        return {"mapping": self.name, "regret": f(self.regret),
                "regret_lo": f(self.regret_ci[0]) if self.regret_ci else None, "regret_hi": f(self.regret_ci[1]) if self.regret_ci else None,
                "vs_paper": f(self.vs_paper), "vs_paper_lo": f(self.vs_paper_ci[0]) if self.vs_paper_ci else None,
                "vs_paper_hi": f(self.vs_paper_ci[1]) if self.vs_paper_ci else None,
                "widths": ",".join(self.widths), "missing": " ".join(f"C={c}:k={k}" for c, k in self.missing),
                "description": self.description}


@dataclass(frozen=True)
class PsiChoice:
    """psi's (gamma, b) chosen by predicted top-1: ``equal`` holds every grid pair with the
    best value, ``gamma``/``b`` the one nearest their centroid; ``ks`` the k it gives per C;
    ``loco``: leave-one-C-out regret per C (mean) with its interval, and the paper's on the
    same C."""

    gamma: float
    b: float
    equal: tuple[tuple[float, float], ...]
    contains_paper: bool
    ks: dict[int, int]
    loco_regret: float | None
    loco_ci: tuple[float, float] | None
    loco_paper: float | None
    loco_C: tuple[int, ...]

    def to_dict(self, max_set: int = 50) -> dict[str, Any]:
        return {"gamma": self.gamma, "b": self.b, "n_equal": len(self.equal),
                "gamma_range": [min(g for g, _ in self.equal), max(g for g, _ in self.equal)],
                "b_range": [min(b for _, b in self.equal), max(b for _, b in self.equal)],
                "contains_paper": self.contains_paper, "equal_set": [list(p) for p in self.equal[:max_set]],
                "k_per_C": {str(c): k for c, k in self.ks.items()},
                "loco_regret_per_C": self.loco_regret, "loco_regret_ci": list(self.loco_ci) if self.loco_ci else None,
                "loco_paper_regret_per_C": self.loco_paper, "loco_C": list(self.loco_C)}


def _networks(model: KModel) -> dict[str, tuple[str, list[float]]]:
    """stratum -> (backbone, C per stage that has k effects) for every width of the study."""
    cf = model.data.configs
    out = {}
    for stratum, g in cf.groupby("stratum", sort=True):
        r = g.iloc[0]
        Cs = [float(r[f"C{i}"]) for i in range(model.data.num_stages)]
        out[str(stratum)] = (str(r["backbone"]), Cs)
    return out


def _theta_table(model: KModel, betas: np.ndarray) -> dict[float, dict[float, np.ndarray]]:
    """theta(C, k) for every draw (rows of ``betas``)."""
    out: dict[float, dict[float, np.ndarray]] = {}
    for C, ks in model.estimable_levels().items():
        out[C] = {k: betas @ model.theta_vector(C, k) for k in ks}
    return out


def _t_estimate(model: KModel, L: np.ndarray) -> tuple[float, tuple[float, float]]:
    """The estimate of the linear contrast L @ theta and its exact 95 % t interval from the
    model's covariance."""
    from scipy import stats

    est = float(L @ model.beta)
    se = math.sqrt(max(L @ model.cov @ L, 0.0))
    t = stats.t.ppf(0.975, max(model.df_resid, 1.0))
    return est, (est - t * se, est + t * se)


def _regret_vector(model: KModel, C: float, k: float) -> np.ndarray:
    """L with L @ beta = theta(C, estimated best k) - theta(C, k): the regret at C measured
    against the estimated best k (fixed at its estimate, so >= 0 at the point estimate)."""
    return model.theta_vector(C, model.best_k(C)) - model.theta_vector(C, float(k))


def _score(model: KModel, name: str, description: str, fn: Callable[[int, float, str], int | None],
           paper: Callable[[int, float, str], int | None] | None) -> MappingScore:
    lv = model.estimable_levels()
    nets = _networks(model)
    regret_L, deltas_L, widths, missing = [], [], [], set()
    for stratum, (backbone, Cs) in nets.items():
        choice = [fn(i, C, backbone) for i, C in enumerate(Cs)]
        scored = [(C, k) for C, k in zip(Cs, choice) if C in lv]
        bad = [(int(C), int(k)) for C, k in scored if k is None or float(k) not in lv[C]]
        if bad or not scored:
            missing.update(bad)
            continue
        widths.append(stratum)
        regret_L.append(sum(_regret_vector(model, C, k) for C, k in scored))
        if paper is not None:
            pk = [paper(i, C, backbone) for i, C in enumerate(Cs)]
            if all(C not in lv or (p is not None and float(p) in lv[C]) for C, p in zip(Cs, pk)):
                L = sum(model.theta_vector(C, float(k)) - model.theta_vector(C, float(p)) for (C, k), p in zip(zip(Cs, choice), pk) if C in lv)
                deltas_L.append(L)
    if not widths:
        return MappingScore(name, description, None, None, None, None, (), tuple(sorted(missing)))
    regret, ci = _t_estimate(model, np.mean(np.stack(regret_L), axis=0))
    vs, vs_ci = _t_estimate(model, np.mean(np.stack(deltas_L), axis=0)) if deltas_L else (None, None)
    return MappingScore(name, description, regret, ci, vs, vs_ci, tuple(widths), tuple(sorted(missing)))


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


def fit_psi_by_top1(model: KModel, *, loco: bool = True) -> PsiChoice:
    """psi's (gamma, b) that maximises the predicted top-1 of the study's networks, and its
    leave-one-C-out regret (see the module doc)."""
    lv = model.estimable_levels()
    nets = _networks(model)
    Cs = list(lv)
    weights = [sum(C in set(cs) for _, cs in nets.values()) for C in Cs]
    patterns, inverse = _psi_grid(tuple(Cs))
    th_hat = _theta_table(model, model.beta[None, :])
    value = _pattern_values(patterns, Cs, weights, th_hat)[0]
    if not np.isfinite(value).any():
        raise ValueError("k-vs-C: no psi(C; gamma, b) on the grid gives only k values the study ran at every C")
    g, b, members = _best_on_grid(value, inverse)
    ks = {int(C): psi(int(C), g, b) for C in Cs}
    contains = any(abs(x - PAPER_GAMMA) < 1e-9 and abs(y - PAPER_B) < 1e-9 for x, y in members)
    if not loco or len(Cs) < 3:
        return PsiChoice(g, b, members, contains, ks, None, None, None, ())
    reg_L, paper_hat, scored = [], [], []
    for C in Cs:
        held = _pattern_values(patterns, Cs, weights, th_hat, skip=C)[0]
        kp = float(psi(int(C), PAPER_GAMMA, PAPER_B))
        if not np.isfinite(held).any() or kp not in lv[C]:
            continue
        # the k at C that the refit without C chooses; the pattern nearest the centroid of the
        # equal optima decides, as in the full fit
        gj, bj, _ = _best_on_grid(held, inverse, members=False)
        k = float(psi(int(C), gj, bj))
        if k not in lv[C]:
            continue
        scored.append(int(C))
        reg_L.append(_regret_vector(model, C, k))
        paper_hat.append(float(_regret_vector(model, C, kp) @ model.beta))
    if not scored:
        return PsiChoice(g, b, members, contains, ks, None, None, None, ())
    loco, loco_ci = _t_estimate(model, np.mean(np.stack(reg_L), axis=0))
    return PsiChoice(g, b, members, contains, ks, loco, loco_ci, float(np.mean(paper_hat)), tuple(scored))


def score_mappings(model: KModel, *, fitted: PsiChoice | None = None) -> pd.DataFrame:
    """One row per candidate mapping (see the module doc), best (lowest regret) first."""
    from study.attention import released_k

    def paper(i: int, C: float, backbone: str) -> int:
        return psi(int(C), PAPER_GAMMA, PAPER_B)

    def timm(i: int, C: float, backbone: str) -> int:
        return psi(int(C), PAPER_GAMMA, PAPER_B, "timm")

    def released(i: int, C: float, backbone: str) -> int | None:
        try:
            ks = released_k(backbone)
        except ValueError:
            return None
        return ks[i] if i < len(ks) else None

    cands: list[tuple[str, str, Callable[[int, float, str], int | None]]] = [
        ("paper_psi", "psi(C) with gamma=2, b=1 (ECA-Net eq. 12, the authors' code)", paper),
        ("timm_rule", "psi(C) with gamma=2, b=1 and a floor of 3 (timm's EcaModule)", timm),
        ("k3", "k=3 in every stage (the authors' code default)", lambda i, C, bb: 3),
        ("released", "the authors' released per-stage k (ResNet-18 3,5,7,7; ResNet-50 3,5,5,7; ...)", released),
    ]
    if fitted is not None:
        cands.append(("fitted_psi", f"psi(C) with gamma={fitted.gamma:g}, b={fitted.b:g} fitted to this study (in-sample)",
                      lambda i, C, bb, f=fitted: psi(int(C), f.gamma, f.b)))
    rows = [_score(model, n, d, fn, paper).row() for n, d, fn in cands]
    out = pd.DataFrame(rows)
    return out.sort_values("regret", na_position="last", kind="stable").reset_index(drop=True)
