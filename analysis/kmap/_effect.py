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

Each stratum has its own variance of a configuration mean (narrow networks are noisier),
estimated from the residuals (feasible GLS, :func:`analysis.kmap._model.fit_k_model`).

- **Does k matter?** A permutation test (the default) of the F statistic of all theta terms
  against the model without them, shuffling the per-stage k vectors among configurations of
  one stratum: the inference design draws k at random, so the test is exact whatever the
  noise (heteroscedastic, heavy-tailed, shared by replicates); or the F-test itself. When
  some runs diverged or collapsed, a second test asks whether failing to train depends on k
  (a kernel size that makes training fail is an effect of k; :mod:`analysis.kmap._failures`);
  each test then runs at alpha / 2. "No evidence" is an answer: it says so with the p-value
  and the largest estimated difference between two k at one C, with a simultaneous interval.
- **C alone, or the stage too? Additive?** Checks of the model, nested so that one misfit is
  not named as another (:mod:`analysis.kmap._checks`): a per-stage effect of k on top of
  theta(C, k) (in ResNets C = 64 x 2^stage x width, so it is testable where widths make one
  C arise in several stages), then interactions of two stages' k on top of that. A check
  that rejects says which assumption fails; it never sets aside the test of k, which is
  valid whatever the truth (a best k that depends on the stage is evidence that k matters).
- **k* per C** is the k with the largest theta; its **per-C confidence set** holds every k
  that no other k beats by more than a max-t critical value over every pair of k at that C,
  so it contains *every* best k at that C (all of them when several tie) with probability
  >= 1 - alpha; the **joint** set (``k_set_joint``) takes the critical value over every pair
  of k at every C, so all C's sets hold all their best k at once with probability >= 1 - alpha.
- **Seed noise**: the pooled spread of replicates (``sigma_seed``, per stratum too), a check
  that the spread between configurations is what the seed noise predicts, and the
  replicate pairs that lie far beyond it (outliers, named by trial).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from analysis._load import FrameSource
from analysis.kmap._checks import additivity, stage_test
from analysis.kmap._data import KData, SeedNoise, kmap_data, pooled_noise, seed_noise
from analysis.kmap._data import finite_or_none as _num
from analysis.kmap._failures import failure_note, failures, outlier_note, outliers
from analysis.kmap._model import VARIANCES, KModel, MaxT, fit_k_model, permutation_p
from study.validate import ConfigError

__all__ = ["METHODS", "KEffect", "KModel", "fit_k_model", "k_effect", "pair_contrasts"]

METHODS = ("f", "permutation")


# --------------------------------------------------------------------------------------
# the answer


