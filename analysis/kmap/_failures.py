"""Runs that did not train, as an outcome of k, and runs far from their replicates.

A run that diverged (its loss became NaN) or collapsed (its top-1 fell to near chance,
:func:`analysis.kmap.collapsed_runs`) has no top-1 a model of noise could describe: it is
left out of the model of top-1 and counted here per (C, k), and a permutation test asks
whether failing depends on k (a kernel size that makes training fail is an effect of k).
Replicate runs that lie far beyond the seed noise but did not fail are named
(:func:`outliers`): they stay in the model, which counts them as noise.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from analysis.kmap._data import KData, SeedNoise
from analysis.kmap._model import KModel

__all__ = ["FAILURE_PERMUTATIONS", "failures", "outlier_note", "outliers"]

#: shuffles of the test of whether failing depends on k
FAILURE_PERMUTATIONS = 1999


def _failed_runs(data: KData) -> pd.DataFrame:
    """The diverged and collapsed runs, one row each with ``outcome``."""
    parts = [df.assign(outcome=outcome) for df, outcome in ((data.diverged, "diverged"), (data.collapsed, "collapsed"))
             if df is not None and len(df)]
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()


def failures(data: KData, alpha: float, seed: int) -> dict[str, Any]:
    """Counts of failed runs (diverged, collapsed) per (C, k), and a permutation test (within
    strata) of whether failing depends on k: the statistic is the chi-square of failed
    against run stage observations over the (C, k) cells. ``p_value`` None when no run
    failed; the test is read at alpha / 2 (it shares alpha with the test of top-1)."""
    bad, ok = _failed_runs(data), data.trials
    S = data.num_stages
    if len(bad) == 0:
        return {"p_value": None, "n_failed": 0, "n_diverged": 0, "n_collapsed": 0, "counts": [], "collapsed": [],
                "text": "no run diverged or collapsed"}
    cf = data.configs.set_index("key")
    runs = ok[["number", "key", "stratum"]].join(cf[[f"{c}{i}" for i in range(S) for c in ("C", "k")]], on="key")
    allr = pd.concat([runs.assign(failed=0.0, outcome="ran"), bad.assign(failed=1.0)], ignore_index=True)
    cells: dict[tuple[float, float], int] = {}
    A_rows, A_cols = [], []
    for i in range(S):
        C, k = allr[f"C{i}"].to_numpy(float), allr[f"k{i}"].to_numpy(float)
        for r in np.flatnonzero(np.isfinite(k)):
            j = cells.setdefault((C[r], k[r]), len(cells))
            A_rows.append(r)
            A_cols.append(j)
    A = np.zeros((len(allr), len(cells)))
    np.add.at(A, (np.array(A_rows, int), np.array(A_cols, int)), 1.0)
    D = allr["failed"].to_numpy(float)
    n_cell = A.sum(axis=0)
    strata = allr["stratum"].astype(str).to_numpy()
    groups = [np.flatnonzero(strata == s) for s in np.unique(strata)]

    def stat(Dm: np.ndarray) -> np.ndarray:
        """Chi-square of each column of ``Dm`` (outcome vectors, one per column)."""
        exp = sum(np.outer(A[g].sum(axis=0), Dm[g].mean(axis=0)) for g in groups)
        var = np.maximum(exp * (1 - np.clip(exp / np.maximum(n_cell, 1)[:, None], 0, 1)), 1e-9)
        return np.sum((A.T @ Dm - exp) ** 2 / var, axis=0)

    observed = float(stat(D[:, None])[0])
    rng = np.random.default_rng(seed)
    P = FAILURE_PERMUTATIONS
    Dp = np.empty((len(D), P))
    for j in range(P):
        perm = np.arange(len(D))
        for g in groups:
            perm[g] = rng.permutation(g)
        Dp[:, j] = D[perm]
    p = float((1 + np.sum(stat(Dp) >= observed - 1e-9)) / (1 + P))
    div = (allr["outcome"] == "diverged").to_numpy(float)
    col = (allr["outcome"] == "collapsed").to_numpy(float)
    counts = sorted(({"C": int(C), "k": int(k), "runs": int(n_cell[j]), "failed": int(A[:, j] @ D), "diverged": int(A[:, j] @ div),
                      "collapsed": int(A[:, j] @ col)} for (C, k), j in cells.items()), key=lambda r: (r["C"], r["k"]))
    worst = max(counts, key=lambda r: (r["failed"] / max(r["runs"], 1), r["failed"]))
    n_div, n_col = int(div.sum()), int(col.sum())
    how = " and ".join(x for x in (f"{n_div} diverged" if n_div else "", f"{n_col} collapsed" if n_col else "") if x)
    rate = f"{how} of {len(allr)} runs"
    what = "diverge" if not n_col else "collapse" if not n_div else "diverge or collapse"
    text = (f"k makes training {what} ({rate}, most where C={worst['C']}, k={worst['k']}: {worst['failed']} of {worst['runs']}; "
            f"permutation test within strata, p = {p:.2g})" if p < alpha / 2 else
            f"{rate}; no evidence that failing to train depends on k (permutation test within strata, p = {p:.2g})")
    named = [{"trial": int(r.number), "top1": float(r.top1), "chance": float(r.chance)} for r in data.collapsed.itertuples()] \
        if len(data.collapsed) else []
    return {"p_value": p, "n_failed": len(bad), "n_diverged": n_div, "n_collapsed": n_col, "n_runs": len(allr), "counts": counts,
            "collapsed": named, "text": text}


def outliers(data: KData, model: KModel, noise: SeedNoise, alpha: float) -> tuple[dict[str, Any], ...]:
    """Replicated configurations whose runs lie far apart, each named by the run that lies
    farther from the model's prediction for its configuration (of two runs far apart, the
    one the rest of the study does not vouch for; its healthy twin is not named). A
    configuration is flagged when a run's deviation from the configuration's mean exceeds
    the Bonferroni normal quantile (over all replicated runs) of a robust seed noise (the
    median absolute deviation, which an outlier does not inflate)."""
    from scipy import stats

    t = data.trials
    n = t.groupby("key")["y"].transform("size")
    rep = t[n >= 2].copy()
    if rep.empty:
        return ()
    m = rep.groupby("key")["y"].transform("mean")
    nn = rep.groupby("key")["y"].transform("size").to_numpy(float)
    dev = (rep["y"] - m).to_numpy(float) * np.sqrt(nn / (nn - 1))
    robust = 1.4826 * float(np.median(np.abs(dev)))
    if robust <= 0:
        return ()
    z = stats.norm.ppf(1 - alpha / (2 * len(rep)))
    rep["z"] = np.abs(dev) / robust
    fitted = dict(zip(data.configs["key"], model.fitted)) if len(model.fitted) == len(data.configs) else {}
    rep["off"] = np.abs(rep["y"] - rep["key"].map(fitted).fillna(m))
    out = []
    for key, g in rep.groupby("key", sort=False):
        if g["z"].max() <= max(z, 3.0):
            continue
        r = g.loc[g["off"].idxmax()]
        out.append({"trial": int(r["number"]), "replicates": [int(x) for x in g["number"] if int(x) != int(r["number"])],
                    "top1": float(r["y"]), "config_mean": float(g["y"].mean()), "predicted": float(fitted.get(key, np.nan)),
                    "z": float(g["z"].max()), "robust_sigma": robust})
    return tuple(sorted(out, key=lambda o: -o["z"])[:20])


def outlier_note(found: tuple[Mapping[str, Any], ...]) -> str | None:
    if not found:
        return None
    shown = "; ".join(f"trial {o['trial']} (top-1 {o['top1']:.1f}, its configuration predicted {o['predicted']:.1f}, replicates "
                      f"{', '.join(map(str, o['replicates']))}: {o['z']:.0f} x the robust seed noise {o['robust_sigma']:.2f})"
                      for o in found[:5])
    more = f" and {len(found) - 5} more" if len(found) > 5 else ""
    return f"outliers among replicates: {shown}{more}; they stay in the model, which counts them as noise"


def failure_note(result: Mapping[str, Any]) -> str | None:
    """Names the collapsed runs (left out of the model of top-1)."""
    named = result.get("collapsed") or []
    if not named:
        return None
    shown = ", ".join(f"trial {c['trial']} (top-1 {c['top1']:.1f}, chance {c['chance']:.0f})" for c in named[:8])
    more = f" and {len(named) - 8} more" if len(named) > 8 else ""
    return (f"collapsed runs, left out of the model of top-1 and counted as failures to train: {shown}{more}")
