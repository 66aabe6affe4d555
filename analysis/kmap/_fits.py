"""Fits of a mapping k = psi(C) to (C, k) points: psi with (gamma, b) by grid search (both
rounding rules, every equal-loss pair), the continuous k ~ alpha log2(C) + beta with bootstrap
intervals, and the linear k ~ a C + c that ECA-Net (Sec. 3.2.3) rejected.

These score a mapping by its squared (or absolute) error in k against given points, e.g. the
k of a paper's table (``python -m analysis.kmap --points FILE.csv``). A study is analysed
by the top-1 a mapping loses instead (:mod:`analysis.kmap._effect`, :mod:`analysis.kmap._mappings`):
error in k says nothing about accuracy.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from study.validate import ConfigError

__all__ = [
    "PAPER_B",
    "PAPER_GAMMA",
    "ContinuousFit",
    "KmapFit",
    "LinearFit",
    "PsiFit",
    "fit_continuous",
    "fit_kmap",
    "fit_linear",
    "fit_psi",
    "jsonable",
]

PAPER_GAMMA = 2.0
PAPER_B = 1.0
DEFAULT_GAMMAS = np.round(np.arange(0.5, 8.0 + 1e-9, 0.05), 4)
DEFAULT_BS = np.round(np.arange(-4.0, 8.0 + 1e-9, 0.1), 4)
METRICS = ("mse", "mae")


def psi(C: int, gamma: float = 2, b: float = 1, rule: str = "paper") -> int:
    """:func:`study.attention.psi` (imported on first use: it brings torch in)."""
    from study.attention import psi as _psi

    return _psi(C, gamma, b, rule)


def _loss(pred: np.ndarray, k: np.ndarray, w: np.ndarray, metric: str) -> float:
    d = np.asarray(pred, float) - k
    e = d * d if metric == "mse" else np.abs(d)
    return float(np.sum(w * e) / np.sum(w))


def _nearest_odd(x: np.ndarray) -> np.ndarray:
    """Nearest odd integer >= 1 (ties go up)."""
    x = np.asarray(x, float)
    return np.maximum(1, 2 * np.floor(x / 2.0) + 1).astype(float)


def _check_points(C: Iterable[float], k: Iterable[float], weight: Iterable[float] | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    C = np.asarray(list(C), float)
    k = np.asarray(list(k), float)
    if C.ndim != 1 or C.shape != k.shape:
        raise ValueError(f"C and k: expected two sequences of the same length, got {C.shape} and {k.shape}")
    if len(C) == 0:
        raise ConfigError("points", "need at least one (C, k) point")
    if not np.all(np.isfinite(C)) or np.any(C < 1) or np.any(C != np.round(C)):
        raise ValueError(f"C: must be integers >= 1, got {C.tolist()}")
    if not np.all(np.isfinite(k)) or np.any(k <= 0):
        raise ConfigError("k", f"must be finite numbers > 0, got {k.tolist()}")
    w = np.ones_like(C) if weight is None else np.asarray(list(weight), float)
    if w.shape != C.shape or not np.all(np.isfinite(w)) or np.any(w < 0) or w.sum() <= 0:
        raise ConfigError("weight", "must be one finite number >= 0 per point, not all zero")
    return C.astype(int).astype(float), k, w


def _paper_pred(C: np.ndarray, rule: str = "paper") -> np.ndarray:
    return np.array([psi(int(c), PAPER_GAMMA, PAPER_B, rule) for c in C], float)


# --------------------------------------------------------------------------------------
# (a) psi with fitted (gamma, b)


@dataclass(frozen=True)
class PsiFit:
    """psi(C; gamma, b) fitted by grid search (rounding makes the loss piecewise constant).

    ``equal_loss`` holds every grid (gamma, b) whose loss equals the minimum; ``gamma`` and
    ``b`` name one member, the one nearest the set's centroid (in grid steps), so that the
    point does not favour either end of a flat valley. ``contains_paper`` tells whether the
    paper's (2, 1) is among them (when it lies on the grid).
    """

    rule: str
    metric: str
    gamma: float
    b: float
    loss: float
    paper_loss: float
    equal_loss: tuple[tuple[float, float], ...]
    contains_paper: bool
    n_points: int
    gammas: np.ndarray = field(repr=False)
    bs: np.ndarray = field(repr=False)
    losses: np.ndarray = field(repr=False)  # shape (len(gammas), len(bs))

    @property
    def gamma_range(self) -> tuple[float, float]:
        g = [p[0] for p in self.equal_loss]
        return (min(g), max(g))

    @property
    def b_range(self) -> tuple[float, float]:
        b = [p[1] for p in self.equal_loss]
        return (min(b), max(b))

    def predict(self, C: Iterable[float], gamma: float | None = None, b: float | None = None) -> np.ndarray:
        g = self.gamma if gamma is None else gamma
        bb = self.b if b is None else b
        return np.array([psi(int(c), g, bb, self.rule) for c in C], float)

    def to_dict(self, *, max_set: int | None = None) -> dict[str, Any]:
        pts = [list(p) for p in self.equal_loss]
        return {
            "gamma": self.gamma,
            "b": self.b,
            "rounding": self.rule,
            "metric": self.metric,
            "loss": self.loss,
            "paper_loss": self.paper_loss,
            "n_points": self.n_points,
            "n_equal_loss": len(pts),
            "gamma_range": list(self.gamma_range),
            "b_range": list(self.b_range),
            "contains_paper": self.contains_paper,
            "equal_loss_set": pts if max_set is None else pts[:max_set],
        }


def fit_psi(
    C: Iterable[float],
    k: Iterable[float],
    weight: Iterable[float] | None = None,
    *,
    rule: str = "paper",
    metric: str = "mse",
    gammas: Sequence[float] | None = None,
    bs: Sequence[float] | None = None,
) -> PsiFit:
    """Fit (gamma, b) of ``study.attention.psi(C, gamma, b, rule)`` to points by grid search.

    ``metric``: "mse" (weighted mean squared error in k) or "mae". Defaults: gamma in
    [0.5, 8] step 0.05, b in [-4, 8] step 0.1.
    """
    if metric not in METRICS:
        raise ConfigError("metric", f"must be one of {', '.join(METRICS)}, got {metric!r}")
    Cv, kv, w = _check_points(C, k, weight)
    gam = np.asarray(DEFAULT_GAMMAS if gammas is None else gammas, float)
    bb = np.asarray(DEFAULT_BS if bs is None else bs, float)
    if gam.size == 0 or bb.size == 0 or np.any(gam <= 0):
        raise ValueError("gammas, bs: need non-empty grids with gamma > 0")
    psi(int(Cv[0]), PAPER_GAMMA, PAPER_B, rule)  # validates the rule with psi's own message
    uniq, inv = np.unique(Cv, return_inverse=True)
    # k per unique C for every grid point: psi is called, never re-implemented
    pred = np.empty((gam.size, bb.size, uniq.size))
    for gi, g in enumerate(gam):
        for bi, b in enumerate(bb):
            pred[gi, bi] = [psi(int(c), float(g), float(b), rule) for c in uniq]
    d = pred[:, :, inv] - kv
    e = d * d if metric == "mse" else np.abs(d)
    losses = (e * w).sum(axis=2) / w.sum()
    best = float(losses.min())
    tol = 1e-9 * max(1.0, abs(best))
    gi, bi = np.nonzero(losses <= best + tol)
    members = sorted((float(gam[i]), float(bb[j])) for i, j in zip(gi, bi))
    # representative: the member nearest the centroid, in grid-index units
    ci, cj = gi.mean(), bi.mean()
    r = int(np.argmin((gi - ci) ** 2 + (bi - cj) ** 2))
    paper_loss = _loss(_paper_pred(Cv, rule), kv, w, metric)
    contains = any(abs(g - PAPER_GAMMA) < 1e-9 and abs(b - PAPER_B) < 1e-9 for g, b in members)
    return PsiFit(
        rule=rule, metric=metric, gamma=float(gam[gi[r]]), b=float(bb[bi[r]]), loss=best, paper_loss=paper_loss,
        equal_loss=tuple(members), contains_paper=contains, n_points=len(Cv), gammas=gam, bs=bb, losses=losses,
    )


# --------------------------------------------------------------------------------------
# (b) continuous k ~ alpha*log2(C) + beta, (c) linear in C


def _wls(x: np.ndarray, y: np.ndarray, w: np.ndarray) -> tuple[float, float]:
    if np.unique(x[w > 0]).size < 2:
        raise ConfigError("fit", "needs at least two distinct C values with weight > 0")
    sw = np.sqrt(w)
    A = np.stack([x, np.ones_like(x)], axis=1) * sw[:, None]
    coef, *_ = np.linalg.lstsq(A, y * sw, rcond=None)
    return float(coef[0]), float(coef[1])


@dataclass(frozen=True)
class ContinuousFit:
    """k ~ alpha*log2(C) + beta; the psi parameters are gamma = 1/alpha, b = beta/alpha.

    Intervals are bootstrap percentile intervals at ``confidence``: over resampled points,
    or over the given bootstrap replicates of the points. ``loss`` is the error of the
    continuous prediction, ``loss_odd`` that of the prediction rounded to the nearest odd k.
    """

    alpha: float
    beta: float
    alpha_ci: tuple[float, float]
    beta_ci: tuple[float, float]
    gamma_ci: tuple[float, float]
    b_ci: tuple[float, float]
    loss: float
    loss_odd: float
    paper_loss: float
    metric: str
    confidence: float
    n_bootstrap: int

    @property
    def gamma(self) -> float:
        return 1.0 / self.alpha if self.alpha != 0 else math.inf

    @property
    def b(self) -> float:
        return self.beta / self.alpha if self.alpha != 0 else math.nan

    def predict(self, C: Iterable[float]) -> np.ndarray:
        return self.alpha * np.log2(np.asarray(list(C), float)) + self.beta

    def to_dict(self) -> dict[str, Any]:
        return {
            "alpha": self.alpha, "beta": self.beta, "gamma": self.gamma, "b": self.b,
            "alpha_ci": list(self.alpha_ci), "beta_ci": list(self.beta_ci),
            "gamma_ci": list(self.gamma_ci), "b_ci": list(self.b_ci),
            "loss": self.loss, "loss_odd": self.loss_odd, "paper_loss": self.paper_loss,
            "metric": self.metric, "confidence": self.confidence, "n_bootstrap": self.n_bootstrap,
        }


def _percentile_ci(samples: np.ndarray, confidence: float) -> tuple[float, float]:
    s = samples[np.isfinite(samples)]
    if s.size < 2:
        return (math.nan, math.nan)
    lo = (1 - confidence) / 2 * 100
    return (float(np.percentile(s, lo)), float(np.percentile(s, 100 - lo)))


def fit_continuous(
    C: Iterable[float],
    k: Iterable[float],
    weight: Iterable[float] | None = None,
    *,
    metric: str = "mse",
    n_bootstrap: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
    replicates: Sequence[tuple[Sequence[float], Sequence[float]]] | None = None,
) -> ContinuousFit:
    """Weighted least squares of k on log2(C) with bootstrap percentile intervals.

    ``replicates``: optional bootstrap replicates of the points ((C, k) pairs, e.g. from
    :func:`preferred_k`), used instead of resampling the points themselves.
    """
    if metric not in METRICS:
        raise ConfigError("metric", f"must be one of {', '.join(METRICS)}, got {metric!r}")
    if not 0 < confidence < 1:
        raise ConfigError("confidence", f"must be in (0, 1), got {confidence!r}")
    if n_bootstrap < 0:
        raise ConfigError("n_bootstrap", f"must be >= 0, got {n_bootstrap!r}")
    Cv, kv, w = _check_points(C, k, weight)
    x = np.log2(Cv)
    alpha, beta = _wls(x, kv, w)
    boots: list[tuple[float, float]] = []
    if replicates is not None:
        for rc, rk in replicates:
            rc, rk = np.asarray(rc, float), np.asarray(rk, float)
            try:
                boots.append(_wls(np.log2(rc), rk, np.ones_like(rc)))
            except ValueError:
                continue
    else:
        rng = np.random.default_rng(seed)
        n = len(Cv)
        for _ in range(n_bootstrap):
            idx = rng.integers(0, n, n)
            try:
                boots.append(_wls(x[idx], kv[idx], w[idx]))
            except ValueError:
                continue
    B = np.array(boots, float).reshape(-1, 2)
    a_ci = _percentile_ci(B[:, 0], confidence)
    # gamma = 1/alpha is monotone in alpha, so its percentile interval is the image of alpha's;
    # where alpha's interval reaches across 0, gamma (and b = beta/alpha) are unbounded
    if a_ci[0] > 1e-9 or a_ci[1] < -1e-9:
        g_ci = (1.0 / a_ci[1], 1.0 / a_ci[0])
        b_ci = _percentile_ci(B[:, 1] / B[:, 0], confidence)
    else:
        g_ci = (1.0 / a_ci[1] if a_ci[1] > 1e-9 else math.nan, math.inf) if math.isfinite(a_ci[1]) else (math.nan, math.nan)
        b_ci = (math.nan, math.nan)
    pred = alpha * x + beta
    return ContinuousFit(
        alpha=alpha, beta=beta,
        alpha_ci=a_ci, beta_ci=_percentile_ci(B[:, 1], confidence),
        gamma_ci=g_ci, b_ci=b_ci,
        loss=_loss(pred, kv, w, metric), loss_odd=_loss(_nearest_odd(pred), kv, w, metric),
        paper_loss=_loss(_paper_pred(Cv), kv, w, metric), metric=metric, confidence=confidence, n_bootstrap=len(B),
    )


@dataclass(frozen=True)
class LinearFit:
    """k ~ a*C + c: the linear mapping ECA-Net (Sec. 3.2.3) rejected, as a baseline."""

    a: float
    c: float
    loss: float
    loss_odd: float
    paper_loss: float
    metric: str

    def predict(self, C: Iterable[float]) -> np.ndarray:
        return self.a * np.asarray(list(C), float) + self.c

    def to_dict(self) -> dict[str, Any]:
        return {"a": self.a, "c": self.c, "loss": self.loss, "loss_odd": self.loss_odd, "paper_loss": self.paper_loss,
                "metric": self.metric}


def fit_linear(C: Iterable[float], k: Iterable[float], weight: Iterable[float] | None = None, *, metric: str = "mse") -> LinearFit:
    if metric not in METRICS:
        raise ConfigError("metric", f"must be one of {', '.join(METRICS)}, got {metric!r}")
    Cv, kv, w = _check_points(C, k, weight)
    a, c = _wls(Cv, kv, w)
    pred = a * Cv + c
    return LinearFit(a=a, c=c, loss=_loss(pred, kv, w, metric), loss_odd=_loss(_nearest_odd(pred), kv, w, metric),
                     paper_loss=_loss(_paper_pred(Cv), kv, w, metric), metric=metric)


@dataclass(frozen=True)
class KmapFit:
    """All fits of one set of (C, k) points; ``rule`` picks the psi fit shown first."""

    points: pd.DataFrame
    psi: Mapping[str, PsiFit]
    continuous: ContinuousFit | None
    linear: LinearFit | None
    rule: str = "paper"
    notes: tuple[str, ...] = ()

    def to_dict(self, *, max_set: int | None = None) -> dict[str, Any]:
        main = self.psi[self.rule].to_dict(max_set=max_set)
        out: dict[str, Any] = dict(main)
        if self.continuous is not None:
            c = self.continuous
            out.update({"alpha": c.alpha, "beta": c.beta, "alpha_ci": list(c.alpha_ci), "beta_ci": list(c.beta_ci)})
        else:
            out.update({"alpha": None, "beta": None})
        out["fits"] = {
            **{f"psi_{r}": f.to_dict(max_set=max_set) for r, f in self.psi.items()},
            "continuous": self.continuous.to_dict() if self.continuous else None,
            "linear": self.linear.to_dict() if self.linear else None,
        }
        out["points"] = [{"C": int(r.C), "k": float(r.k), "weight": float(r.weight)} for r in self.points.itertuples()]
        if self.notes:
            out["notes"] = list(self.notes)
        return jsonable(out)

    def table(self) -> pd.DataFrame:
        """One row per fit: name, gamma, b, parameters, loss, paper's loss."""
        rows = []
        for r, f in self.psi.items():
            rows.append({"fit": f"psi ({r})", "gamma": f.gamma, "b": f.b,
                         "gamma_range": f"{f.gamma_range[0]:g}..{f.gamma_range[1]:g}",
                         "b_range": f"{f.b_range[0]:g}..{f.b_range[1]:g}", "n_equal": len(f.equal_loss),
                         "loss": f.loss, "paper_loss": f.paper_loss, "parameters": ""})
        if self.continuous is not None:
            c = self.continuous
            rows.append({"fit": "continuous", "gamma": c.gamma, "b": c.b,
                         "gamma_range": f"{c.gamma_ci[0]:.3g}..{c.gamma_ci[1]:.3g}",
                         "b_range": f"{c.b_ci[0]:.3g}..{c.b_ci[1]:.3g}", "n_equal": np.nan,
                         "loss": c.loss, "paper_loss": c.paper_loss,
                         "parameters": f"alpha={c.alpha:.4g} [{c.alpha_ci[0]:.3g}, {c.alpha_ci[1]:.3g}] "
                                       f"beta={c.beta:.4g} [{c.beta_ci[0]:.3g}, {c.beta_ci[1]:.3g}] odd-rounded loss={c.loss_odd:.4g}"})
        if self.linear is not None:
            li = self.linear
            rows.append({"fit": "linear in C", "gamma": np.nan, "b": np.nan, "gamma_range": "", "b_range": "", "n_equal": np.nan,
                         "loss": li.loss, "paper_loss": li.paper_loss,
                         "parameters": f"a={li.a:.4g} c={li.c:.4g} odd-rounded loss={li.loss_odd:.4g}"})
        out = pd.DataFrame(rows)
        out["n_equal"] = out["n_equal"].astype("Int64")
        return out


