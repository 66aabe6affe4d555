"""The k-vs-C analysis; the public module and its documentation are :mod:`analysis.kmap`."""

from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

from analysis._load import psi_kinds


__all__ = [
    "PAPER_GAMMA",
    "PAPER_B",
    "PreferredK",
    "PsiFit",
    "ContinuousFit",
    "LinearFit",
    "KmapFit",
    "KmapAnalysis",
    "preferred_k",
    "fit_psi",
    "fit_continuous",
    "fit_linear",
    "fit_kmap",
    "analyze_kmap",
    "gamma_b_plane",
    "read_points",
    "main",
]

PAPER_GAMMA = 2.0
PAPER_B = 1.0
DEFAULT_GAMMAS = np.round(np.arange(0.5, 8.0 + 1e-9, 0.05), 4)
DEFAULT_BS = np.round(np.arange(-4.0, 8.0 + 1e-9, 0.1), 4)
METRICS = ("mse", "mae")


def psi(C: int, gamma: float = 2, b: float = 1, rule: str = "paper") -> int:
    """:func:`study.attention.psi`, imported on first use (it brings torch in)."""
    global psi
    from study.attention import psi as _psi

    psi = _psi
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
        raise ValueError("points: need at least one (C, k) point")
    if not np.all(np.isfinite(C)) or np.any(C < 1) or np.any(C != np.round(C)):
        raise ValueError(f"C: must be integers >= 1, got {C.tolist()}")
    if not np.all(np.isfinite(k)) or np.any(k <= 0):
        raise ValueError(f"k: must be finite numbers > 0, got {k.tolist()}")
    w = np.ones_like(C) if weight is None else np.asarray(list(weight), float)
    if w.shape != C.shape or not np.all(np.isfinite(w)) or np.any(w < 0) or w.sum() <= 0:
        raise ValueError("weight: must be one finite number >= 0 per point, not all zero")
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
        raise ValueError(f"metric: must be one of {', '.join(METRICS)}, got {metric!r}")
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
        raise ValueError("fit: needs at least two distinct C values with weight > 0")
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
        raise ValueError(f"metric: must be one of {', '.join(METRICS)}, got {metric!r}")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence: must be in (0, 1), got {confidence!r}")
    if n_bootstrap < 0:
        raise ValueError(f"n_bootstrap: must be >= 0, got {n_bootstrap!r}")
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
        return {"a": self.a, "c": self.c, "loss": self.loss, "loss_odd": self.loss_odd, "paper_loss": self.paper_loss, "metric": self.metric}


def fit_linear(C: Iterable[float], k: Iterable[float], weight: Iterable[float] | None = None, *, metric: str = "mse") -> LinearFit:
    if metric not in METRICS:
        raise ValueError(f"metric: must be one of {', '.join(METRICS)}, got {metric!r}")
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
        return _jsonable(out)

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


# --------------------------------------------------------------------------------------
# 1. preferred k per C from a study


@dataclass(frozen=True)
class PreferredK:
    """k* per C estimated from a study.

    ``table``: one row per C with ``k_star`` (from the fit on all trials), the bootstrap
    distribution (``k_mode``, ``k_mean``, ``k_lo``/``k_hi`` percentile bounds at
    ``confidence``, ``p_star`` - the share of replicates agreeing with ``k_star`` -,
    ``dist`` as "k:share" pairs), ``n_trials`` (trials whose stage had C channels and ECA)
    and ``stages`` (which stage indices had C). ``curves``: the partial dependence
    (predicted top-1 per k) for every C. ``replicates``: k* per C per bootstrap replicate.
    """

    table: pd.DataFrame
    curves: pd.DataFrame
    replicates: pd.DataFrame
    n_trials: int
    n_pruned: int
    model: str
    pruned_weight: float
    confidence: float

    def points(self) -> tuple[np.ndarray, np.ndarray]:
        return self.table["C"].to_numpy(float), self.table["k_star"].to_numpy(float)

    def replicate_points(self) -> list[tuple[np.ndarray, np.ndarray]]:
        out = []
        for _, g in self.replicates.groupby("replicate"):
            out.append((g["C"].to_numpy(float), g["k_star"].to_numpy(float)))
        return out


