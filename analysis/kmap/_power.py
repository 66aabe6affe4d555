"""Power of the k-vs-C test for a design, before any compute is spent.

For configurations drawn from a study's design, a planted k effect and a noise level, the
F-test of "k matters" (:mod:`analysis.kmap._effect`) has power ``1 - F(crit; df1, df2, lambda)``,
the non-central F with noncentrality ``lambda = || W^1/2 (I - H0) mu ||^2 / sigma^2``: ``mu``
the planted configuration means, ``H0`` the weighted projection on the nuisance columns
(width strata, stage kinds) and ``W`` the weights (runs per configuration). The planted
effect enters squared, so the smallest detectable effect at a budget follows from one
noncentrality.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from analysis.kmap._data import KData
from analysis.kmap._model import design
from study.validate import ConfigError

__all__ = ["PowerPoint", "design_power", "detectable_effect", "f_power", "model_parameters", "noncentrality"]


def model_parameters(data: KData) -> int:
    """The number of parameters of the k-vs-C model on ``data``'s configurations (width
    strata and stage kinds, and the estimable (C, k) cells): a study needs more
    configurations than this to be analysed."""
    d = design(data)
    return int(d.X0.shape[1] + d.Xk.shape[1])


def f_power(lam: float, df1: int, df2: int, alpha: float) -> float:
    """Power of the F-test at level ``alpha`` with noncentrality ``lam`` (NaN without df)."""
    from scipy import stats

    if df2 <= 0 or df1 <= 0:
        return math.nan
    crit = stats.f.ppf(1 - alpha, df1, df2)
    return float(stats.ncf.sf(crit, df1, df2, max(lam, 1e-12)))


def noncentrality(data: KData, effect_of: Callable[[float, float], float], *, sigma: float) -> tuple[float, int, int]:
    """``(lambda, df1, df2)`` of the F-test on ``data``'s configurations (their ``n`` are the
    runs per configuration) when a stage with C channels and kernel size k adds
    ``effect_of(C, k)`` points to top-1 and a run's noise has standard deviation ``sigma``."""
    if not sigma > 0:
        raise ConfigError("sigma", f"must be > 0, got {sigma!r}")
    d = design(data)
    cf = data.configs
    mu = np.zeros(len(cf))
    for i in range(data.num_stages):
        C, k = cf[f"C{i}"].to_numpy(float), cf[f"k{i}"].to_numpy(float)
        mu += np.array([effect_of(c, kk) if math.isfinite(kk) else 0.0 for c, kk in zip(C, k)])
    w = np.sqrt(cf["n"].to_numpy(float))
    X0, X1 = d.X0 * w[:, None], np.column_stack([d.X0, d.Xk]) * w[:, None]
    m = mu * w

    def resid(X: np.ndarray) -> np.ndarray:
        if X.shape[1] == 0:
            return m
        coef, *_ = np.linalg.lstsq(X, m, rcond=None)
        return m - X @ coef

    lam = float((resid(X0) @ resid(X0) - resid(X1) @ resid(X1)) / sigma**2)
    return lam, int(d.Xk.shape[1]), int(len(cf) - X1.shape[1])


@dataclass(frozen=True)
class PowerPoint:
    """Power at one number of configurations (mean over the drawn designs)."""

    configs: int
    power: float
    df: tuple[int, int]
    lam: float


def design_power(designs: Sequence[KData], effect_of: Callable[[float, float], float], *, sigma: float,
                 alpha: float = 0.05) -> PowerPoint:
    """Mean power over ``designs`` (draws of one design at one size)."""
    pts = [noncentrality(d, effect_of, sigma=sigma) for d in designs]
    powers = [p for p in (f_power(lam, df1, df2, alpha) for lam, df1, df2 in pts) if math.isfinite(p)]
    return PowerPoint(configs=designs[0].n_configs, power=float(np.mean(powers)) if powers else math.nan,
                      df=(pts[0][1], pts[0][2]), lam=float(np.mean([p[0] for p in pts])))


def detectable_effect(designs: Sequence[KData], effect_of: Callable[[float, float], float], *, effect: float, sigma: float,
                      alpha: float = 0.05, power: float = 0.8) -> float:
    """The smallest multiple of the planted ``effect`` (in points) that ``designs`` detect
    with mean power ``power``: noncentrality grows with the effect squared."""
    pts = [noncentrality(d, effect_of, sigma=sigma) for d in designs]
    if any(p[2] <= 0 for p in pts):
        return math.inf

    def mean_power(scale: float) -> float:
        return float(np.mean([f_power(lam * scale**2, df1, df2, alpha) for lam, df1, df2 in pts]))

    lo, hi = 0.0, 1.0
    while mean_power(hi) < power:
        hi *= 2
        if hi > 1e6:
            return math.inf
    for _ in range(60):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if mean_power(mid) < power else (lo, mid)
    return effect * hi

