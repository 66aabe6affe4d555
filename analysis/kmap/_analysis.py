"""The k-vs-C analysis of a study; the public module and its documentation are :mod:`analysis.kmap`."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from analysis._load import FrameSource, coerce_frames
from analysis.kmap._claims import Claim, claim_gate, mapping_claims
from analysis.kmap._data import KData
from analysis.kmap._effect import KEffect, k_effect
from analysis.kmap._fits import jsonable
from analysis.kmap._mappings import (
    Mapping,
    MappingScores,
    candidate_mappings,
    common_widths,
    parse_mapping,
    score_mappings,
)
from analysis.kmap._psi_choice import PsiChoice, fit_psi_by_top1
from study.validate import ConfigError

__all__ = ["KmapAnalysis", "analyze_kmap", "gamma_b_plane"]


@dataclass(frozen=True)
class KmapAnalysis:
    """A study's k-vs-C answer: ``effect`` (does k matter; k* per C with confidence sets;
    the model), ``fitted`` (psi's (gamma, b) chosen by predicted top-1 on the study's data;
    None when no psi fits the k the study ran), ``scores`` (every candidate mapping's
    predicted regret and difference to the paper's psi on the same widths, all intervals
    from one max-t family, :class:`analysis.kmap.MappingScores`) and ``claims`` (the claim
    sentences about mappings the answer makes, controlled per study: :mod:`analysis.kmap._claims`)."""

    effect: KEffect
    fitted: PsiChoice | None
    scores: MappingScores
    claims: tuple[Claim, ...] = ()
    notes: tuple[str, ...] = ()

    @property
    def mappings(self) -> pd.DataFrame:
        """One row per candidate mapping, best (lowest regret) first (:attr:`MappingScores.table`)."""
        return self.scores.table

    @property
    def critical(self) -> float:
        """The max-t critical value of every interval of the mapping table."""
        return self.scores.critical

    @property
    def preferred(self) -> pd.DataFrame:
        """k* per C with its confidence set (:attr:`KEffect.table`)."""
        return self.effect.table

    @property
    def data(self) -> KData:
        return self.effect.model.data

    def to_dict(self) -> dict[str, Any]:
        """The machine-readable answer (``python -m analysis.kmap RUN --json``)."""
        gate = claim_gate(self.effect)
        out = {
            "k_effect": self.effect.to_dict(),
            "verdict": self.effect.verdict(),
            "preferred_k": self.effect.table.to_dict(orient="records"),
            "effects": self.effect.effects.to_dict(orient="records"),
            "mappings": self.mappings.to_dict(orient="records"),
            "mapping_family": {"critical": self.critical if math.isfinite(self.critical) else None, "contrasts": self.scores.family,
                               "widths": list(self.scores.widths), "level": 1 - self.effect.alpha},
            "claims": [c.to_dict() for c in self.claims],
            "claims_withheld": gate,
            "fitted_psi": self.fitted.to_dict() if self.fitted is not None else None,
            "notes": [*self.effect.notes, *self.notes],
        }
        return jsonable(out)


def analyze_kmap(
    frames: FrameSource | KData,
    *,
    alpha: float = 0.05,
    method: str = "permutation",
    permutations: int = 999,
    epoch: int | None = None,
    kind: str | None = None,
    by: str = "C",
    variance: str = "strata",
    mappings: Sequence[str | Mapping] = (),
    seed: int = 0,
) -> KmapAnalysis:
    """Test whether k matters, estimate k* per C, fit psi by predicted top-1 and score the
    candidate mappings (:func:`analysis.k_effect`, :func:`analysis.fit_psi_by_top1`,
    :func:`analysis.score_mappings`), and state the claims the scores support; ``mappings``:
    more mappings to score, as :class:`Mapping` or specs for :func:`parse_mapping`
    (``"gamma=1.5,b=0"``, ``"k=3,5,7,7"``). Raises ``ValueError`` naming why a study cannot
    be analysed (no trials with an ECA kind, too few configurations for the model, a
    malformed mapping, ...)."""
    named = [m if isinstance(m, Mapping) else parse_mapping(m) for m in mappings]
    effect = k_effect(frames, alpha=alpha, method=method, permutations=permutations, epoch=epoch, kind=kind, by=by,
                      variance=variance, seed=seed)
    notes: list[str] = []
    widths, _ = common_widths(effect.model, candidate_mappings(None, named))
    try:
        fitted = fit_psi_by_top1(effect.model, alpha=alpha, seed=seed, widths=widths)
    except ValueError as exc:
        fitted = None
        notes.append(f"no fitted psi: {exc}")
    scores = score_mappings(effect.model, fitted=fitted, named=named, alpha=alpha, seed=seed, maxt=effect.maxt)
    notes += scores.notes
    return KmapAnalysis(effect=effect, fitted=fitted, scores=scores, claims=mapping_claims(effect, scores.table), notes=tuple(notes))


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


def gamma_b_plane(frames: FrameSource, *, bins: int = 8, states: Sequence[str] = ("complete",)) -> pd.DataFrame:
    """Top-1 over the psi (gamma, b) plane from trials whose ECA stages all asked for the
    same (gamma, b): one row per cell with ``gamma``, ``b`` (the cell's value or centre),
    its edges ``gamma_lo``/``gamma_hi``/``b_lo``/``b_hi``, ``n``, ``mean_top1`` with its
    95 % t interval ``mean_lo``/``mean_hi`` (NaN for a cell of one trial), ``best_top1`` and
    ``std_top1``. Sampled on a grid of at most ``bins`` values per axis,
    the cells are the grid points; sampled continuously, ``bins`` equal-width bins per axis.
    Empty when no trial sampled (gamma, b). Descriptive: complete trials only, no model."""

    if bins < 1:
        raise ConfigError("bins", f"must be >= 1, got {bins!r}")
    t = coerce_frames(frames).trials
    cols = ["gamma", "b", "n", "mean_top1", "mean_lo", "mean_hi", "best_top1", "std_top1", "gamma_lo", "gamma_hi", "b_lo", "b_hi"]
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
    from scipy import stats

    n = agg["n"].to_numpy(float)
    with np.errstate(divide="ignore", invalid="ignore"):
        half = np.where(n >= 2, stats.t.ppf(0.975, np.maximum(n - 1, 1)) * agg["std_top1"].to_numpy(float) / np.sqrt(n), np.nan)
    agg["mean_lo"], agg["mean_hi"] = agg["mean_top1"] - half, agg["mean_top1"] + half
    agg["gamma_lo"], agg["gamma_hi"] = ge[agg["gi"]], ge[agg["gi"] + 1]
    agg["b_lo"], agg["b_hi"] = be[agg["bi"]], be[agg["bi"] + 1]
    return agg[cols].sort_values(["gamma", "b"]).reset_index(drop=True)
