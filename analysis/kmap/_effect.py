"""Does k matter, and which k does each C prefer? An explicit linear model with intervals.

The model (one row per configuration, its response the mean over its runs, weighted by the
number of runs; see :mod:`analysis.kmap._data`)::

    top1 = stratum(backbone, width) + sum_s kind(s, kind_s) + sum_s theta(C_s, k_s) + error

``stratum`` absorbs the width (and backbone), ``kind`` the stages whose attention is not the
analysed kind, and ``theta(C, k)`` is the top-1 effect of kernel size k in a stage whose
attention acts on C channels, relative to a reference k at that C (k=3 where observed).
It is fitted by weighted least squares (statsmodels); a configuration is the unit, so
differences between configurations that the additive model does not explain count as
error, not as signal.

- **Does k matter?** The F-test of all theta terms against the model without them (exact
  under Gaussian errors), or a permutation test that shuffles the per-stage k vectors among
  configurations of one stratum. "No evidence" is an answer: it says so with the p-value and
  the largest estimated difference between two k at one C, with a simultaneous 95 % interval.
- **k* per C** is the k with the largest theta; its **confidence set** holds every k that no
  other k beats significantly (one-sided tests at alpha / (m - 1), Bonferroni over the m k
  seen at that C), so the set contains the true best k with probability >= 1 - alpha; the
  interval is the set's smallest and largest k.
- **C alone, or the stage too?** In ResNets C = 64 x 2^stage x width, so stage and C are
  confounded unless widths make one C arise in several stages. The F-test of theta per
  (stage, C, k) against theta per (C, k), on the C values that arise in two or more stages.
- **Seed noise**: the pooled spread of replicates (``sigma_seed``), and a check that the
  spread between configurations is what the seed noise predicts.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np
import pandas as pd

from analysis.kmap._data import KData, SeedNoise, kmap_data, seed_noise
from analysis.kmap._model import DRAWS, KModel, design, f_test, fit_k_model, independent_columns, permutation_p, sqrt_psd

__all__ = ["KModel", "KEffect", "fit_k_model", "k_effect", "METHODS"]

METHODS = ("f", "permutation")


# --------------------------------------------------------------------------------------
# the answer


@dataclass(frozen=True)
class KEffect:
    """The answer to "does k matter, and which k does each C prefer?", with its intervals.

    ``table``: one row per C with ``n`` (stage observations), ``stages``, ``ks`` (k seen),
    ``k_star`` (the k with the largest estimated effect), ``k_set`` (its confidence set),
    ``k_lo``/``k_hi`` (the set's range), ``spread`` (largest minus smallest estimated effect,
    points). ``effects``: one row per (C, k) with ``diff`` (top-1 relative to k* at that C),
    ``lo``/``hi`` (95 % interval, not adjusted for multiplicity) and ``vs_ref`` (relative to
    the reference k); ``estimable`` False (and NaN numbers) where the design aliases the cell. ``evidence`` is ``p_value < alpha``.
    """

    evidence: bool
    p_value: float
    method: str
    alpha: float
    effect_pts: float
    effect_ci: tuple[float, float]
    effect_at: tuple[float, float, float]  # (C, k_high, k_low) of the largest difference
    noise: SeedNoise
    n_trials: int
    n_configs: int
    table: pd.DataFrame
    effects: pd.DataFrame
    stage_test: Mapping[str, Any]
    additivity: Mapping[str, Any]
    model: KModel = field(repr=False)
    notes: tuple[str, ...] = ()

    @property
    def sigma_seed(self) -> float | None:
        return self.noise.sigma

    def verdict(self) -> str:
        """The answer in words, first line of the k section of a report."""
        lo, hi = self.effect_ci
        C, kh, kl = self.effect_at
        largest = (f"largest difference between two k at one C: {self.effect_pts:.2f} points (C={C:g}: k={kh:g} vs k={kl:g}), "
                   f"95 % simultaneous CI [{lo:.2f}, {hi:.2f}]")
        data = self.model.data
        where = f"{self.n_trials} trials, {self.n_configs} configurations, {data.response_text()}"
        if self.evidence:
            return f"Evidence that k matters (p = {self.p_value:.2g}, {self.method}); {largest}. ({where})"
        return (f"No evidence that k matters at this budget (p = {self.p_value:.2g}, {self.method}); {largest}. "
                f"The k* and fits below are not supported by the data: they are shown, not found. ({where})")

    def to_dict(self) -> dict[str, Any]:
        return {
            "evidence": bool(self.evidence),
            "p_value": _num(self.p_value),
            "method": self.method,
            "alpha": self.alpha,
            "effect_pts": _num(self.effect_pts),
            "effect_ci": [_num(v) for v in self.effect_ci],
            "effect_at": {"C": self.effect_at[0], "k_high": self.effect_at[1], "k_low": self.effect_at[2]},
            "sigma_seed": _num(self.noise.sigma),
            "sigma_seed_ci": [_num(v) for v in self.noise.ci] if self.noise.ci else None,
            "sigma_seed_df": self.noise.df,
            "n_trials": int(self.n_trials),
            "n_configs": int(self.n_configs),
            "response": self.model.data.response_text(),
            "epoch": self.model.data.epoch,
            "kind": self.model.data.kind,
            "excluded": dict(self.model.data.excluded),
            "model": "WLS of top-1 (configuration means, weights = runs) on width/backbone strata, stage kinds and theta(C, k)",
            "df_resid": _num(self.model.df_resid),
            "stage_test": dict(self.stage_test),
            "additivity": dict(self.additivity),
            "notes": list(self.notes),
        }


def _num(v: Any) -> float | None:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def _simultaneous_critical(model: KModel, L: np.ndarray, alpha: float, seed: int) -> float:
    """The (1 - alpha) quantile of max |t| over the contrasts ``L`` (rows)."""
    if len(L) == 0:
        return math.nan
    V = L @ model.cov @ L.T
    se = np.sqrt(np.clip(np.diag(V), 1e-300, None))
    R = V / np.outer(se, se)
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((DRAWS, len(L))) @ sqrt_psd(R).T
    w = np.sqrt(rng.chisquare(max(model.df_resid, 1.0), DRAWS) / max(model.df_resid, 1.0))
    return float(np.quantile(np.abs(z / w[:, None]).max(axis=1), 1 - alpha))


def _per_C(model: KModel, alpha: float) -> tuple[pd.DataFrame, pd.DataFrame]:
    from scipy import stats

    d = model.design
    rows, eff = [], []
    tq = stats.t.ppf(0.975, max(model.df_resid, 1.0))
    est = model.estimable_levels()
    for C in d.levels:
        ks, ok = d.levels[C], est[C]
        th = model.theta(C)
        best = model.best_k(C)
        m = len(ok)
        crit = stats.t.ppf(1 - alpha / max(m - 1, 1), max(model.df_resid, 1.0))
        kset = []
        for k in ok:
            worse = [model.contrast(C, j, k) for j in ok if j != k]
            if all(e <= crit * se + 1e-12 for e, se in worse):
                kset.append(k)
        n = sum(d.counts[(C, k)] for k in ks)
        rows.append({"C": int(C), "n": n, "stages": ",".join(map(str, d.stages[C])), "ks": ",".join(f"{k:g}" for k in ks),
                     "k_star": int(best), "k_set": ",".join(f"{k:g}" for k in kset), "k_lo": int(min(kset)), "k_hi": int(max(kset)),
                     "spread": max(th[k] for k in ok) - min(th[k] for k in ok), "one_k": m == 1})
        for k in ks:
            diff, se = (0.0, 0.0) if k == best else model.contrast(C, k, best)
            vs_ref, se_ref = (0.0, 0.0) if k == d.ref[C] else model.contrast(C, k, d.ref[C])
            eff.append({"C": int(C), "k": int(k), "n": d.counts[(C, k)], "estimable": k in ok, "diff": diff, "lo": diff - tq * se,
                        "hi": diff + tq * se, "vs_ref": vs_ref, "ref_k": int(d.ref[C]), "ref_lo": vs_ref - tq * se_ref,
                        "ref_hi": vs_ref + tq * se_ref})
    return pd.DataFrame(rows), pd.DataFrame(eff)


def _aliased_note(model: KModel) -> str | None:
    """Names the (C, k) whose effect the design cannot estimate (shown as NaN, never as 0)."""
    cells = sorted(model.design.aliased)
    if not cells:
        return None
    per_C: dict[float, list[float]] = {}
    for C, k in cells:
        per_C.setdefault(C, []).append(k)
    where = "; ".join(f"C={C:g}: k={','.join(f'{k:g}' for k in ks)}" for C, ks in per_C.items())
    return (f"not estimable at this budget (aliased): {where}; their effects are unknown (NaN), left out of k* and the "
            "confidence sets, and a mapping that needs one is not scored for that network")


def _largest(model: KModel, alpha: float, seed: int) -> tuple[float, tuple[float, float], tuple[float, float, float]]:
    """The largest difference between two k at one C, with its simultaneous interval over
    every such pair (so selecting the largest does not narrow it)."""
    Ls, meta = [], []
    for C, ks in model.estimable_levels().items():
        for a in range(len(ks)):
            for b in range(a + 1, len(ks)):
                Ls.append(model.theta_vector(C, ks[a]) - model.theta_vector(C, ks[b]))
                meta.append((C, ks[a], ks[b]))
    L = np.array(Ls)
    est = L @ model.beta
    j = int(np.argmax(np.abs(est)))
    C, ka, kb = meta[j]
    sign = 1.0 if est[j] >= 0 else -1.0
    hi_k, lo_k = (ka, kb) if sign > 0 else (kb, ka)
    se = float(math.sqrt(max(L[j] @ model.cov @ L[j], 0.0)))
    c = _simultaneous_critical(model, L, alpha, seed)
    value = abs(float(est[j]))
    return value, (value - c * se, value + c * se), (C, hi_k, lo_k)


def _stage_test(model: KModel) -> dict[str, Any]:
    """theta per (stage, C, k) against theta per (C, k): does the stage matter at equal C?"""
    data, d = model.data, model.design
    shared = [C for C, st in d.stages.items() if len(st) >= 2]
    shared = sorted(shared)
    out: dict[str, Any] = {"shared_C": [int(c) for c in shared]}
    if not shared:
        out.update(p_value=None, text="no C value arises in two stages (widths that make one C appear in several stages "
                                      "are needed to tell C from stage): not tested")
        return out
    ds = design(data, per_stage=True)
    cf = data.configs
    y, w = cf["y"].to_numpy(float), cf["n"].to_numpy(float)
    X1 = np.column_stack([d.X0, d.Xk])
    X2 = np.column_stack([d.X0, d.Xk, ds.Xk])
    X2, _ = independent_columns(X2, np.zeros((len(cf), 0)), list(range(X2.shape[1])))
    if X2.shape[1] <= X1.shape[1] or len(cf) <= X2.shape[1]:
        out.update(p_value=None, text="too few configurations to fit k effects per stage: not tested")
        return out
    F, p, df_num, df_den = f_test(y, X1, X2, w)
    out.update(p_value=_num(p), f=_num(F), df=[df_num, df_den])
    verdict = "the k effect differs between stages at equal C" if p < 0.05 else "no evidence that the stage matters beyond C"
    out["text"] = f"{verdict} (F-test of k effects per (stage, C) against per C, on C = {', '.join(f'{c:g}' for c in shared)}: p = {p:.2g})"
    return out


def _additivity(model: KModel, noise: SeedNoise) -> dict[str, Any]:
    """Is the spread of configuration means what seed noise predicts?"""
    from scipy import stats

    if noise.sigma is None or noise.df == 0:
        return {"p_value": None, "text": "no replicates: the spread between configurations cannot be split into seed noise and "
                                         "configuration effects the model misses"}
    expected = noise.sigma**2  # the residual variance per run that seed noise alone predicts (weights = runs)
    F = model.scale / expected if expected > 0 else math.inf
    p = float(stats.f.sf(F, model.df_resid, noise.df))
    text = (f"residual standard deviation per run {math.sqrt(model.scale):.2f} points against a seed noise of "
            f"{noise.sigma:.2f} (p = {p:.2g})")
    if p < 0.05:
        text += ": configurations differ beyond the additive model (interactions between stages or with width); the test of k counts them as noise"
    return {"p_value": _num(p), "ratio": _num(F), "text": text}


def k_effect(
    frames_or_data: Any,
    *,
    alpha: float = 0.05,
    method: str = "f",
    permutations: int = 999,
    epoch: int | None = None,
    kind: str | None = None,
    by: str = "C",
    seed: int = 0,
) -> KEffect:
    """Test whether k matters and estimate k* per C, with intervals (see the module doc).

    ``frames_or_data``: :class:`analysis.StudyFrames`, a run folder, a storage URL or a
    :class:`KData`. ``method``: "f" (F-test) or "permutation" (``permutations`` shuffles).
    Raises ``ValueError`` naming why the study cannot be analysed.
    """
    if not 0 < alpha < 1:
        raise ValueError(f"alpha: must be in (0, 1), got {alpha!r}")
    if method not in METHODS:
        raise ValueError(f"method: must be one of {', '.join(METHODS)}, got {method!r}")
    if method == "permutation" and (not isinstance(permutations, int) or permutations < 19):
        raise ValueError(f"permutations: must be an integer >= 19, got {permutations!r}")
    data = frames_or_data if isinstance(frames_or_data, KData) else kmap_data(frames_or_data, epoch=epoch, kind=kind, by=by)
    model = fit_k_model(data)
    noise = seed_noise(data)
    if method == "permutation":
        p = permutation_p(model, permutations, seed)
        how = f"permutation test, {permutations} shuffles of the k vectors within width strata"
    else:
        p = model.f_p
        how = f"F-test of {model.df_num} k terms, {model.df_resid:g} residual df"
    table, effects = _per_C(model, alpha)
    value, ci, at = _largest(model, alpha, seed)
    notes = []
    if noise.sigma is None:
        notes.append("no configuration was run twice: the seed-to-seed noise is not measured (run the study with --replicates 2 "
                     "or --design inference)")
    if data.excluded:
        notes.append("left out: " + ", ".join(f"{n} {why}" for why, n in data.excluded.items()))
    aliased = _aliased_note(model)
    if aliased:
        notes.append(aliased)
    one = table.loc[table["one_k"], "C"].tolist()
    if one:
        notes.append(f"only one k seen (or estimable) at C = {', '.join(map(str, one))}: no comparison there")
    return KEffect(
        evidence=bool(p < alpha), p_value=float(p), method=how, alpha=alpha, effect_pts=value, effect_ci=ci, effect_at=at,
        noise=noise, n_trials=data.n_trials, n_configs=data.n_configs, table=table.drop(columns=["one_k"]), effects=effects,
        stage_test=_stage_test(model), additivity=_additivity(model, noise), model=model, notes=tuple(notes),
    )
