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
  noise (heteroscedastic, heavy-tailed, shared by replicates); or the F-test itself. When some trials diverged, a second test asks whether divergence depends on k
  (a k that makes training diverge is an effect of k); each test then runs at alpha / 2.
  "No evidence" is an answer: it says so with the p-value and the largest estimated
  difference between two k at one C, with a simultaneous interval.
- **Additive?** For every pair of stages, the F-test of one effect per combination of
  their two k against the additive model, Bonferroni over the pairs. When it rejects, the
  verdict says that the main-effect test does not answer the question.
- **k* per C** is the k with the largest theta; its **per-C confidence set** holds every k
  that no other k beats significantly (one-sided tests at alpha / (m - 1), Bonferroni over
  the m k seen at that C), so it contains the true best k at that C with probability
  >= 1 - alpha; the **joint** set (``k_set_joint``) divides alpha by the number of C too, so
  all C's sets hold their best k at once with probability >= 1 - alpha.
- **C alone, or the stage too?** In ResNets C = 64 x 2^stage x width, so stage and C are
  confounded unless widths make one C arise in several stages. The F-test of theta per
  (stage, C, k) against theta per (C, k), on the C values that arise in two or more stages.
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
from analysis.kmap._data import KData, SeedNoise, kmap_data, pooled_noise, seed_noise
from analysis.kmap._model import (
    VARIANCES,
    KModel,
    design,
    f_test,
    fit_k_model,
    independent_columns,
    permutation_p,
    simultaneous_critical,
    weighted_ssr,
)
from study.validate import ConfigError

__all__ = ["METHODS", "KEffect", "KModel", "fit_k_model", "k_effect"]

METHODS = ("f", "permutation")
#: shuffles of the divergence test
DIVERGENCE_PERMUTATIONS = 1999
#: the residual degrees of freedom a pair's interaction test needs (fewer: that pair is not tested)
MIN_INTERACTION_DF = 10


# --------------------------------------------------------------------------------------
# the answer


