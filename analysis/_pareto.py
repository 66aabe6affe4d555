"""Pareto fronts of top-1 against cost, hypervolume, and the cost of attention against its gain.

A point dominates another when it is no worse in every objective and strictly better in at
least one; equal points therefore do not dominate each other and are both on the front.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from analysis._load import FrameSource, coerce_frames
from study.validate import ConfigError

if TYPE_CHECKING:
    from numpy.typing import ArrayLike

__all__ = ["COSTS", "non_dominated", "pareto_front", "hypervolume", "front_hypervolumes", "attention_gain"]

#: cost name -> trials column (all minimized)
COSTS: dict[str, str] = {"params": "params", "macs": "macs", "latency": "latency_ms", "macs_224": "macs_224"}


def non_dominated(points: ArrayLike, *, maximize: Sequence[bool] | None = None, chunk: int = 2048) -> np.ndarray:
    """Boolean mask of the non-dominated rows of an (n, d) array.

    ``maximize[j]`` says whether column j is maximized (default: all minimized). Rows with a
    NaN are never on the front (and dominate nothing).
    """
    P = np.asarray(points, float)
    if P.ndim != 2:
        raise ConfigError("points", f"expected an (n, d) array, got shape {P.shape}")
    n, d = P.shape
    if maximize is not None:
        if len(maximize) != d:
            raise ConfigError("maximize", f"expected {d} flags, got {len(maximize)}")
        P = np.where(np.asarray(maximize, bool)[None, :], -P, P)
    valid = np.all(np.isfinite(P), axis=1)
    Q = P[valid]
    out = np.zeros(n, bool)
    if len(Q) == 0:
        return out
    if d == 2:
        out[np.flatnonzero(valid)] = _non_dominated_2d(Q)
        return out
    mask = np.ones(len(Q), bool)
    for s in range(0, len(Q), chunk):
        A = Q[s:s + chunk]  # candidates
        le = np.all(Q[None, :, :] <= A[:, None, :], axis=2)  # le[a, q]: q no worse than a everywhere
        lt = np.any(Q[None, :, :] < A[:, None, :], axis=2)
        mask[s:s + chunk] = ~np.any(le & lt, axis=1)
    out[np.flatnonzero(valid)] = mask
    return out


def _non_dominated_2d(Q: np.ndarray) -> np.ndarray:
    """Both columns minimized, O(n log n): sorted by x, a point is on the front iff its y is
    the least among points with the same x and below every y of a smaller x."""
    order = np.lexsort((Q[:, 1], Q[:, 0]))
    x, y = Q[order, 0], Q[order, 1]
    starts = np.flatnonzero(np.r_[True, x[1:] != x[:-1]])
    gmin = np.minimum.reduceat(y, starts)  # least y per distinct x
    prev = np.r_[np.inf, np.minimum.accumulate(gmin)[:-1]]  # least y over smaller x
    group = np.repeat(np.arange(len(starts)), np.diff(np.r_[starts, len(x)]))
    keep = (y == gmin[group]) & (y < prev[group])
    mask = np.zeros(len(Q), bool)
    mask[order] = keep
    return mask


def _cost_column(cost: str) -> str:
    if cost in COSTS:
        return COSTS[cost]
    if cost in COSTS.values():
        return cost
    raise ConfigError("cost", f"must be one of {', '.join(COSTS)}, got {cost!r}")


def pareto_front(frames: FrameSource | pd.DataFrame, *, cost: str = "params", states: Sequence[str] = ("complete",)) -> pd.DataFrame:
    """The trials on the front of top-1 (maximized) against ``cost`` (minimized), sorted by cost.

    Only trials in ``states`` with a finite top-1 and cost take part. The returned frame is a
    copy of those trials' rows.
    """
    t = frames if isinstance(frames, pd.DataFrame) else coerce_frames(frames).trials
    col = _cost_column(cost)
    if t.empty or col not in t:
        return t.iloc[0:0].copy()
    t = t[t["state"].isin(states)]
    pts = np.stack([pd.to_numeric(t[col], errors="coerce").to_numpy(float), pd.to_numeric(t["top1"], errors="coerce").to_numpy(float)],
                   axis=1)
    mask = non_dominated(pts, maximize=[False, True])
    return t[mask].sort_values([col, "top1"], ascending=[True, False]).copy()


def hypervolume(cost: Sequence[float], top1: Sequence[float], *, reference: tuple[float, float]) -> float:
    """The area dominated by the points (cost minimized, top-1 maximized) and bounded by
    ``reference = (cost_ref, top1_ref)``: the union of the rectangles
    [cost, cost_ref] x [top1_ref, top1]. Points not better than the reference in both add
    nothing. Units: cost units x top-1 points; compare studies only with one reference.
    """
    c = np.asarray(cost, float)
    y = np.asarray(top1, float)
    cref, yref = map(float, reference)
    ok = np.isfinite(c) & np.isfinite(y) & (c < cref) & (y > yref)
    c, y = c[ok], y[ok]
    if c.size == 0:
        return 0.0
    order = np.argsort(c, kind="stable")
    c, y = c[order], y[order]
    area, best = 0.0, yref
    xs = np.append(c, cref)
    for i in range(c.size):
        best = max(best, y[i])
        area += (xs[i + 1] - xs[i]) * (best - yref)
    return float(area)


def front_hypervolumes(studies: Mapping[str, FrameSource], *, cost: str = "params",
                       reference: tuple[float, float] | None = None) -> pd.DataFrame:
    """Hypervolume of several studies' fronts under one reference point.

    Default reference: cost = 1.1 x the largest cost of any complete trial in any of the
    studies, top-1 = 0: a box every trial lies in, so the studies are comparable. ``hv_norm``
    is the hypervolume as a fraction of the box [0, cost_ref] x [top1_ref, 100].
    """
    col = _cost_column(cost)
    frs = {name: coerce_frames(f) for name, f in studies.items()}
    fronts = {name: pareto_front(f, cost=cost) for name, f in frs.items()}
    if reference is None:
        costs = [pd.to_numeric(f.complete[col], errors="coerce").max() for f in frs.values() if col in f.trials and len(f.complete)]
        costs = [c for c in costs if np.isfinite(c)]
        if not costs:
            raise ConfigError("hypervolume", f"no complete trial with a {cost} in any study")
        reference = (1.1 * max(costs), 0.0)
    rows = []
    for name, fr in fronts.items():
        hv = hypervolume(fr[col], fr["top1"], reference=reference) if len(fr) else 0.0
        rows.append({"study": name, "cost": cost, "front_size": len(fr), "hypervolume": hv,
                     "hv_norm": hv / (reference[0] * (100.0 - reference[1])), "ref_cost": reference[0], "ref_top1": reference[1]})
    return pd.DataFrame(rows)


def _welch_interval(group: pd.Series, base: pd.Series, level: float = 0.95) -> tuple[float, float]:
    """The ``level`` Welch t interval of ``group``'s mean top-1 minus ``base``'s (rows with
    ``n``, ``mean_top1``, ``std_top1``); NaN where either has fewer than two trials."""
    from scipy import stats

    n1, n0 = float(group["n"]), float(base["n"])
    if n1 < 2 or n0 < 2:
        return (math.nan, math.nan)
    v1, v0 = float(group["std_top1"]) ** 2 / n1, float(base["std_top1"]) ** 2 / n0
    se = math.sqrt(v1 + v0)
    diff = float(group["mean_top1"]) - float(base["mean_top1"])
    if se == 0:
        return (diff, diff)
    df = (v1 + v0) ** 2 / (v1**2 / (n1 - 1) + v0**2 / (n0 - 1))
    half = float(stats.t.ppf(0.5 + level / 2, df)) * se
    return (diff - half, diff + half)


def attention_gain(frames: FrameSource | pd.DataFrame, *, states: Sequence[str] = ("complete",)) -> pd.DataFrame:
    """Each attention pattern's top-1 gain over the ``none`` baseline against its added cost.

    Grouped by backbone and width (a gain is measured against ``none`` trials of the same
    backbone and width); per attention label (:func:`analysis._load.summarize_kinds`):
    number of trials, mean and best top-1, gain of mean and of best over ``none``, the gain of
    the mean's 95 % Welch t interval ``gain_lo``/``gain_hi`` (NaN where either group has
    fewer than two trials, and for ``none`` itself), and the median added params, MACs and
    latency. Groups without a ``none`` baseline get NaN gains. ``gain_best`` is the best of
    ``n`` runs against the best of the baseline's: it grows with ``n`` and has no interval.
    """
    t = coerce_frames(frames).trials if not isinstance(frames, pd.DataFrame) else frames
    cols = ["backbone", "width", "attention", "n", "mean_top1", "best_top1", "gain_mean", "gain_lo", "gain_hi", "gain_best",
            "added_params", "added_macs", "added_latency_ms", "params", "macs", "latency_ms"]
    if t.empty:
        return pd.DataFrame(columns=cols)
    t = t[t["state"].isin(states) & t["top1"].notna()].copy()
    if t.empty:
        return pd.DataFrame(columns=cols)
    t["backbone"] = t["backbone"].fillna("?")
    agg = t.groupby(["backbone", "width", "attention"], dropna=False).agg(
        n=("top1", "size"), mean_top1=("top1", "mean"), best_top1=("top1", "max"), std_top1=("top1", "std"),
        params=("params", "median"), macs=("macs", "median"), latency_ms=("latency_ms", "median"),
    ).reset_index()
    out = []
    for _, g in agg.groupby(["backbone", "width"], dropna=False):
        base = g[g["attention"] == "none"]
        b = base.iloc[0] if len(base) else None
        for _, r in g.iterrows():
            row = r.to_dict()
            for name, col in (("gain_mean", "mean_top1"), ("gain_best", "best_top1")):
                row[name] = r[col] - b[col] if b is not None else math.nan
            row["gain_lo"], row["gain_hi"] = (_welch_interval(r, b) if b is not None and r["attention"] != "none"
                                              else (math.nan, math.nan))
            for name, col in (("added_params", "params"), ("added_macs", "macs"), ("added_latency_ms", "latency_ms")):
                row[name] = r[col] - b[col] if b is not None else math.nan
            out.append(row)
    res = pd.DataFrame(out)[cols]
    return res.sort_values(["backbone", "width", "gain_mean"], ascending=[True, True, False], na_position="last").reset_index(drop=True)