def _make_model(model: str, seed: int):
    if model == "gbr":
        from sklearn.ensemble import GradientBoostingRegressor

        return GradientBoostingRegressor(n_estimators=400, max_depth=3, learning_rate=0.03, subsample=0.8, random_state=seed)
    if model == "rf":
        from sklearn.ensemble import RandomForestRegressor

        return RandomForestRegressor(n_estimators=200, min_samples_leaf=2, random_state=seed, n_jobs=1)
    raise ValueError(f"model: must be one of gbr, rf, got {model!r}")


def _eca_design(trials: pd.DataFrame, n_stages: int, by: str) -> tuple[np.ndarray, list[str], dict[str, np.ndarray]]:
    """Feature matrix: per stage k (0 where not ECA), log2(C), kind code; width; backbone code."""
    cols: list[str] = []
    feats: list[np.ndarray] = []
    info: dict[str, np.ndarray] = {}
    for i in range(n_stages):
        kind = trials.get(f"stage{i}_kind", pd.Series([None] * len(trials), index=trials.index)).astype(object)
        is_eca = kind.isin(psi_kinds()).to_numpy()
        k = pd.to_numeric(trials.get(f"stage{i}_k", pd.Series(np.nan, index=trials.index)), errors="coerce").to_numpy(float)
        C = pd.to_numeric(trials.get(f"stage{i}_{by}", pd.Series(np.nan, index=trials.index)), errors="coerce").to_numpy(float)
        kk = np.where(is_eca & np.isfinite(k), k, 0.0)
        info[f"eca{i}"] = is_eca & np.isfinite(k) & np.isfinite(C)
        info[f"C{i}"] = C
        info[f"k{i}"] = kk
        codes = pd.Categorical(kind.fillna("?")).codes.astype(float)
        feats += [kk, np.log2(np.where(np.isfinite(C) & (C > 0), C, 1.0)), codes]
        cols += [f"k{i}", f"log2C{i}", f"kind{i}"]
    width = pd.to_numeric(trials.get("width", pd.Series(np.nan, index=trials.index)), errors="coerce").fillna(1.0).to_numpy(float)
    bb = pd.Categorical(trials.get("backbone", pd.Series("?", index=trials.index)).fillna("?")).codes.astype(float)
    # epochs run: pruned trials reached their value in fewer epochs; the partial dependence
    # is read at the full budget (info["budget"]), so their truncation is modelled, not ignored
    ran = pd.to_numeric(trials.get("epochs", pd.Series(np.nan, index=trials.index)), errors="coerce").to_numpy(float)
    budget = pd.to_numeric(trials.get("budget_epochs", pd.Series(np.nan, index=trials.index)), errors="coerce").to_numpy(float)
    full = np.nanmax(ran) if np.isfinite(ran).any() else 1.0
    budget = np.where(np.isfinite(budget), budget, full)
    ran = np.where(np.isfinite(ran), ran, budget)
    info["budget"] = budget
    feats += [width, bb, ran]
    cols += ["width", "backbone", "epochs"]
    return np.stack(feats, axis=1), cols, info


