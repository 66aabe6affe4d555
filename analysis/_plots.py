"""Plots of a study: Pareto fronts, attention cost vs gain, learning curves, importance,
fidelity, the k-vs-C fit and the (gamma, b) plane.

Every function returns a :class:`matplotlib.figure.Figure` made without pyplot (no global
state; a notebook shows it inline, :func:`save_figure` writes PNG and SVG).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import matplotlib as mpl
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from matplotlib.ticker import MaxNLocator

from analysis._load import FrameSource, coerce_frames
from analysis._pareto import _cost_column, front_hypervolumes, pareto_front
from analysis.kmap._fits import PAPER_B, PAPER_GAMMA, KmapFit, psi
from study.catalogue import released_k
from study.validate import ConfigError

if TYPE_CHECKING:
    from analysis._fidelity import FidelityResult
    from analysis.kmap._analysis import KmapAnalysis
    from analysis.kmap._effect import KEffect
    from analysis.kmap._fits import KmapFit

__all__ = [
    "save_figure", "plot_pareto", "plot_fronts", "plot_attention_gain", "plot_learning_curves",
    "plot_importance", "plot_fidelity", "plot_kmap", "plot_kmap_curves", "plot_gamma_b",
]

_COST_LABEL = {"params": "parameters", "macs": "MACs (proxy resolution)", "macs_224": "MACs at 224 px", "latency_ms": "latency (ms)"}
_PALETTE = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22", "#7f7f7f"]


def _colors(labels: Sequence[str]) -> dict[str, str]:
    order = sorted(set(labels), key=lambda s: (s != "none", s))
    return {lab: ("#555555" if lab == "none" else _PALETTE[i % len(_PALETTE)]) for i, lab in enumerate(order)}


def save_figure(fig: Figure, stem: str | Path, *, dpi: int = 120) -> list[Path]:
    """Write ``stem.png`` and ``stem.svg``; return both paths."""
    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    out = []
    for ext in ("png", "svg"):
        p = stem.with_suffix(f".{ext}")
        fig.savefig(p, dpi=dpi, bbox_inches="tight")
        out.append(p)
    return out


def _log_if_wide(ax, values: np.ndarray) -> None:
    v = values[np.isfinite(values) & (values > 0)]
    if v.size and v.max() / v.min() > 20:
        ax.set_xscale("log")


def plot_pareto(frames: FrameSource, *, cost: str = "params", ax=None, title: str | None = None) -> Figure:
    """Top-1 against ``cost`` for every finished trial, coloured by attention pattern; pruned
    trials faded (their best top-1 so far); the front of complete trials drawn as a step.
    Latency carries its interquartile range as a horizontal bar (where recorded)."""
    fr = coerce_frames(frames)
    col = _cost_column(cost)
    fig = ax.figure if ax is not None else Figure(figsize=(7, 4.5))
    ax = ax or fig.add_subplot()
    t = fr.trials
    t = t[t["state"].isin(["complete", "pruned"]) & t["top1"].notna()] if len(t) else t
    if t.empty or col not in t or t[col].isna().all():
        ax.text(0.5, 0.5, f"no finished trials with {cost}", ha="center", va="center", transform=ax.transAxes)
        return fig
    colors = _colors(t["attention"].astype(str).tolist())
    for lab, g in t.groupby(t["attention"].astype(str)):
        done = g[g["state"] == "complete"]
        pr = g[g["state"] == "pruned"]
        ax.scatter(done[col], done["top1"], s=18, color=colors[lab], label=f"{lab} ({len(done)})", alpha=0.85, edgecolors="none")
        if col == "latency_ms" and "latency_iqr_ms" in done and done["latency_iqr_ms"].notna().any():  # the latency's IQR as a bar
            ax.errorbar(done[col], done["top1"], xerr=done["latency_iqr_ms"].fillna(0) / 2, fmt="none", ecolor=colors[lab], alpha=0.5,
                        lw=0.8)
        if len(pr):
            ax.scatter(pr[col], pr["top1"], s=14, color=colors[lab], alpha=0.2, marker="v", edgecolors="none")
    front = pareto_front(fr.trials, cost=cost)
    if len(front):
        ax.step(front[col], front["top1"], where="post", color="black", lw=1.2, label=f"front ({len(front)})")
        ax.scatter(front[col], front["top1"], s=40, facecolors="none", edgecolors="black", lw=1.0)
    if (t["state"] == "pruned").any():
        ax.scatter([], [], marker="v", color="grey", alpha=0.3, label="pruned (faded)")
    _log_if_wide(ax, t[col].to_numpy(float))
    ax.set_xlabel(_COST_LABEL.get(col, col))
    ax.set_ylabel("best validation top-1 (%)")
    ax.set_title(title or f"{fr.name}: top-1 vs {cost}")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    return fig


def plot_fronts(studies: Mapping[str, FrameSource], *, cost: str = "params", reference: tuple[float, float] | None = None) -> Figure:
    """Several studies' fronts on one plot, with their hypervolume (one shared reference)."""
    col = _cost_column(cost)
    frs = {name: coerce_frames(f) for name, f in studies.items()}
    hv = front_hypervolumes(frs, cost=cost, reference=reference).set_index("study")
    fig = Figure(figsize=(7, 4.5))
    ax = fig.add_subplot()
    allc = []
    for i, (name, fr) in enumerate(frs.items()):
        front = pareto_front(fr, cost=cost)
        c = _PALETTE[i % len(_PALETTE)]
        done = fr.complete
        ax.scatter(done[col], done["top1"], s=8, color=c, alpha=0.2, edgecolors="none")
        if len(front):
            ax.step(front[col], front["top1"], where="post", color=c, lw=1.5,
                    label=f"{name}: {len(front)} on front, HV {hv.loc[name, 'hv_norm']:.3f}")
            ax.scatter(front[col], front["top1"], s=20, color=c)
        allc.append(done[col].to_numpy(float))
    if allc:
        _log_if_wide(ax, np.concatenate(allc))
    ref = hv["ref_cost"].iloc[0], hv["ref_top1"].iloc[0]
    ax.set_xlabel(_COST_LABEL.get(col, col))
    ax.set_ylabel("best validation top-1 (%)")
    ax.set_title(f"Pareto fronts, top-1 vs {cost} (HV: fraction of [0, {ref[0]:.3g}] x [{ref[1]:g}, 100])", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    return fig


def plot_attention_gain(table: pd.DataFrame, *, cost: str = "params") -> Figure:
    """Gain of mean top-1 over ``none`` against added cost, one point per (attention, backbone, width)."""
    col = {"params": "added_params", "macs": "added_macs", "latency": "added_latency_ms"}.get(cost)
    if col is None:
        raise ConfigError("cost", f"must be one of params, macs, latency, got {cost!r}")
    fig = Figure(figsize=(7, 4.5))
    ax = fig.add_subplot()
    t = table[(table["attention"] != "none") & table["gain_mean"].notna()] if len(table) else table
    if t.empty:
        ax.text(0.5, 0.5, "no attention kind with a 'none' baseline of the same backbone and width",
                ha="center", va="center", transform=ax.transAxes, fontsize=8)
        return fig
    colors = _colors(t["attention"].astype(str).tolist())
    for lab, g in t.groupby(t["attention"].astype(str)):
        ax.vlines(g[col], g["gain_mean"], g["gain_best"], color=colors[lab], lw=0.8, alpha=0.6)
        ax.scatter(g[col], g["gain_mean"], color=colors[lab], s=30, label=f"{lab}: mean")
        ax.scatter(g[col], g["gain_best"], facecolors="none", edgecolors=colors[lab], s=40, label=f"{lab}: best")
        for _, r in g.iterrows():
            ax.annotate(f"{r['backbone']} w{r['width']:g}", (r[col], r["gain_best"]), fontsize=6, alpha=0.7,
                        xytext=(3, 3), textcoords="offset points")
    x = t[col].to_numpy(float)
    if np.all(x > 0) and x.max() / x.min() > 100:
        ax.set_xscale("log")
    ax.axhline(0, color="black", lw=0.8)
    ax.set_xlabel(f"added {cost} over none")
    ax.set_ylabel("top-1 gain over none (points)")
    ax.set_title("cost of attention against its gain")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return fig


def plot_learning_curves(frames: FrameSource, *, max_trials: int = 400) -> Figure:
    """Per-epoch top-1 of every trial; complete ones coloured by attention, pruned ones grey
    and dashed with an x where they stopped, failed ones left out."""
    fr = coerce_frames(frames)
    fig = Figure(figsize=(7, 4.5))
    ax = fig.add_subplot()
    ep = fr.epochs
    if ep.empty:
        ax.text(0.5, 0.5, "no per-epoch values recorded", ha="center", va="center", transform=ax.transAxes)
        return fig
    lab = fr.trials.set_index("number")["attention"].astype(str)
    colors = _colors(lab.tolist())
    seen: set[str] = set()
    for n, (trial, g) in enumerate(ep.groupby("trial")):
        if n >= max_trials:
            break
        g = g.sort_values("epoch")
        state = g["state"].iloc[0]
        if state == "pruned":
            ax.plot(g["epoch"], g["top1"], color="grey", lw=0.7, ls="--", alpha=0.6)
            ax.scatter(g["epoch"].iloc[-1:], g["top1"].iloc[-1:], marker="x", color="grey", s=16)
        elif state == "complete":
            a = lab.get(trial, "unknown")
            ax.plot(g["epoch"], g["top1"], color=colors.get(a, "C0"), lw=0.8, alpha=0.5, label=None if a in seen else a)
            seen.add(a)
    if (ep["state"] == "pruned").any():
        ax.plot([], [], color="grey", ls="--", marker="x", label="pruned")

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("epoch")
    ax.set_ylabel("validation top-1 (%)")
    ax.set_title(f"{fr.name}: learning curves")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    return fig


def plot_importance(table: pd.DataFrame, *, title: str = "parameter importance") -> Figure:
    """Bars per (branch, parameter); grey where the parameter is not distinguishable from noise."""
    t = table.dropna(subset=["importance"]).iloc[::-1] if "importance" in table else table.iloc[::-1]
    fig = Figure(figsize=(6.5, 0.35 * max(3, len(t)) + 1))
    ax = fig.add_subplot()
    labels = (t["branch"].astype(str) + ": " + t["param"].astype(str)) if "branch" in t else t["param"].astype(str)
    colors = ["#1f77b4" if s else "#bbbbbb" for s in t["significant"]] if "significant" in t else "#1f77b4"
    ax.barh(labels, t["importance"], color=colors)
    ax.set_xlabel("importance (normalized per branch; grey: not distinguishable from noise)")
    ax.set_title(title)
    ax.grid(alpha=0.3, axis="x")
    return fig


def plot_fidelity(result: FidelityResult) -> Figure:
    """Scatter of the two fidelities' results for the same configurations."""
    fig = Figure(figsize=(5, 5))
    ax = fig.add_subplot()
    p = result.pairs
    colors = _colors(p["attention"].astype(str).tolist())
    for lab, g in p.groupby(p["attention"].astype(str)):
        ax.scatter(g["a"], g["b"], s=20, color=colors[lab], label=lab)
    ax.set_xlabel(f"{result.names[0]}: {result.metric}")
    ax.set_ylabel(f"{result.names[1]}: {result.metric}")
    ax.set_title(f"n={result.n}  Kendall tau={result.kendall_tau:.3f}  Spearman rho={result.spearman_rho:.3f}", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return fig


def _log2_axis(ax, xs: np.ndarray) -> None:
    ticks = np.arange(math.floor(xs.min()), math.ceil(xs.max()) + 1)
    ax.set_xticks(ticks)
    ax.set_xticklabels([f"{int(2**t)}" for t in ticks], fontsize=7)
    ax.set_xlabel("C (channels, log2 axis)")


def _plot_points_fit(fit: KmapFit, title: str | None) -> Figure:
    """Given (C, k) points and their fits (:class:`analysis.KmapFit`)."""
    fig = Figure(figsize=(7, 4.5))
    ax = fig.add_subplot()
    pts = fit.points
    x = np.log2(pts["C"].to_numpy(float))
    lo, hi = max(1.0, 2 ** (x.min() - 0.5)), 2 ** (x.max() + 0.5)
    grid = np.unique(np.round(np.geomspace(lo, hi, 200)).astype(int))
    gx = np.log2(grid)
    ax.step(gx, [psi(int(c), PAPER_GAMMA, PAPER_B) for c in grid], where="mid", color="black", lw=1.5, ls="--",
            label=f"paper psi (gamma=2, b=1), loss {fit.psi['paper'].paper_loss:.3g}")
    styles = {"paper": ("#d62728", "-"), "timm": ("#ff7f0e", ":")}
    for rule, f in fit.psi.items():
        c, ls = styles.get(rule, ("C3", "-"))
        ax.step(gx, f.predict(grid), where="mid", color=c, ls=ls, lw=1.3,
                label=f"psi fit ({rule}): gamma={f.gamma:g}, b={f.b:g} ({len(f.equal_loss)} equal-loss), loss {f.loss:.3g}")
    if fit.continuous is not None:
        cf = fit.continuous
        ax.plot(gx, cf.predict(grid), color="#2ca02c", lw=1.2,
                label=f"continuous: {cf.alpha:.3g} log2C + {cf.beta:.3g} (gamma={cf.gamma:.3g}, b={cf.b:.3g}), loss {cf.loss:.3g}")
    if fit.linear is not None:
        ax.plot(gx, fit.linear.predict(grid), color="#9467bd", lw=1.0, ls="-.", label=f"linear in C, loss {fit.linear.loss:.3g}")
    ax.scatter(x, pts["k"], s=30 + 60 * pts["weight"] / pts["weight"].max(), color="#1f77b4", zorder=3, label="points")
    _log2_axis(ax, gx)
    ax.set_ylabel("k")
    ax.set_title(title or "ECA kernel size k against channels C (fits by error in k)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=6, loc="upper left")
    return fig


def _verdict_title(effect: KEffect) -> str:
    if effect.evidence:
        return f"evidence that k matters (p = {effect.p_value:.2g})"
    return f"NO evidence that k matters (p = {effect.p_value:.2g}): k* not supported by the data"


def plot_kmap(an: KmapAnalysis | KmapFit, *, title: str | None = None) -> Figure:
    """k* per C with its confidence set (bars: the set's range; dots: its members), the
    paper's psi, psi fitted by predicted top-1 and the authors' released k, on a log2(C)
    axis; the title states whether the data show that k matters. ``an`` is a
    :class:`analysis.KmapAnalysis` (a study) or a :class:`analysis.KmapFit` (given points)."""
    if isinstance(an, KmapFit):
        return _plot_points_fit(an, title)
    e = an.effect
    tab = e.table
    fig = Figure(figsize=(7, 4.5))
    ax = fig.add_subplot()
    x = np.log2(tab["C"].to_numpy(float))
    grid = np.unique(np.round(np.geomspace(max(1.0, 2 ** (x.min() - 0.5)), 2 ** (x.max() + 0.5), 200)).astype(int))
    gx = np.log2(grid)
    ax.step(gx, [psi(int(c), PAPER_GAMMA, PAPER_B) for c in grid], where="mid", color="black", lw=1.5, ls="--",
            label="paper psi (gamma=2, b=1)")
    if an.fitted is not None:
        f = an.fitted
        ax.step(gx, [psi(int(c), f.gamma, f.b) for c in grid], where="mid", color="#d62728", lw=1.3,
                label=f"psi fitted by predicted top-1: gamma={f.gamma:g}, b={f.b:g}")
    alpha = 0.35 if not e.evidence else 1.0
    for xi, (_, r) in zip(x, tab.iterrows()):
        members = [float(v) for v in str(r["k_set"]).split(",")]
        ax.scatter([xi] * len(members), members, s=14, color="#1f77b4", alpha=0.4 * alpha, zorder=2)
    ax.vlines(x, tab["k_lo"], tab["k_hi"], color="#1f77b4", lw=1.2, alpha=alpha)
    ax.scatter(x, tab["k_star"], marker="o", s=40, color="#1f77b4", zorder=3, alpha=alpha,
               label=f"k* per C, bar: {100 * (1 - e.alpha):.0f} % confidence set for the best k")
    ax.axhline(3, color="#7f7f7f", lw=0.8, ls=":", label="k = 3")
    released = _released_points(an)
    if released:
        ax.scatter(np.log2([c for c, _ in released]), [k for _, k in released], marker="x", s=50, color="#2ca02c", zorder=4,
                   label="the authors' released k (width 1.0 stages)")
    _log2_axis(ax, gx)
    ax.set_ylabel("k")
    ax.set_title(title or _verdict_title(e), fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=6, loc="upper left")
    return fig


def _released_points(an: KmapAnalysis) -> list[tuple[float, int]]:
    """(C, k) of the authors' released per-stage k at the study's width-1.0 stages."""
    cf = an.data.configs
    at1 = cf[np.isclose(cf["width"].astype(float), 1.0)]
    if at1.empty:
        return []
    r = at1.iloc[0]
    try:
        ks = released_k(str(r["backbone"]))
    except ValueError:
        return []
    return [(float(r[f"C{i}"]), k) for i, k in enumerate(ks) if i < an.data.num_stages]


def plot_kmap_curves(an: KmapAnalysis) -> Figure:
    """Every k's top-1 relative to k* at each C, with 95 % intervals (one line per C)."""
    e = an.effect
    fig = Figure(figsize=(7, 4.5))
    ax = fig.add_subplot()
    eff = e.effects
    cs = sorted(eff["C"].unique())
    width = 0.6 / max(1, len(cs))
    for i, c in enumerate(cs):
        g = eff[eff["C"] == c].sort_values("k")
        color = _PALETTE[i % len(_PALETTE)]
        xs = g["k"].to_numpy(float) + (i - (len(cs) - 1) / 2) * width
        ax.errorbar(xs, g["diff"], yerr=[g["diff"] - g["lo"], g["hi"] - g["diff"]], fmt="o-", ms=3, lw=1, capsize=2, color=color,
                    label=f"C={int(c)}")
    ax.axhline(0, color="black", lw=0.8)
    ax.set_xlabel("k")
    ax.set_ylabel("top-1 relative to k* at that C (points)")
    ax.set_title(f"k effects per C with 95 % intervals; {_verdict_title(e)}", fontsize=8)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=6, ncol=3)
    return fig


def plot_gamma_b(plane: pd.DataFrame, *, value: str = "mean_top1", points: pd.DataFrame | None = None) -> Figure:
    """Top-1 over the (gamma, b) plane (cells of :func:`analysis.gamma_b_plane`), the
    paper's (2, 1) starred; ``points`` (trials with ``gamma``, ``b``) are drawn as dots."""
    fig = Figure(figsize=(6.5, 4.5))
    ax = fig.add_subplot()
    if plane.empty:
        ax.text(0.5, 0.5, "no trials sampled (gamma, b)", ha="center", va="center", transform=ax.transAxes)
        return fig
    vals = plane[value].to_numpy(float)
    norm = mpl.colors.Normalize(vmin=np.nanmin(vals), vmax=np.nanmax(vals) if np.nanmax(vals) > np.nanmin(vals) else np.nanmin(vals) + 1)
    cmap = mpl.colormaps["viridis"]
    few = len(plane) <= 64
    for _, r in plane.iterrows():
        ax.add_patch(Rectangle((r["gamma_lo"], r["b_lo"]), r["gamma_hi"] - r["gamma_lo"], r["b_hi"] - r["b_lo"],
                               facecolor=cmap(norm(r[value])), edgecolor="white", lw=0.5))
        if few:
            ax.text(r["gamma"], r["b_hi"] - 0.08 * (r["b_hi"] - r["b_lo"]), f"{r[value]:.1f} (n={int(r['n'])})",
                    ha="center", va="top", fontsize=6, color="white")
    if points is not None and len(points):
        p = points[points["gamma"].notna() & points["b"].notna()]
        ax.scatter(p["gamma"], p["b"], s=5, color="black", alpha=0.4, label="trials")
    ax.set_xlim(plane["gamma_lo"].min(), plane["gamma_hi"].max())
    ax.set_ylim(plane["b_lo"].min(), plane["b_hi"].max())
    ax.scatter([2.0], [1.0], marker="*", s=160, color="red", edgecolors="white", zorder=5, label="paper (gamma=2, b=1)")
    fig.colorbar(mpl.cm.ScalarMappable(norm=norm, cmap=cmap), ax=ax, label=value.replace("_", " ") + " (%)")
    ax.set_xlabel("gamma")
    ax.set_ylabel("b")
    ax.set_title("top-1 over the psi (gamma, b) plane")
    ax.legend(fontsize=7, loc="upper right")
    return fig