@dataclass(frozen=True)
class KEffect:
    """The answer to "does k matter, and which k does each C prefer?", with its intervals.

    ``table``: one row per C with ``n`` (stage observations), ``stages``, ``ks`` (k seen),
    ``k_star`` (the k with the largest estimated effect), ``k_set`` (its per-C confidence
    set), ``k_lo``/``k_hi`` (the set's range), ``k_set_joint``/``k_lo_joint``/``k_hi_joint``
    (the joint set over all C), ``spread`` (largest minus smallest estimated effect,
    points). ``effects``: one row per (C, k) with ``diff`` (top-1 relative to k* at that C),
    ``lo``/``hi`` (1 - alpha interval of that contrast, the best k fixed at its estimate and
    not adjusted for multiplicity) and ``vs_ref`` (relative to the reference k); ``estimable``
    False (and NaN numbers) where the design aliases the cell. ``evidence``: the top-1 test
    (and, when trials diverged, the divergence test; each at alpha / 2) rejects "k does not
    matter". ``additivity``: the test of interactions between stages' k (``additive``) and
    the spread between configurations against the seed noise. ``divergence``: counts per
    (C, k) and the test of whether divergence depends on k. ``outliers``: replicate runs far
    beyond the seed noise.
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
    divergence: Mapping[str, Any] = field(default_factory=dict)
    outliers: tuple[Mapping[str, Any], ...] = ()
    noise_by_stratum: Mapping[str, SeedNoise] = field(default_factory=dict)

    @property
    def sigma_seed(self) -> float | None:
        return self.noise.sigma

    @property
    def additive(self) -> bool:
        """False when the test of interactions between stages' k rejects at alpha."""
        return self.additivity.get("additive", True) is not False

    @property
    def diverges(self) -> bool:
        """True when divergence depends on k (at alpha / 2: it shares alpha with the top-1 test)."""
        p = self.divergence.get("p_value")
        return p is not None and p < self.alpha / 2

    def verdict(self) -> str:
        """The answer in words, first line of the k section of a report."""
        lo, hi = self.effect_ci
        C, kh, kl = self.effect_at
        conf = f"{100 * (1 - self.alpha):.0f} %"
        largest = (f"largest difference between two k at one C: {self.effect_pts:.2f} points (C={C:g}: k={kh:g} vs k={kl:g}), "
                   f"{conf} simultaneous CI [{lo:.2f}, {hi:.2f}]")
        data = self.model.data
        where = f"{self.n_trials} trials, {self.n_configs} configurations, {data.response_text()}"
        div = self.divergence
        tested_div = div.get("p_value") is not None
        level = " (top-1 and divergence tests at alpha/2 each)" if tested_div else ""
        head = ""
        if self.diverges:
            head = f"Evidence that k matters: {div['text']}. "
        if not self.additive:
            a = self.additivity
            return (f"{head}The effect of k is not additive: the kernel sizes of different stages interact (p = {a['p_value']:.2g}, "
                    f"{a['test']}), so the test of k's main effects (p = {self.p_value:.2g}) does not answer whether k matters, and "
                    f"k* per C, its sets and the mapping scores below, which assume additivity, are shown, not found; {largest}. ({where})")
        if self.diverges:
            top = "so does top-1" if self.p_value < self.alpha / 2 else "no evidence beyond divergence in top-1"
            return f"{head}Top-1 (p = {self.p_value:.2g}, {self.method}): {top}{level}; {largest}. ({where})"
        if self.evidence:
            return f"Evidence that k matters (p = {self.p_value:.2g}, {self.method}{level}); {largest}. ({where})"
        spread = self.additivity.get("spread", {})
        caveat = ""
        if spread.get("p_value") is not None and spread["p_value"] < self.alpha:
            caveat = (f" Configurations differ beyond seed noise by about {spread['sigma_config']:.2f} points (p = {spread['p_value']:.2g}): "
                      "either interactions between stages' k, which this main-effect test cannot see, or noise a configuration's "
                      "replicates share; the data cannot tell the two apart.")
        return (f"No evidence that k matters at this budget (p = {self.p_value:.2g}, {self.method}{level}); {largest}. "
                f"The k* and fits below are not supported by the data: they are shown, not found.{caveat} ({where})")

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
            "sigma_seed_by_stratum": {s: n.to_dict() for s, n in self.noise_by_stratum.items()},
            "n_trials": int(self.n_trials),
            "n_configs": int(self.n_configs),
            "response": self.model.data.response_text(),
            "epoch": self.model.data.epoch,
            "kind": self.model.data.kind,
            "excluded": dict(self.model.data.excluded),
            "model": ("WLS of top-1 (configuration means) on width/backbone strata, stage kinds and theta(C, k); weights = runs / "
                      + ("the residual variance of the configuration's stratum" if self.model.variance == "strata" else "one pooled variance")),
            "variance": self.model.variance,
            "stratum_sd": {s: _num(v) for s, v in self.model.stratum_sd.items()},
            "df_resid": _num(self.model.df_resid),
            "stage_test": dict(self.stage_test),
            "additivity": dict(self.additivity),
            "divergence": dict(self.divergence),
            "outliers": [dict(o) for o in self.outliers],
            "notes": list(self.notes),
        }


def _num(v: Any) -> float | None:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def _k_set(model: KModel, C: float, ok: list[float], crit: float) -> list[float]:
    """The k at C that no other k beats by more than ``crit`` standard errors."""
    out = []
    for k in ok:
        worse = [model.contrast(C, j, k) for j in ok if j != k]
        if all(e <= crit * se + 1e-12 for e, se in worse):
            out.append(k)
    return out


