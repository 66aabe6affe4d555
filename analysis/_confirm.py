"""The answer of a confirmation study (``--space kmap_confirm``): each arm against the paper's
psi, pair by pair, with the decision rule the study stated before it ran."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from analysis._load import FrameSource, coerce_frames
from study.validate import ConfigError

__all__ = ["ConfirmResult", "confirm_result"]


@dataclass(frozen=True)
class ConfirmResult:
    """``table``: one row per arm with ``n_pairs``, ``mean_top1`` (final-epoch validation top-1
    over its runs), ``diff`` (mean paired difference against ``reference``), ``lo``/``hi`` (its
    t interval at ``confidence``). ``decision`` is the rule stated at creation, ``verdict`` its
    outcome for the fitted mapping."""

    table: pd.DataFrame
    reference: str
    confidence: float
    decision: str
    verdict: str
    source: str | None

    def to_dict(self) -> dict[str, Any]:
        return {"reference": self.reference, "confidence": self.confidence, "decision": self.decision, "verdict": self.verdict,
                "source": self.source, "arms": self.table.to_dict(orient="records")}


def confirm_result(frames: FrameSource, *, reference: str = "paper_psi", confidence: float = 0.95) -> ConfirmResult:
    """Paired top-1 differences of every arm against ``reference`` (pairs: runs with the same
    seed), with t intervals. Raises ``ValueError`` for a study that is not a confirmation."""
    from scipy import stats

    fr = coerce_frames(frames)
    t = fr.trials
    if t.empty or "param_arm" not in t:
        raise ConfigError("confirmation", "the study has no arms (it is not a kmap_confirm study)")
    t = t[(t["state"] == "complete") & t["top1_last"].notna()]
    arms = sorted(t["param_arm"].dropna().unique())
    if reference not in arms:
        raise ConfigError("confirmation", f"no complete run of the reference arm {reference!r}")
    by = t.pivot_table(index="seed", columns="param_arm", values="top1_last", aggfunc="mean")
    rows = []
    q = 1 - (1 - confidence) / 2
    for arm in arms:
        row: dict[str, Any] = {"arm": arm, "runs": int((t["param_arm"] == arm).sum()), "mean_top1": float(t.loc[t["param_arm"] == arm, "top1_last"].mean())}
        if arm != reference:
            d = (by[arm] - by[reference]).dropna().to_numpy(float)
            n = len(d)
            mean = float(d.mean()) if n else math.nan
            half = float(stats.t.ppf(q, n - 1) * d.std(ddof=1) / math.sqrt(n)) if n >= 2 else math.nan
            row.update(n_pairs=n, diff=mean, lo=mean - half, hi=mean + half)
        else:
            row.update(n_pairs=int(by[arm].notna().sum()), diff=0.0, lo=np.nan, hi=np.nan)
        rows.append(row)
    table = pd.DataFrame(rows)
    options = dict(fr.settings.get("space_options") or {})
    decision = options.get("decision") or "the fitted mapping is better if the interval of its paired difference lies above 0"
    fit = table[table["arm"] == "fitted"]
    if fit.empty or not np.isfinite(fit["lo"].iloc[0]):
        verdict = "no decision: the fitted arm needs at least two complete pairs with the paper's psi"
    else:
        lo, hi, diff = fit["lo"].iloc[0], fit["hi"].iloc[0], fit["diff"].iloc[0]
        ci = f"{diff:+.2f} points, {100 * confidence:.0f} % CI [{lo:+.2f}, {hi:+.2f}], {int(fit['n_pairs'].iloc[0])} pairs"
        if lo > 0:
            verdict = f"the fitted mapping is better than the paper's psi ({ci})"
        elif hi < 0:
            verdict = f"the fitted mapping is worse than the paper's psi ({ci})"
        else:
            verdict = f"the fitted mapping is not shown different from the paper's psi ({ci})"
    return ConfirmResult(table=table, reference=reference, confidence=confidence, decision=decision, verdict=verdict,
                         source=options.get("source"))