def fit_kmap(
    C: Iterable[float],
    k: Iterable[float],
    weight: Iterable[float] | None = None,
    *,
    rule: str = "paper",
    metric: str = "mse",
    n_bootstrap: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
    replicates: Sequence[tuple[Sequence[float], Sequence[float]]] | None = None,
    gammas: Sequence[float] | None = None,
    bs: Sequence[float] | None = None,
) -> KmapFit:
    """Fit psi (both rules), the continuous log form and the linear baseline to points.

    With a single distinct C only the psi fits are made (a line needs two); ``notes`` says so.
    """
    Cv, kv, w = _check_points(C, k, weight)
    psi(int(Cv[0]), PAPER_GAMMA, PAPER_B, rule)  # validates rule
    fits = {r: fit_psi(Cv, kv, w, rule=r, metric=metric, gammas=gammas, bs=bs) for r in ("paper", "timm")}
    notes: list[str] = []
    cont = lin = None
    if np.unique(Cv[w > 0]).size >= 2:
        cont = fit_continuous(Cv, kv, w, metric=metric, n_bootstrap=n_bootstrap, confidence=confidence, seed=seed, replicates=replicates)
        lin = fit_linear(Cv, kv, w, metric=metric)
    else:
        notes.append("one distinct C: the continuous and linear fits need at least two")
    pts = pd.DataFrame({"C": Cv.astype(int), "k": kv, "weight": w})
    return KmapFit(points=pts, psi=fits, continuous=cont, linear=lin, rule=rule, notes=tuple(notes))


def jsonable(obj: Any) -> Any:
    """``obj`` with numpy scalars as Python numbers and non-finite floats as None (JSON)."""
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, (np.floating, float)):
        v = float(obj)
        return v if math.isfinite(v) else None
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.bool_):
        return bool(obj)
    return obj