def _kstar_per_C(model, X: np.ndarray, info: Mapping[str, np.ndarray], n_stages: int, rows: np.ndarray | None = None
                 ) -> tuple[dict[float, int], list[dict[str, Any]]]:
    """Partial dependence of the model on each stage's k, per C; argmax over observed odd k."""
    idx_all = np.arange(len(X)) if rows is None else rows
    blocks: list[np.ndarray] = []
    meta: list[tuple[float, int, int, int]] = []  # (C, stage, k, n rows)
    for i in range(n_stages):
        eca = info[f"eca{i}"][idx_all]
        if not eca.any():
            continue
        Cs = info[f"C{i}"][idx_all]
        ks = info[f"k{i}"][idx_all]
        for c in np.unique(Cs[eca]):
            sel = idx_all[eca & (Cs == c)]
            grid = np.unique(ks[eca & (Cs == c)])
            for kv in grid:
                Xb = X[sel].copy()
                Xb[:, 3 * i] = kv
                Xb[:, -1] = info["budget"][sel]
                blocks.append(Xb)
                meta.append((float(c), i, int(kv), len(sel)))
    if not blocks:
        return {}, []
    pred = model.predict(np.concatenate(blocks))
    pos = 0
    acc: dict[tuple[float, int], list[float]] = {}
    for (c, i, kv, n), Xb in zip(meta, blocks):
        m = float(pred[pos:pos + len(Xb)].mean())
        pos += len(Xb)
        s = acc.setdefault((c, kv), [0.0, 0.0])
        s[0] += m * n
        s[1] += n
    curves = [{"C": c, "k": kv, "pred_top1": s / n} for (c, kv), (s, n) in sorted(acc.items())]
    best: dict[float, int] = {}
    for c in sorted({r["C"] for r in curves}):
        rows_c = [r for r in curves if r["C"] == c]
        top = max(r["pred_top1"] for r in rows_c)
        best[c] = min(r["k"] for r in rows_c if r["pred_top1"] >= top - 1e-12)  # ties: the smaller k
    return best, curves


def preferred_k(
    frames: Any,
    *,
    by: str = "C",
    model: str = "gbr",
    n_bootstrap: int = 100,
    pruned_weight: float = 1.0,
    confidence: float = 0.9,
    seed: int = 0,
) -> PreferredK:
    """Estimate the preferred ECA k per channel count C from a study's trials.

    Trials (complete, and pruned with weight ``pruned_weight`` and the best top-1 they
    reached) with at least one ECA stage with a recorded k train a surrogate
    (``model="gbr"`` gradient boosting or ``"rf"`` a random forest) of top-1 on per-stage k,
    log2(C) and kind, width, backbone and the epochs the trial ran (so that a pruned trial's
    lower, earlier value is explained by its shorter run; predictions are read at the
    trial's full epoch budget). For each C, the surrogate's partial dependence on
    the k of every stage with C channels (over the trials with ECA there, k set to each odd
    k observed there) is averaged over those stages, weighted by their trial counts; k* is
    its argmax (ties: the smaller k). ``by="planes"`` uses the blocks' planes instead of the
    channels the attention acts on. Raises ``ValueError`` when there are too few ECA trials.
    """
    from analysis._load import coerce_frames

    fr = coerce_frames(frames)
    if by not in ("C", "planes"):
        raise ValueError(f"by: must be 'C' or 'planes', got {by!r}")
    if not pruned_weight >= 0:
        raise ValueError(f"pruned_weight: must be >= 0, got {pruned_weight!r}")
    if n_bootstrap < 0:
        raise ValueError(f"n_bootstrap: must be >= 0, got {n_bootstrap!r}")
    t = fr.trials
    n_stages = fr.num_stages
    if t.empty or n_stages == 0:
        raise ValueError("k-vs-C: the study has no trials with recorded stages")
    states = ["complete"] + (["pruned"] if pruned_weight > 0 else [])
    t = t[t["state"].isin(states) & np.isfinite(pd.to_numeric(t["top1"], errors="coerce"))]
    X, cols, info = _eca_design(t, n_stages, by)
    any_eca = np.zeros(len(t), bool)
    for i in range(n_stages):
        any_eca |= info[f"eca{i}"]
    t = t[any_eca]
    X = X[any_eca]
    info = {k: v[any_eca] for k, v in info.items()}
    n_varied = sum(np.unique(info[f"k{i}"][info[f"eca{i}"]]).size > 1 for i in range(n_stages))
    if len(t) < 8 or n_varied == 0:
        raise ValueError(f"k-vs-C: needs at least 8 finished ECA trials with k varied in some stage; the study has {len(t)} "
                         f"(stages with varied k: {n_varied})")
    y = pd.to_numeric(t["top1"]).to_numpy(float)
    w = np.where(t["state"].to_numpy() == "pruned", pruned_weight, 1.0)
    m = _make_model(model, seed)
    m.fit(X, y, sample_weight=w)
    best, curves = _kstar_per_C(m, X, info, n_stages)
    rng = np.random.default_rng(seed)
    reps: list[dict[str, Any]] = []
    n = len(X)
    for r in range(n_bootstrap):
        idx = rng.integers(0, n, n)
        mb = _make_model(model, seed + 1 + r)
        mb.fit(X[idx], y[idx], sample_weight=w[idx])
        bb, _ = _kstar_per_C(mb, X, info, n_stages, rows=np.unique(idx))
        reps += [{"replicate": r, "C": c, "k_star": kv} for c, kv in bb.items()]
    rep = pd.DataFrame(reps, columns=["replicate", "C", "k_star"])
    lo_q = (1 - confidence) / 2
    rows = []
    for c, ks in sorted(best.items()):
        ntr = sum(int(((info[f"C{i}"] == c) & info[f"eca{i}"]).sum()) for i in range(n_stages))
        stages = [i for i in range(n_stages) if ((info[f"C{i}"] == c) & info[f"eca{i}"]).any()]
        r = rep.loc[rep["C"] == c, "k_star"].to_numpy(float)
        if r.size:
            vals, counts = np.unique(r, return_counts=True)
            share = counts / counts.sum()
            mode = float(vals[np.argmax(counts)])
            dist = " ".join(f"{int(v)}:{s:.2f}" for v, s in zip(vals, share))
            lo, hi = float(np.quantile(r, lo_q, method="lower")), float(np.quantile(r, 1 - lo_q, method="higher"))
            p_star = float((r == ks).mean())
            mean = float(r.mean())
        else:
            mode = lo = hi = mean = float(ks)
            p_star, dist = math.nan, ""
        rows.append({"C": int(c), "k_star": int(ks), "k_mode": mode, "k_mean": mean, "k_lo": lo, "k_hi": hi,
                     "p_star": p_star, "dist": dist, "n_trials": ntr, "stages": ",".join(map(str, stages))})
    return PreferredK(
        table=pd.DataFrame(rows), curves=pd.DataFrame(curves, columns=["C", "k", "pred_top1"]), replicates=rep,
        n_trials=len(t), n_pruned=int((t["state"] == "pruned").sum()), model=model, pruned_weight=float(pruned_weight),
        confidence=confidence,
    )


