"""The data of the k-vs-C inference: which trials, which response, one row per configuration.

The response is **validation top-1 at one epoch that every included trial reached** (by
default the last epoch all of them ran). A pruned trial is included with its value at that
epoch, exactly like a complete one: being pruned depends on the outcome, so an analysis of
"the best top-1 a trial reached" (or of complete trials only) would select its data by the
result. Trials that failed or diverged are left out of the model of top-1 and counted; the
diverged ones are kept apart (``KData.diverged``, with their stages), since a kernel size
that makes training diverge is an effect of k: :mod:`analysis.kmap._failures` tests it.
So are runs that **collapsed** (:func:`collapsed_runs`: a run that learned less than half of
what its stratum's median run learned above chance, and lies far below that median): such a
run is a failure to train, not a noisy top-1, and left in the model a single one moves a
configuration mean by tens of points and every interval that leans on it. Kept apart
(``KData.collapsed``) and tested with divergence as an outcome of k.

Replicates (runs of one configuration with other seeds, and any configuration sampled twice)
are pooled: a configuration is the architecture without ``num_classes``
(:func:`analysis.config_key`), its response the mean over its runs. Their spread is the
seed-to-seed noise ``sigma_seed``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from analysis._load import FrameSource, coerce_frames, psi_kinds
from study.validate import ConfigError

__all__ = ["COLLAPSE_SHARE", "COLLAPSE_Z", "KData", "collapsed_runs", "kmap_data", "seed_noise"]

#: a run collapsed when it learned less than this share of what its stratum's median run
#: learned above chance (100 / classes) ...
COLLAPSE_SHARE = 0.5
#: ... and lies more than this many robust standard deviations (1.4826 x the median absolute
#: deviation of its stratum) below that median: a stratum that has barely learned anything
#: (an early epoch) names no run collapsed for being near chance
COLLAPSE_Z = 5.0


@dataclass(frozen=True)
class KData:
    """The configurations of a study that carry the attention kind ``kind`` in some stage.

    ``configs``: one row per configuration with ``key``, ``y`` (mean response over its
    ``n`` runs), ``backbone``, ``width``, ``stratum`` ("backbone@width") and per stage
    ``kind{i}``, ``C{i}`` (channels, or planes with ``by="planes"``) and ``k{i}`` (the
    resolved k; NaN where the stage has another kind). ``trials``: one row per included
    trial (``number``, ``key``, ``y``, ``state``, ``group``). ``diverged``: one row per
    diverged trial with ``number``, ``key``, ``stratum`` and the per-stage columns (empty
    when none diverged); ``epoch``: where the response was read; ``excluded``: reason ->
    number of trials left out.
    """

    configs: pd.DataFrame
    trials: pd.DataFrame
    num_stages: int
    kind: str
    by: str
    epoch: int
    budget_epochs: int | None
    excluded: Mapping[str, int] = field(default_factory=dict)
    diverged: pd.DataFrame = field(default_factory=pd.DataFrame)
    collapsed: pd.DataFrame = field(default_factory=pd.DataFrame)

    @property
    def n_trials(self) -> int:
        return len(self.trials)

    @property
    def n_configs(self) -> int:
        return len(self.configs)

    def response_text(self) -> str:
        """How the response was chosen, in words."""
        text = f"validation top-1 at epoch {self.epoch}"
        if self.budget_epochs and self.epoch < self.budget_epochs:
            text += (f" of {self.budget_epochs} (the last epoch every included trial ran: pruned trials count with their "
                     f"value there, so pruning, which depends on the outcome, selects nothing)")
        else:
            text += " (every included trial ran it)"
        return text


def _stage_value(t: pd.DataFrame, col: str) -> pd.Series:
    return t[col] if col in t else pd.Series(np.nan, index=t.index)


def kmap_data(frames: FrameSource, *, epoch: int | None = None, kind: str | None = None, by: str = "C") -> KData:
    """Collect the k-vs-C data of a study (a :class:`analysis.StudyFrames`, run folder or URL).

    ``epoch`` reads the response at that epoch (trials that did not reach it are left out,
    and counted: that selects by survival, so the default is the last epoch all reached);
    ``kind`` the attention kind whose k is analysed (default: the psi kind, "eca" or
    "eca_ns", with the most stage observations); ``by="planes"`` uses the blocks' planes
    instead of the channels the attention acts on. Raises ``ValueError`` naming the reason
    when there is nothing to analyse.
    """
    fr = coerce_frames(frames)
    if by not in ("C", "planes"):
        raise ConfigError("by", f"must be 'C' or 'planes', got {by!r}")
    if epoch is not None and (isinstance(epoch, bool) or not isinstance(epoch, int) or epoch < 1):
        raise ConfigError("epoch", f"must be an integer >= 1, got {epoch!r}")
    t = fr.trials
    n_stages = fr.num_stages
    if t.empty or n_stages == 0:
        raise ValueError("k-vs-C: the study has no trials with recorded stages")
    kinds = psi_kinds()
    counts = {kd: int(sum((_stage_value(t, f"stage{i}_kind") == kd).sum() for i in range(n_stages))) for kd in kinds}
    if kind is None:
        kind = max(counts, key=lambda kd: counts[kd])
    elif kind not in kinds:
        raise ConfigError("kind", f"must be an attention kind with a kernel size k ({', '.join(kinds)}), got {kind!r}")
    if counts.get(kind, 0) == 0:
        raise ValueError(f"k-vs-C: the study has no trial with {kind!r} attention in any stage")
    has_kind = np.zeros(len(t), bool)
    for i in range(n_stages):
        has_kind |= (_stage_value(t, f"stage{i}_kind") == kind).to_numpy()
    t = t[has_kind]
    excluded: dict[str, int] = {}
    for state in ("running", "waiting"):
        if (t["state"] == state).any():
            excluded[f"{state} (the study is not finished)"] = int((t["state"] == state).sum())
    bad = t["state"] == "failed"
    div = t[bad & (t["outcome"] == "diverged")] if "outcome" in t else t.iloc[:0]
    diverged = pd.DataFrame([_row(r._asdict(), n_stages, kind, by) for r in div.itertuples(index=False)])
    if len(diverged):
        diverged["stratum"] = _stratum(diverged)
    if bad.any():
        for outcome, n in t.loc[bad, "outcome"].fillna("failed").value_counts().items():
            excluded[str(outcome)] = int(n)
    t = t[t["state"].isin(["complete", "pruned"])]
    ep = fr.epochs
    curves = ep[ep["trial"].isin(t["number"]) & np.isfinite(pd.to_numeric(ep["top1"], errors="coerce"))]
    reached = curves.groupby("trial")["epoch"].max()
    t = t[t["number"].isin(reached.index)]
    if t.empty:
        raise ValueError(f"k-vs-C: no finished trial with {kind!r} attention recorded a validation top-1")
    budget = pd.to_numeric(t.get("budget_epochs"), errors="coerce").dropna()
    budget_epochs = int(budget.max()) if len(budget) else None
    if epoch is None:
        epoch = int(reached.loc[t["number"]].min())
    else:
        short = t["number"].map(reached) < epoch
        if short.any():
            excluded[f"stopped before epoch {epoch}"] = int(short.sum())
            t = t[~short]
    at = curves[curves["epoch"] == epoch].drop_duplicates("trial", keep="last").set_index("trial")["top1"]
    t = t[t["number"].isin(at.index)]
    if t.empty:
        raise ValueError(f"k-vs-C: no finished trial recorded a validation top-1 at epoch {epoch}")
    rows = [_row(r._asdict(), n_stages, kind, by) for r in t.itertuples(index=False)]
    for row in rows:
        row["y"] = float(at[row["number"]])
    trials = pd.DataFrame(rows)
    trials["stratum"] = _stratum(trials)
    classes = pd.to_numeric(t.set_index("number").get("num_classes", pd.Series(dtype=float)), errors="coerce")
    chance = 100.0 / trials["number"].map(classes).to_numpy(float)
    down = collapsed_runs(trials["y"].to_numpy(float), chance, trials["stratum"].to_numpy(str))
    collapsed = trials[down].rename(columns={"y": "top1"}).assign(chance=chance[down]).reset_index(drop=True)
    if down.any():
        excluded["collapsed (top-1 near chance)"] = int(down.sum())
        trials = trials[~down]
    first = trials.groupby("key", sort=False).first()
    agg = trials.groupby("key", sort=False)["y"].agg(["mean", "size"]).rename(columns={"mean": "y", "size": "n"})
    configs = first.drop(columns=["y", "number", "state"]).join(agg).reset_index()
    return KData(configs=configs, trials=trials[["number", "key", "y", "state", "stratum"]], num_stages=n_stages, kind=kind, by=by,
                 epoch=epoch, budget_epochs=budget_epochs, excluded=excluded, diverged=diverged, collapsed=collapsed)


def collapsed_runs(y: np.ndarray, chance: np.ndarray, strata: np.ndarray) -> np.ndarray:
    """Which runs collapsed: per stratum (one backbone at one width), a run whose top-1
    ``y`` lies closer to ``chance`` than :data:`COLLAPSE_SHARE` of the way to the stratum's
    median, and more than :data:`COLLAPSE_Z` robust standard deviations below that median.
    The rule looks at the run alone, never at its k, so under "k does not matter" what it
    removes is independent of k, and the test of k on the runs left stays exact. A run
    whose classes are unknown (no chance level) is never called collapsed."""
    out = np.zeros(len(y), bool)
    for s in np.unique(strata):
        m = strata == s
        med = float(np.median(y[m]))
        sd = 1.4826 * float(np.median(np.abs(y[m] - med)))
        with np.errstate(invalid="ignore"):
            out[m] = (y[m] - chance[m] < COLLAPSE_SHARE * (med - chance[m])) & (med - y[m] > COLLAPSE_Z * max(sd, 1e-9))
    return out


def finite_or_none(v: Any) -> float | None:
    """``v`` as a float, or None where it is not a finite number (a JSON answer's number)."""
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def _stratum(df: pd.DataFrame) -> pd.Series:
    return df["backbone"].astype(str) + "@" + df["width"].map(lambda w: f"{w:g}")


def _row(d: Mapping[str, Any], n_stages: int, kind: str, by: str) -> dict[str, Any]:
    """One trial's configuration columns: number, key, state, backbone, width and per stage
    kind{i}, C{i}, k{i} (k NaN where the stage has another kind)."""
    row: dict[str, Any] = {"number": int(d["number"]), "key": d.get("key") or f"trial{d['number']}", "state": d["state"],
                           "backbone": d.get("backbone"), "width": float(d.get("width", math.nan))}
    for i in range(n_stages):
        kd = d.get(f"stage{i}_kind")
        row[f"kind{i}"] = kd
        row[f"C{i}"] = float(d.get(f"stage{i}_{by}", math.nan))
        k = d.get(f"stage{i}_k", math.nan) if kd == kind else math.nan
        row[f"k{i}"] = float(k) if k is not None else math.nan
    return row


@dataclass(frozen=True)
class SeedNoise:
    """Seed-to-seed noise of the response, pooled over configurations run more than once."""

    sigma: float | None
    df: int
    ci: tuple[float, float] | None
    n_configs: int

    def to_dict(self) -> dict[str, Any]:
        return {"sigma_seed": self.sigma, "df": self.df, "ci": list(self.ci) if self.ci else None, "replicated_configs": self.n_configs}


def seed_noise(data: KData, *, confidence: float = 0.95) -> SeedNoise:
    """The pooled within-configuration standard deviation of the response (its chi-square
    interval at ``confidence``); ``sigma`` None when no configuration ran twice."""
    return pooled_noise(data.trials, key="key", value="y", confidence=confidence)


def pooled_noise(trials: pd.DataFrame, *, key: str = "key", value: str = "top1", confidence: float = 0.95) -> SeedNoise:
    """:func:`seed_noise` of any table of runs: the pooled standard deviation of ``value``
    within the groups of ``key`` (configurations) that ran more than once."""
    from scipy import stats

    trials = trials[trials[key].notna() & trials[value].notna()]
    g = trials.groupby(key)[value]
    n = g.size()
    rep = n[n >= 2].index
    if len(rep) == 0:
        return SeedNoise(None, 0, None, 0)
    dev = trials[trials[key].isin(rep)]
    ss = float(((dev[value] - dev.groupby(key)[value].transform("mean")) ** 2).sum())
    df = int((n[rep] - 1).sum())
    var = ss / df
    a = 1 - confidence
    ci = (math.sqrt(ss / stats.chi2.ppf(1 - a / 2, df)), math.sqrt(ss / stats.chi2.ppf(a / 2, df)))
    return SeedNoise(math.sqrt(var), df, ci, len(rep))