@dataclass(frozen=True)
class KEffect:
    """The answer to "does k matter, and which k does each C prefer?", with its intervals.

    ``table``: one row per C with ``n`` (stage observations), ``stages``, ``ks`` (k seen),
    ``k_star`` (the k with the largest estimated effect), ``k_set`` (its per-C confidence
    set for every best k), ``k_lo``/``k_hi`` (the set's range), ``k_set_joint``/
    ``k_lo_joint``/``k_hi_joint`` (the joint set over all C), ``spread`` (largest minus
    smallest estimated effect, points). ``effects``: one row per (C, k) with ``diff`` (top-1
    relative to k* at that C), ``lo``/``hi`` (1 - alpha interval of that contrast, the best k
    fixed at its estimate and not adjusted for multiplicity) and ``vs_ref`` (relative to the
    reference k); ``estimable`` False (and NaN numbers) where the design aliases the cell.
    ``evidence``: the top-1 test (and, when runs failed to train, the failure test; each at
    alpha / 2) rejects "k does not matter"; ``top1_evidence``: the top-1 test alone.
    ``stage_test`` and ``additivity``: the checks of the model (:mod:`analysis.kmap._checks`).
    ``failures``: diverged and collapsed runs per (C, k) and the test of whether failing
    depends on k. ``outliers``: replicate runs far beyond the seed noise. ``critical``: the
    max-t critical value of the joint family (every pair of k at every C).
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
    failures: Mapping[str, Any] = field(default_factory=dict)
    outliers: tuple[Mapping[str, Any], ...] = ()
    noise_by_stratum: Mapping[str, SeedNoise] = field(default_factory=dict)
    critical: float = math.nan
    maxt: MaxT | None = field(default=None, repr=False, compare=False)

    @property
    def sigma_seed(self) -> float | None:
        return self.noise.sigma

    @property
    def additive(self) -> bool:
        """False when the test of interactions between stages' k rejects at alpha."""
        return self.additivity.get("additive", True) is not False

    @property
    def stage_matters(self) -> bool:
        """True when k's effect differs between stages at equal C (the stage check rejects)."""
        return bool(self.stage_test.get("stage_matters"))

    @property
    def fits(self) -> bool:
        """The model's C-only, additive description holds as far as its checks can tell."""
        return self.additive and not self.stage_matters

    @property
    def top1_level(self) -> float:
        """The level of the top-1 test: alpha, or alpha / 2 when it shares alpha with the failure test."""
        return self.alpha / 2 if self.failures.get("p_value") is not None else self.alpha

    @property
    def top1_evidence(self) -> bool:
        """The test of top-1 rejects "k does not matter" at its level."""
        return self.p_value < self.top1_level

    @property
    def fails(self) -> bool:
        """True when failing to train (diverged or collapsed) depends on k (at alpha / 2)."""
        p = self.failures.get("p_value")
        return p is not None and p < self.alpha / 2

    def verdict(self) -> str:
        """The answer in words, first line of the k section of a report: whether k matters
        (the test of top-1, and of failures to train), then what the model's checks found."""
        lo, hi = self.effect_ci
        C, kh, kl = self.effect_at
        conf = f"{100 * (1 - self.alpha):.0f} %"
        largest = (f"largest difference between two k at one C: {self.effect_pts:.2f} points (C={C:g}: k={kh:g} vs k={kl:g}), "
                   f"{conf} simultaneous CI [{lo:.2f}, {hi:.2f}]")
        where = f"{self.n_trials} trials, {self.n_configs} configurations, {self.model.data.response_text()}"
        level = " (top-1 and failure tests at alpha/2 each)" if self.failures.get("p_value") is not None else ""
        top = f"p = {self.p_value:.2g}, {self.method}{level}"
        if self.fails:
            head = (f"Evidence that k matters: {self.failures['text']}. Top-1: "
                    + ("so does top-1" if self.top1_evidence else "no evidence beyond the failures") + f" ({top})")
        elif self.top1_evidence:
            head = f"Evidence that k matters ({top})"
        elif not self.fits:
            head = f"No evidence of main effects of k at this budget ({top})"
        else:
            head = f"No evidence that k matters at this budget ({top})"
        parts = [f"{head}; {largest}."]
        if self.stage_matters:
            parts.append(f"Its effect differs between stages at equal C (p = {self.stage_test['p_value']:.2g}, the stage check): "
                         "k* per C and the mapping scores below, functions of C alone, are shown, not found.")
        if not self.additive:
            i, j = self.additivity["pair"]
            parts.append(f"The kernel sizes of stages {i} and {j} interact (p = {self.additivity['p_value']:.2g}, "
                         f"{self.additivity['test']}): the effect of k is not additive, and k* per C, its sets and the mapping "
                         "scores below, which assume additivity, are shown, not found.")
        if not self.top1_evidence:
            parts.append("The k* and fits below are not supported by the data in top-1: they are shown, not found.")
            spread = self.additivity.get("spread", {})
            if self.additive and spread.get("p_value") is not None and spread["p_value"] < self.alpha:
                parts.append(f"Configurations differ beyond seed noise by about {spread['sigma_config']:.2f} points "
                             f"(p = {spread['p_value']:.2g}): either interactions the checks cannot see, or noise a "
                             "configuration's replicates share; the data cannot tell the two apart.")
        return " ".join(parts) + f" ({where})"

    def to_dict(self) -> dict[str, Any]:
        return {
            "evidence": bool(self.evidence),
            "top1_evidence": bool(self.top1_evidence),
            "p_value": _num(self.p_value),
            "top1_level": self.top1_level,
            "method": self.method,
            "alpha": self.alpha,
            "effect_pts": _num(self.effect_pts),
            "effect_ci": [_num(v) for v in self.effect_ci],
            "effect_at": {"C": self.effect_at[0], "k_high": self.effect_at[1], "k_low": self.effect_at[2]},
            "critical": _num(self.critical),
            "sigma_seed": _num(self.noise.sigma),
            "sigma_seed_ci": [_num(v) for v in self.noise.ci] if self.noise.ci else None,
            "sigma_seed_level": 1 - self.alpha,
            "sigma_seed_df": self.noise.df,
            "sigma_seed_by_stratum": {s: n.to_dict() for s, n in self.noise_by_stratum.items()},
            "n_trials": int(self.n_trials),
            "n_configs": int(self.n_configs),
            "response": self.model.data.response_text(),
            "epoch": self.model.data.epoch,
            "kind": self.model.data.kind,
            "excluded": dict(self.model.data.excluded),
            "model": ("WLS of top-1 (configuration means) on width/backbone strata, stage kinds and theta(C, k); weights = runs / "
                      + ("the residual variance of the configuration's stratum" if self.model.variance == "strata"
                         else "one pooled variance")),
            "variance": self.model.variance,
            "stratum_sd": {s: _num(v) for s, v in self.model.stratum_sd.items()},
            "df_resid": _num(self.model.df_resid),
            "stage_test": dict(self.stage_test),
            "additivity": dict(self.additivity),
            "failures": dict(self.failures),
            "outliers": [dict(o) for o in self.outliers],
            "notes": list(self.notes),
        }