@dataclass(frozen=True)
class KmapAnalysis:
    preferred: PreferredK
    fit: KmapFit


def analyze_kmap(
    frames: Any,
    *,
    by: str = "C",
    model: str = "gbr",
    n_bootstrap: int = 100,
    pruned_weight: float = 1.0,
    rule: str = "paper",
    metric: str = "mse",
    seed: int = 0,
) -> KmapAnalysis:
    """:func:`preferred_k` then :func:`fit_kmap` on its (C, k*) points, one point per C with
    equal weight; the continuous fit's intervals come from the k* bootstrap replicates."""
    pk = preferred_k(frames, by=by, model=model, n_bootstrap=n_bootstrap, pruned_weight=pruned_weight, seed=seed)
    C, k = pk.points()
    reps = pk.replicate_points() if n_bootstrap > 0 else None
    fit = fit_kmap(C, k, rule=rule, metric=metric, seed=seed, replicates=reps)
    return KmapAnalysis(preferred=pk, fit=fit)


# --------------------------------------------------------------------------------------
# (gamma, b) sampled directly


def _edges(values: np.ndarray, bins: int) -> tuple[np.ndarray, bool]:
    """Cell edges: midpoints between the values when at most ``bins`` distinct ones were
    sampled (exact cells), else ``bins`` equal-width bins over the sampled range."""
    u = np.unique(values)
    if u.size <= bins:
        if u.size == 1:
            return np.array([u[0] - 0.5, u[0] + 0.5]), True
        mid = (u[1:] + u[:-1]) / 2
        return np.concatenate([[u[0] - (mid[0] - u[0])], mid, [u[-1] + (u[-1] - mid[-1])]]), True
    return np.linspace(u[0], u[-1], bins + 1), False


