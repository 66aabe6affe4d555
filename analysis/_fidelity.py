"""Proxy fidelity: do two fidelities (two proxies, or a proxy and full training) rank the
same configurations alike? Kendall's tau and Spearman's rho over matched configurations,
each with its test and a 95 % interval (Fisher's z with the variances of Fieller, Hartley
and Pearson, Biometrika 1957: 0.437 / (n - 4) for tau, 1.06 / (n - 3) for rho)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from analysis._load import FrameSource, coerce_frames, config_key
from study.validate import ConfigError

__all__ = ["FidelityResult", "fidelity", "rank_correlation_ci"]


@dataclass(frozen=True)
class FidelityResult:
    """Rank agreement of two studies on their common configurations.

    ``pairs``: one row per matched configuration (``key``, ``a``, ``b`` - the metric in each
    study, averaged over repeats -, ``n_a``, ``n_b``, ``attention``).
    """

    pairs: pd.DataFrame
    kendall_tau: float
    kendall_p: float
    spearman_rho: float
    spearman_p: float
    metric: str
    names: tuple[str, str]

    @property
    def n(self) -> int:
        return len(self.pairs)

    @property
    def kendall_ci(self) -> tuple[float, float]:
        """95 % interval of Kendall's tau (NaN with fewer than 5 configurations)."""
        return rank_correlation_ci(self.kendall_tau, self.n, variance=0.437, lost=4)

    @property
    def spearman_ci(self) -> tuple[float, float]:
        """95 % interval of Spearman's rho (NaN with fewer than 4 configurations)."""
        return rank_correlation_ci(self.spearman_rho, self.n, variance=1.06, lost=3)

    def verdict(self, alpha: float = 0.05) -> str:
        """In words: whether the two rankings agree beyond chance, with the interval."""
        lo, hi = self.kendall_ci
        ci = f"95 % CI {lo:.2f} to {hi:.2f}" if np.isfinite(lo) else "no interval with fewer than 5 configurations"
        if not self.kendall_p < alpha:
            return (f"No evidence that the two rank the configurations alike (Kendall tau {self.kendall_tau:.3f}, {ci}, "
                    f"p = {self.kendall_p:.2g}, {self.n} configurations)")
        sign = "alike" if self.kendall_tau > 0 else "in opposite orders"
        return (f"The two rank the configurations {sign} (Kendall tau {self.kendall_tau:.3f}, {ci}, p = {self.kendall_p:.2g}, "
                f"{self.n} configurations)")

    def to_dict(self) -> dict[str, Any]:
        return {"a": self.names[0], "b": self.names[1], "metric": self.metric, "n": self.n,
                "kendall_tau": self.kendall_tau, "kendall_p": self.kendall_p, "kendall_ci": list(self.kendall_ci),
                "spearman_rho": self.spearman_rho, "spearman_p": self.spearman_p, "spearman_ci": list(self.spearman_ci)}


def rank_correlation_ci(r: float, n: int, *, variance: float, lost: int, level: float = 0.95) -> tuple[float, float]:
    """The interval of a rank correlation ``r`` over ``n`` pairs by Fisher's z,
    ``atanh(r) +- z_(1+level)/2 * sqrt(variance / (n - lost))``; NaN where ``n <= lost`` or
    ``r`` is undefined."""
    from scipy import stats

    if n <= lost or not np.isfinite(r):
        return (float("nan"), float("nan"))
    half = stats.norm.ppf(0.5 + level / 2) * np.sqrt(variance / (n - lost))
    z = np.arctanh(np.clip(r, -0.999999, 0.999999))
    return (float(np.tanh(z - half)), float(np.tanh(z + half)))


def _per_key(t: pd.DataFrame, metric: str, key: str, states: Sequence[str]) -> pd.DataFrame:
    t = t[t["state"].isin(states)].copy()
    t["_k"] = [config_key(c, what=key) for c in t["config"]]
    t["_v"] = pd.to_numeric(t[metric], errors="coerce")
    t = t[t["_k"].notna() & t["_v"].notna()]
    return t.groupby("_k").agg(v=("_v", "mean"), n=("_v", "size"), attention=("attention", "first"))


def fidelity(a: FrameSource, b: FrameSource, *, metric: str = "top1", key: str = "arch", states: Sequence[str] = ("complete",),
             names: tuple[str, str] | None = None, min_pairs: int = 3) -> FidelityResult:
    """Match the two studies' trials by configuration and correlate ``metric``.

    ``key`` (see :func:`analysis._load.config_key`): "arch" (default; the architecture
    without its class count, so two proxies match), "net" (also without the stem, so a
    proxy study and the full training of its exports match), "arch+recipe" or "all".
    Repeats of a configuration are averaged. Raises ``ValueError`` with fewer than
    ``min_pairs`` matched configurations.
    """
    fa, fb = coerce_frames(a), coerce_frames(b)
    if key not in ("arch", "net", "arch+recipe", "all"):
        raise ConfigError("key", f"must be one of arch, net, arch+recipe, all, got {key!r}")
    for fr in (fa, fb):
        if not fr.trials.empty and metric not in fr.trials:
            raise ConfigError("metric", f"{metric!r} is not a trials column of study {fr.name!r}")
    if fa.trials.empty or fb.trials.empty:
        raise ConfigError("fidelity", "a study has no trials")
    pa, pb = _per_key(fa.trials, metric, key, states), _per_key(fb.trials, metric, key, states)
    j = pa.join(pb, lsuffix="_a", rsuffix="_b", how="inner")
    if len(j) < min_pairs:
        raise ConfigError("fidelity", f"needs at least {min_pairs} configurations present in both studies; found {len(j)}")
    pairs = pd.DataFrame({"key": j.index, "a": j["v_a"].to_numpy(), "b": j["v_b"].to_numpy(),
                          "n_a": j["n_a"].to_numpy(), "n_b": j["n_b"].to_numpy(), "attention": j["attention_a"].to_numpy()})
    from scipy import stats

    kt = stats.kendalltau(pairs["a"], pairs["b"])
    sr = stats.spearmanr(pairs["a"], pairs["b"])
    return FidelityResult(pairs=pairs, kendall_tau=float(kt.statistic), kendall_p=float(kt.pvalue),
                          spearman_rho=float(sr.statistic), spearman_p=float(sr.pvalue), metric=metric,
                          names=names or (fa.name, fb.name))