def pair_contrasts(model: KModel, C: float | None = None) -> tuple[np.ndarray, list[tuple[float, float, float]]]:
    """Every difference theta(C, k1) - theta(C, k2) between two estimable k at one C (at
    every C, or at ``C`` only), as rows of L, with (C, k1, k2)."""
    Ls, meta = [], []
    for c, ks in model.estimable_levels().items():
        if C is not None and c != C:
            continue
        for a in range(len(ks)):
            for b in range(a + 1, len(ks)):
                Ls.append(model.theta_vector(c, ks[a]) - model.theta_vector(c, ks[b]))
                meta.append((c, ks[a], ks[b]))
    return np.array(Ls).reshape(len(Ls), len(model.beta)), meta


def _k_set(model: KModel, C: float, ok: list[float], crit: float) -> list[float]:
    """The k at C that no other k beats by more than ``crit`` standard errors. With the max-t
    critical value of every pair at C, a best k is left out only when some pair's t exceeds
    it, so the set holds every best k (all of them when several tie) with 1 - alpha."""
    if not math.isfinite(crit):
        return list(ok)
    out = []
    for k in ok:
        worse = [model.contrast(C, j, k) for j in ok if j != k]
        if all(e <= crit * se + 1e-12 for e, se in worse):
            out.append(k)
    return out


def _per_C(model: KModel, alpha: float, maxt: MaxT, joint: float) -> tuple[pd.DataFrame, pd.DataFrame]:
    from scipy import stats

    d = model.design
    rows, eff = [], []
    tq = stats.t.ppf(1 - alpha / 2, max(model.df_resid, 1.0))
    est = model.estimable_levels()
    for C in d.levels:
        ks, ok = d.levels[C], est[C]
        th = model.theta(C)
        best = model.best_k(C)
        kset = _k_set(model, C, ok, maxt.critical(pair_contrasts(model, C)[0], alpha))
        jset = _k_set(model, C, ok, joint)
        n = sum(d.counts[(C, k)] for k in ks)
        rows.append({"C": int(C), "n": n, "stages": ",".join(map(str, d.stages[C])), "ks": ",".join(f"{k:g}" for k in ks),
                     "k_star": int(best), "k_set": ",".join(f"{k:g}" for k in kset), "k_lo": int(min(kset)), "k_hi": int(max(kset)),
                     "k_set_joint": ",".join(f"{k:g}" for k in jset), "k_lo_joint": int(min(jset)), "k_hi_joint": int(max(jset)),
                     "spread": max(th[k] for k in ok) - min(th[k] for k in ok), "one_k": len(ok) == 1})
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