def gamma_b_plane(frames: Any, *, bins: int = 8, states: Sequence[str] = ("complete",)) -> pd.DataFrame:
    """Top-1 over the psi (gamma, b) plane from trials whose ECA stages all asked for the
    same (gamma, b): one row per cell with ``gamma``, ``b`` (the cell's value or centre),
    its edges ``gamma_lo``/``gamma_hi``/``b_lo``/``b_hi``, ``n``, ``mean_top1``,
    ``best_top1`` and ``std_top1``. Sampled on a grid of at most ``bins`` values per axis,
    the cells are the grid points; sampled continuously, ``bins`` equal-width bins per axis.
    Empty when no trial sampled (gamma, b)."""
    from analysis._load import coerce_frames

    if bins < 1:
        raise ValueError(f"bins: must be >= 1, got {bins!r}")
    t = coerce_frames(frames).trials
    cols = ["gamma", "b", "n", "mean_top1", "best_top1", "std_top1", "gamma_lo", "gamma_hi", "b_lo", "b_hi"]
    if t.empty or "gamma" not in t:
        return pd.DataFrame(columns=cols)
    t = t[t["state"].isin(states) & t["gamma"].notna() & t["b"].notna() & t["top1"].notna()]
    if t.empty:
        return pd.DataFrame(columns=cols)
    g, b = t["gamma"].to_numpy(float), t["b"].to_numpy(float)
    ge, g_exact = _edges(g, bins)
    be, b_exact = _edges(b, bins)
    gi = np.clip(np.searchsorted(ge, g, side="right") - 1, 0, len(ge) - 2)
    bi = np.clip(np.searchsorted(be, b, side="right") - 1, 0, len(be) - 2)
    d = pd.DataFrame({"gi": gi, "bi": bi, "top1": t["top1"].to_numpy(float)})
    agg = d.groupby(["gi", "bi"])["top1"].agg(n="size", mean_top1="mean", best_top1="max", std_top1="std").reset_index()
    gu, bu = np.unique(g), np.unique(b)
    agg["gamma"] = gu[agg["gi"]] if g_exact else (ge[agg["gi"]] + ge[agg["gi"] + 1]) / 2
    agg["b"] = bu[agg["bi"]] if b_exact else (be[agg["bi"]] + be[agg["bi"] + 1]) / 2
    agg["gamma_lo"], agg["gamma_hi"] = ge[agg["gi"]], ge[agg["gi"] + 1]
    agg["b_lo"], agg["b_hi"] = be[agg["bi"]], be[agg["bi"] + 1]
    return agg[cols].sort_values(["gamma", "b"]).reset_index(drop=True)


# --------------------------------------------------------------------------------------
# command line


