"""psi fitted to a study by predicted top-1: the (gamma, b) whose psi curve maximises the top-1
the model predicts for the study's networks, over a grid, and the difference of every
distinct psi curve on that grid to the paper's psi (the rows the mapping table's max-t family
holds, so an interval of the chosen curve stays valid whichever curve the data chose;
:mod:`analysis.kmap._mappings`)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import numpy as np

from analysis.kmap._effect import KModel
from analysis.kmap._fits import DEFAULT_BS as BS
from analysis.kmap._fits import DEFAULT_GAMMAS as GAMMAS
from analysis.kmap._fits import PAPER_B, PAPER_GAMMA, psi
from analysis.kmap._model import MaxT

__all__ = ["PsiChoice", "fit_psi_by_top1", "networks"]


@dataclass(frozen=True)
class PsiChoice:
    """psi's (gamma, b) chosen by predicted top-1 on the study's data: ``equal`` holds every
    grid pair with the best value, ``gamma``/``b`` the one nearest their centroid; ``ks`` the
    k it gives per C; ``candidates``: the distinct psi curves on the grid it was chosen among
    and ``contrasts`` their differences to the paper's psi (rows of L, NaN-free; empty where
    the paper's psi cannot be scored); ``critical``: the max-t critical value of those
    curves alone (:func:`score_mappings` scores the fitted psi in the table's one family,
    which holds them); ``widths``: the networks it was chosen on."""

    gamma: float
    b: float
    equal: tuple[tuple[float, float], ...]
    contains_paper: bool
    ks: dict[int, int]
    candidates: int = 0
    critical: float = math.nan
    widths: tuple[str, ...] = ()
    contrasts: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)), repr=False, compare=False)

    def to_dict(self, max_set: int = 50) -> dict[str, Any]:
        return {"gamma": self.gamma, "b": self.b, "n_equal": len(self.equal),
                "gamma_range": [min(g for g, _ in self.equal), max(g for g, _ in self.equal)],
                "b_range": [min(b for _, b in self.equal), max(b for _, b in self.equal)],
                "contains_paper": self.contains_paper, "equal_set": [list(p) for p in self.equal[:max_set]],
                "k_per_C": {str(c): k for c, k in self.ks.items()}, "widths": list(self.widths),
                "chosen_on": "this study's data (in-sample); intervals simultaneous over every psi curve on the grid",
                "candidates": self.candidates, "critical": self.critical if math.isfinite(self.critical) else None}


def networks(model: KModel, widths: Sequence[str] | None = None) -> dict[str, tuple[str, list[float]]]:
    """stratum -> (backbone, C per stage) for every width of the study (or those named)."""
    cf = model.data.configs
    out = {}
    for stratum, g in cf.groupby("stratum", sort=True):
        if widths is not None and str(stratum) not in widths:
            continue
        r = g.iloc[0]
        out[str(stratum)] = (str(r["backbone"]), [float(r[f"C{i}"]) for i in range(model.data.num_stages)])
    return out


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
    psi, averaged over the networks; ``valid``: patterns whose every k, and the paper's, is
    estimable at every C."""
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
            valid[:] = False  # the paper's psi cannot be scored on these networks: no curve has a vs_paper
    return (total - paper) / max(n_nets, 1), valid


def fit_psi_by_top1(model: KModel, *, alpha: float = 0.05, seed: int = 0, widths: Sequence[str] | None = None) -> PsiChoice:
    """psi's (gamma, b) that maximises the predicted top-1 of the study's networks (those of
    ``widths``, default all), and the differences of every psi curve on the grid to the
    paper's psi, with their own max-t critical value (see the module doc)."""
    lv = model.estimable_levels()
    nets = networks(model, widths)
    Cs = sorted({C for _, cs in nets.values() for C in cs if C in lv})
    if not Cs:
        raise ValueError("k-vs-C: no network of the study has a stage whose k effects are estimable")
    weights = [sum(C in set(cs) for _, cs in nets.values()) for C in Cs]
    patterns, inverse = _psi_grid(tuple(Cs))
    th_hat = {C: {k: np.array([model.theta_vector(C, k) @ model.beta]) for k in lv[C]} for C in Cs}
    value = _pattern_values(patterns, Cs, weights, th_hat)[0]
    if not np.isfinite(value).any():
        raise ValueError("k-vs-C: no psi(C; gamma, b) on the grid gives only k values the study ran at every C")
    g, b, members = _best_on_grid(value, inverse)
    ks = {int(C): psi(int(C), g, b) for C in Cs}
    contains = any(abs(x - PAPER_GAMMA) < 1e-9 and abs(y - PAPER_B) < 1e-9 for x, y in members)
    L, valid = _pattern_contrasts(model, patterns, Cs, weights, len(nets))
    crit = MaxT(model, seed + 1).critical(L[valid], alpha) if valid.any() else math.nan
    return PsiChoice(g, b, members, contains, ks, int(np.isfinite(value).sum()), crit, tuple(nets), L[valid])