def _largest(model: KModel, crit: float) -> tuple[float, tuple[float, float], tuple[float, float, float]]:
    """The largest difference between two k at one C, with its simultaneous interval over
    every such pair (``crit``: so selecting the largest does not narrow it)."""
    L, meta = pair_contrasts(model)
    est = L @ model.beta
    j = int(np.argmax(np.abs(est)))
    C, ka, kb = meta[j]
    hi_k, lo_k = (ka, kb) if est[j] >= 0 else (kb, ka)
    se = float(math.sqrt(max(L[j] @ model.cov @ L[j], 0.0)))
    value = abs(float(est[j]))
    return value, (value - crit * se, value + crit * se), (C, hi_k, lo_k)


def k_effect(
    frames_or_data: FrameSource | KData,
    *,
    alpha: float = 0.05,
    method: str = "permutation",
    permutations: int = 999,
    epoch: int | None = None,
    kind: str | None = None,
    by: str = "C",
    variance: str = "strata",
    seed: int = 0,
) -> KEffect:
    """Test whether k matters and estimate k* per C, with intervals (see the module doc).

    ``frames_or_data``: :class:`analysis.StudyFrames`, a run folder, a storage URL or a
    :class:`KData`. ``method``: "permutation" (default: ``permutations`` shuffles of the k
    vectors within strata, exact whatever the noise, since the inference design assigns k
    at random) or "f" (the F-test, exact under Gaussian noise with the modelled variances).
    ``variance``: "strata" (a variance per width/backbone stratum, default) or "pooled".
    ``alpha`` is the level of every test and interval. Raises ``ValueError`` naming why the
    study cannot be analysed.
    """
    if not 0 < alpha < 1:
        raise ConfigError("alpha", f"must be in (0, 1), got {alpha!r}")
    if method not in METHODS:
        raise ConfigError("method", f"must be one of {', '.join(METHODS)}, got {method!r}")
    if variance not in VARIANCES:
        raise ConfigError("variance", f"must be one of {', '.join(VARIANCES)}, got {variance!r}")
    if method == "permutation" and (not isinstance(permutations, int) or permutations < 19):
        raise ConfigError("permutations", f"must be an integer >= 19, got {permutations!r}")
    data = frames_or_data if isinstance(frames_or_data, KData) else kmap_data(frames_or_data, epoch=epoch, kind=kind, by=by)
    model = fit_k_model(data, variance=variance)
    noise = seed_noise(data, confidence=1 - alpha)
    if method == "permutation":
        p = permutation_p(model, permutations, seed)
        how = f"permutation test of the F statistic, {permutations} shuffles of the k vectors within width strata"
    else:
        p = model.f_p
        how = f"F-test of {model.df_num} k terms, {model.df_resid:g} residual df"
    failed = failures(data, alpha, seed)
    if failed["p_value"] is not None:
        evidence = p < alpha / 2 or failed["p_value"] < alpha / 2
    else:
        evidence = p < alpha
    maxt = MaxT(model, seed)
    joint = maxt.critical(pair_contrasts(model)[0], alpha)
    table, effects = _per_C(model, alpha, maxt, joint)
    value, ci, at = _largest(model, joint)
    found = outliers(data, model, noise, alpha)
    by_stratum = {str(s): pooled_noise(g, key="key", value="y", confidence=1 - alpha) for s, g in data.trials.groupby("stratum")}
    notes = []
    if noise.sigma is None:
        notes.append("no configuration was run twice: the seed-to-seed noise is not measured (run the study with --replicates 2 "
                     "or --design inference)")
    if data.excluded:
        notes.append("left out of the model of top-1: " + ", ".join(f"{n} {why}" for why, n in data.excluded.items()))
    for note in (_aliased_note(model), failure_note(failed), outlier_note(found)):
        if note:
            notes.append(note)
    one = table.loc[table["one_k"], "C"].tolist()
    if one:
        notes.append(f"only one k seen (or estimable) at C = {', '.join(map(str, one))}: no comparison there")
    return KEffect(
        evidence=bool(evidence), p_value=float(p), method=how, alpha=alpha, effect_pts=value, effect_ci=ci, effect_at=at,
        noise=noise, n_trials=data.n_trials, n_configs=data.n_configs, table=table.drop(columns=["one_k"]), effects=effects,
        stage_test=stage_test(model, alpha), additivity=additivity(model, noise, alpha), model=model, notes=tuple(notes),
        failures=failed, outliers=found, noise_by_stratum=by_stratum, critical=joint, maxt=maxt,
    )