def read_points(path: str | Path) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Read a CSV with columns C and k (and optionally weight), header names case-insensitive."""
    p = Path(path)
    try:
        text = p.read_text()
    except OSError as exc:
        raise FileNotFoundError(f"{p}: cannot read points ({exc.strerror or exc})") from None
    rows = list(csv.reader(line for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")))
    if not rows:
        raise ValueError(f"{p}: empty file; expected a header with columns C, k and optionally weight")
    header = [h.strip().lower() for h in rows[0]]
    for need in ("c", "k"):
        if need not in header:
            raise ValueError(f"{p}: missing column {need.upper() if need == 'c' else need!r} (header: {', '.join(rows[0])})")
    ic, ik = header.index("c"), header.index("k")
    iw = header.index("weight") if "weight" in header else None
    C, K, W = [], [], []
    for n, r in enumerate(rows[1:], start=2):
        try:
            C.append(float(r[ic]))
            K.append(float(r[ik]))
            if iw is not None:
                W.append(float(r[iw]))
        except (ValueError, IndexError):
            raise ValueError(f"{p}: line {n}: expected numbers in columns C, k{', weight' if iw is not None else ''}, got {','.join(r)!r}") from None
    if not C:
        raise ValueError(f"{p}: no points below the header")
    return np.array(C), np.array(K), (np.array(W) if iw is not None else None)


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, (np.floating, float)):
        v = float(obj)
        return v if math.isfinite(v) else None
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.bool_):
        return bool(obj)
    return obj


def format_fit(fit: KmapFit) -> str:
    tab = fit.table()
    lines = [f"{len(fit.points)} points, {fit.points['C'].nunique()} distinct C; loss = weighted {fit.psi[fit.rule].metric}; "
             f"paper's psi (gamma=2, b=1) loss = {fit.psi['paper'].paper_loss:.4g}"]
    with pd.option_context("display.width", 200, "display.max_columns", 20, "display.max_colwidth", 90):
        lines.append(tab.to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    for r, f in fit.psi.items():
        pts = ", ".join(f"({g:g}, {b:g})" for g, b in f.equal_loss[:12])
        more = f" ... ({len(f.equal_loss)} in all)" if len(f.equal_loss) > 12 else ""
        lines.append(f"psi ({r}) equal-loss (gamma, b): {pts}{more}; paper's (2, 1) {'is' if f.contains_paper else 'is not'} among them")
    lines += list(fit.notes)
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    from study._cli import ArgumentParser, UsageError

    ap = ArgumentParser(prog="python -m analysis.kmap", description="Fit the ECA k = psi(C) mapping to (C, k) points or to a study's preferred k.")
    ap.add_argument("run", nargs="?", help="a run folder runs/NAME (or use --points or --storage)")
    ap.add_argument("--points", help="CSV with columns C, k and optionally weight")
    ap.add_argument("--storage", help="storage URL of the study (with --study)")
    ap.add_argument("--study", help="study name in the storage")
    ap.add_argument("--json", action="store_true", help="print the fits as JSON")
    ap.add_argument("--rule", default="paper", choices=["paper", "timm"], help="psi rounding rule reported first (both are fitted)")
    ap.add_argument("--metric", default="mse", choices=list(METRICS))
    ap.add_argument("--bootstrap", type=int, default=None, help="bootstrap replicates (default: 1000 for points, 100 for a study)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    sources = [x for x in (args.points, args.run, args.storage) if x]
    if len(sources) != 1:
        raise UsageError("give exactly one of --points FILE.csv, a run folder, or --storage URL (see python -m analysis.kmap --help)")
    if args.bootstrap is not None and args.bootstrap < 0:
        raise UsageError(f"--bootstrap: must be >= 0, got {args.bootstrap}")
    if args.points:
        C, K, W = read_points(args.points)
        fit = fit_kmap(C, K, W, rule=args.rule, metric=args.metric, n_bootstrap=1000 if args.bootstrap is None else args.bootstrap, seed=args.seed)
        pref = None
    else:
        from analysis._load import load

        fr = load(args.storage or args.run, args.study)
        an = analyze_kmap(fr, n_bootstrap=100 if args.bootstrap is None else args.bootstrap, rule=args.rule, metric=args.metric, seed=args.seed)
        fit, pref = an.fit, an.preferred
    if args.json:
        out = fit.to_dict()
        if pref is not None:
            out["preferred_k"] = _jsonable(pref.table.to_dict(orient="records"))
        print(json.dumps(out, indent=2))
    else:
        if pref is not None:
            print(f"preferred k per C ({pref.n_trials} trials, {pref.n_pruned} pruned at weight {pref.pruned_weight:g}; "
                  f"{pref.model} surrogate, {pref.replicates['replicate'].nunique()} bootstrap replicates):")
            print(pref.table.drop(columns=["k_mean"]).to_string(index=False, float_format=lambda v: f"{v:.3g}"))
            print()
        print(format_fit(fit))
    return 0