def _per_C(model: KModel, alpha: float) -> tuple[pd.DataFrame, pd.DataFrame]:
    from scipy import stats

    d = model.design
    rows, eff = [], []
    df = max(model.df_resid, 1.0)
    tq = stats.t.ppf(1 - alpha / 2, df)
    est = model.estimable_levels()
    n_C = sum(len(ok) >= 2 for ok in est.values()) or 1
    for C in d.levels:
        ks, ok = d.levels[C], est[C]
        th = model.theta(C)
        best = model.best_k(C)
        m = len(ok)
        kset = _k_set(model, C, ok, stats.t.ppf(1 - alpha / max(m - 1, 1), df))
        joint = _k_set(model, C, ok, stats.t.ppf(1 - alpha / (n_C * max(m - 1, 1)), df))
        n = sum(d.counts[(C, k)] for k in ks)
        rows.append({"C": int(C), "n": n, "stages": ",".join(map(str, d.stages[C])), "ks": ",".join(f"{k:g}" for k in ks),
                     "k_star": int(best), "k_set": ",".join(f"{k:g}" for k in kset), "k_lo": int(min(kset)), "k_hi": int(max(kset)),
                     "k_set_joint": ",".join(f"{k:g}" for k in joint), "k_lo_joint": int(min(joint)), "k_hi_joint": int(max(joint)),
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


def pair_contrasts(model: KModel) -> tuple[np.ndarray, list[tuple[float, float, float]]]:
    """Every difference theta(C, k1) - theta(C, k2) between two estimable k at one C, as rows
    of L, with (C, k1, k2)."""
    Ls, meta = [], []
    for C, ks in model.estimable_levels().items():
        for a in range(len(ks)):
            for b in range(a + 1, len(ks)):
                Ls.append(model.theta_vector(C, ks[a]) - model.theta_vector(C, ks[b]))
                meta.append((C, ks[a], ks[b]))
    return np.array(Ls).reshape(len(Ls), len(model.beta)), meta


def _largest(model: KModel, alpha: float, seed: int) -> tuple[float, tuple[float, float], tuple[float, float, float]]:
    """The largest difference between two k at one C, with its simultaneous interval over
    every such pair (so selecting the largest does not narrow it)."""
    L, meta = pair_contrasts(model)
    est = L @ model.beta
    j = int(np.argmax(np.abs(est)))
    C, ka, kb = meta[j]
    sign = 1.0 if est[j] >= 0 else -1.0
    hi_k, lo_k = (ka, kb) if sign > 0 else (kb, ka)
    se = float(math.sqrt(max(L[j] @ model.cov @ L[j], 0.0)))
    c = simultaneous_critical(model, L, alpha, seed)
    value = abs(float(est[j]))
    return value, (value - c * se, value + c * se), (C, hi_k, lo_k)


def _yw(model: KModel) -> tuple[np.ndarray, np.ndarray]:
    cf = model.data.configs
    return cf["y"].to_numpy(float), model.weights


def _stage_test(model: KModel, alpha: float) -> dict[str, Any]:
    """theta per (stage, C, k) against theta per (C, k): does the stage matter at equal C?"""
    data, d = model.data, model.design
    shared = sorted(C for C, st in d.stages.items() if len(st) >= 2)
    out: dict[str, Any] = {"shared_C": [int(c) for c in shared], "alpha": alpha}
    if not shared:
        out.update(p_value=None, text="no C value arises in two stages (widths that make one C appear in several stages "
                                      "are needed to tell C from stage): not tested")
        return out
    ds = design(data, per_stage=True)
    y, w = _yw(model)
    X1 = np.column_stack([d.X0, d.Xk])
    X2 = np.column_stack([d.X0, d.Xk, ds.Xk])
    X2, _ = independent_columns(X2, np.zeros((len(y), 0)), list(range(X2.shape[1])))
    if X2.shape[1] <= X1.shape[1] or len(y) <= X2.shape[1]:
        out.update(p_value=None, text="too few configurations to fit k effects per stage: not tested")
        return out
    F, p, df_num, df_den = f_test(y, X1, X2, w)
    out.update(p_value=_num(p), f=_num(F), df=[df_num, df_den], stage_matters=bool(p < alpha))
    verdict = ("the k effect differs between stages at equal C: k* per C and the mappings below, which assume C alone, do not "
               "describe it" if p < alpha else "no evidence that the stage matters beyond C")
    out["text"] = (f"{verdict} (F-test of k effects per (stage, C) against per C, on C = {', '.join(f'{c:g}' for c in shared)}: "
                   f"p = {p:.2g}, level {alpha:g})")
    return out


def _interaction_test(model: KModel, alpha: float) -> dict[str, Any]:
    """Do the k of two stages interact? For every pair of stages, the F-test of one effect
    per (k_i, k_j) combination against the additive model (on the configuration means, with
    the model's weights: noise that a configuration's runs share is error here, not
    interaction); the answer is the smallest p-value times the number of pairs tested
    (Bonferroni), and the pair it came from."""
    data, d = model.data, model.design
    cf = data.configs
    S = data.num_stages
    Ks = [cf[f"k{i}"].to_numpy(float) for i in range(S)]
    y, w = _yw(model)
    X1 = np.column_stack([d.X0, d.Xk])
    tests = []
    for i in range(S):
        for j in range(i + 1, S):
            both = np.isfinite(Ks[i]) & np.isfinite(Ks[j])
            combos = sorted({(a, b) for a, b in zip(Ks[i][both], Ks[j][both])})
            if len(combos) < 2:
                continue
            cols = np.column_stack([(both & (Ks[i] == a) & (Ks[j] == b)).astype(float) for a, b in combos])
            Xi, _ = independent_columns(cols, X1, combos)
            if Xi.shape[1] == 0 or len(y) - X1.shape[1] - Xi.shape[1] < MIN_INTERACTION_DF:
                continue
            F, p, df_num, df_den = f_test(y, X1, np.column_stack([X1, Xi]), w)
            if math.isfinite(p):
                tests.append((p, i, j, df_num, df_den))
    if not tests:
        return {"p_value": None, "additive": None, "test": "",
                "text": "too few configurations to test interactions between stages' k: additivity assumed, not checked"}
    p, i, j, df_num, df_den = min(tests)
    p_all = min(1.0, p * len(tests))
    test = (f"F-tests of one effect per (k_i, k_j) for {len(tests)} pairs of stages, Bonferroni; smallest at stages {i} and {j}: "
            f"{df_num} terms, {df_den:g} df")
    text = (f"interactions between the k of two stages: p = {p_all:.2g} ({test}, level {alpha:g})"
            + (f": the effect of k is not additive (stages {i} and {j})" if p_all < alpha else ": no evidence of interactions"))
    return {"p_value": _num(p_all), "pair": [i, j], "pairs_tested": len(tests), "additive": bool(p_all >= alpha), "test": test,
            "text": text}


def _spread(model: KModel, noise: SeedNoise, alpha: float) -> dict[str, Any]:
    """Is the spread of configuration means (per run) what seed noise predicts? When it is
    larger, the difference is a configuration-level spread: interactions the model does not
    name, or noise a configuration's replicates share (paired seeds). Both count as error in
    the model, whose residual carries them, so its intervals stay valid; it is no evidence
    of interactions by itself."""
    from scipy import stats

    if noise.sigma is None or noise.df == 0:
        return {"p_value": None, "text": "no replicates: the spread between configurations cannot be split into seed noise and "
                                         "configuration-level variation"}
    cf = model.data.configs
    n = cf["n"].to_numpy(float)
    d = model.design
    X1 = np.column_stack([d.X0, d.Xk])
    ssr, rank = weighted_ssr(cf["y"].to_numpy(float), X1, n)
    df_resid = len(n) - rank
    per_run = ssr / df_resid  # residual variance per run with weights = runs
    expected = noise.sigma**2
    F = per_run / expected if expected > 0 else math.inf
    p = float(stats.f.sf(F, df_resid, noise.df))
    nbar = float(len(n) / np.sum(1 / n))
    sigma_config = math.sqrt(max(per_run - expected, 0.0) / nbar)
    text = (f"residual standard deviation per run {math.sqrt(per_run):.2f} points against a seed noise of {noise.sigma:.2f} "
            f"(p = {p:.2g})")
    if p < alpha:
        text += (f": configurations differ by about {sigma_config:.2f} points beyond seed noise, from interactions the model does "
                 "not name or from noise a configuration's replicates share (paired seeds); the model's residual includes it, "
                 "so its intervals do too")
    return {"p_value": _num(p), "ratio": _num(F), "sigma_config": _num(sigma_config), "text": text}


def _additivity(model: KModel, noise: SeedNoise, alpha: float) -> dict[str, Any]:
    inter = _interaction_test(model, alpha)
    spread = _spread(model, noise, alpha)
    return {**inter, "alpha": alpha, "spread": spread, "text": f"{inter['text']}; {spread['text']}"}


def _divergence(data: KData, alpha: float, seed: int) -> dict[str, Any]:
    """Counts of diverged trials per (C, k), and a permutation test (within strata) of
    whether divergence depends on k: the statistic is the chi-square of diverged against
    run stage observations over the (C, k) cells."""
    div, ok = data.diverged, data.trials
    S = data.num_stages
    if div is None or len(div) == 0:
        return {"p_value": None, "n_diverged": 0, "counts": [], "text": "no trial diverged"}
    cf = data.configs.set_index("key")
    runs = ok[["number", "key", "stratum"]].join(cf[[f"{c}{i}" for i in range(S) for c in ("C", "k")]], on="key")
    allr = pd.concat([runs.assign(diverged=0.0), div.assign(diverged=1.0)], ignore_index=True)
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
    D = allr["diverged"].to_numpy(float)
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
    P = DIVERGENCE_PERMUTATIONS
    Dp = np.empty((len(D), P))
    for j in range(P):
        perm = np.arange(len(D))
        for g in groups:
            perm[g] = rng.permutation(g)
        Dp[:, j] = D[perm]
    p = float((1 + np.sum(stat(Dp) >= observed - 1e-9)) / (1 + P))
    d_cell = A.T @ D
    counts = sorted(({"C": int(C), "k": int(k), "runs": int(n_cell[j]), "diverged": int(d_cell[j])} for (C, k), j in cells.items()),
                    key=lambda r: (r["C"], r["k"]))
    worst = max(counts, key=lambda r: (r["diverged"] / max(r["runs"], 1), r["diverged"]))
    rate = f"{len(div)} of {len(allr)} trials diverged"
    text = (f"k makes training diverge ({rate}, most where C={worst['C']}, k={worst['k']}: {worst['diverged']} of {worst['runs']}; "
            f"permutation test within strata, p = {p:.2g})" if p < alpha / 2 else
            f"{rate}; no evidence that divergence depends on k (permutation test within strata, p = {p:.2g})")
    return {"p_value": p, "n_diverged": len(div), "n_runs": len(allr), "counts": counts, "text": text}


def _outliers(data: KData, noise: SeedNoise, alpha: float) -> tuple[dict[str, Any], ...]:
    """Runs of a replicated configuration far from its other runs: the deviation from the
    configuration's mean beyond the Bonferroni normal quantile (over all replicated runs) of
    a robust seed noise (the median absolute deviation, which an outlier does not inflate)."""
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
    out = []
    for key, g in rep[rep["z"] > max(z, 3.0)].groupby("key", sort=False):
        others = rep[(rep["key"] == key)]
        for r in g.itertuples():
            mates = [int(x) for x in others["number"] if int(x) != int(r.number)]
            out.append({"trial": int(r.number), "replicates": mates, "top1": float(r.y),
                        "config_mean": float(others["y"].mean()), "z": float(r.z), "robust_sigma": robust})
    return tuple(sorted(out, key=lambda o: -o["z"])[:20])


def _outlier_note(outliers: tuple[Mapping[str, Any], ...]) -> str | None:
    if not outliers:
        return None
    shown = "; ".join(f"trial {o['trial']} (top-1 {o['top1']:.1f} against {o['config_mean']:.1f} for its configuration, "
                      f"replicates {', '.join(map(str, o['replicates']))}: {o['z']:.0f} x the robust seed noise {o['robust_sigma']:.2f})"
                      for o in outliers[:5])
    more = f" and {len(outliers) - 5} more" if len(outliers) > 5 else ""
    return f"outliers among replicates: {shown}{more}; a collapsed or unstable run? they stay in the model, which counts them as noise"


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
    divergence = _divergence(data, alpha, seed)
    if divergence["p_value"] is not None:
        evidence = p < alpha / 2 or divergence["p_value"] < alpha / 2
    else:
        evidence = p < alpha
    table, effects = _per_C(model, alpha)
    value, ci, at = _largest(model, alpha, seed)
    outliers = _outliers(data, noise, alpha)
    by_stratum = {str(s): pooled_noise(g, key="key", value="y", confidence=1 - alpha) for s, g in data.trials.groupby("stratum")}
    notes = []
    if noise.sigma is None:
        notes.append("no configuration was run twice: the seed-to-seed noise is not measured (run the study with --replicates 2 "
                     "or --design inference)")
    if data.excluded:
        notes.append("left out of the model of top-1: " + ", ".join(f"{n} {why}" for why, n in data.excluded.items()))
    for note in (_aliased_note(model), _outlier_note(outliers)):
        if note:
            notes.append(note)
    one = table.loc[table["one_k"], "C"].tolist()
    if one:
        notes.append(f"only one k seen (or estimable) at C = {', '.join(map(str, one))}: no comparison there")
    return KEffect(
        evidence=bool(evidence), p_value=float(p), method=how, alpha=alpha, effect_pts=value, effect_ci=ci, effect_at=at,
        noise=noise, n_trials=data.n_trials, n_configs=data.n_configs, table=table.drop(columns=["one_k"]), effects=effects,
        stage_test=_stage_test(model, alpha), additivity=_additivity(model, noise, alpha), model=model, notes=tuple(notes),
        divergence=divergence, outliers=outliers, noise_by_stratum=by_stratum,
    )
