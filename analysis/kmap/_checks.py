"""Checks of the k-vs-C model: does k's effect depend on the stage beyond C, do two stages'
k interact, and is the spread between configurations what the seed noise predicts?

Each check is a nested F-test on the configuration means with the model's weights, so noise
a configuration's runs share counts as error, not as a misfit. The checks are nested in
order, and each is tested on top of everything before it, so one misfit is not named as
another:

1. **C alone?** theta(C, k) + a per-stage effect of k (one term per stage and k) against
   theta(C, k): where widths make one C arise in several stages, a best k that depends on
   the stage rejects here (and only here).
2. **Additive?** For every pair of stages, one effect per combination of their two k on top
   of the model of (1) (per-stage effects included): a best k that depends on the stage,
   or an effect of k in one stage only, is not an interaction. Bonferroni over the pairs.
3. **Spread**: the residual variance per run against the seed noise (replicates).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from analysis.kmap._data import SeedNoise
from analysis.kmap._data import finite_or_none as _num
from analysis.kmap._model import KModel, f_test, independent_columns, weighted_ssr

__all__ = ["MIN_INTERACTION_DF", "additivity", "stage_columns", "stage_test"]

#: the residual degrees of freedom a pair's interaction test needs (fewer: that pair is not tested)
MIN_INTERACTION_DF = 10


def _base(model: KModel) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    cf = model.data.configs
    d = model.design
    return cf["y"].to_numpy(float), model.weights, np.column_stack([d.X0, d.Xk])


def stage_columns(model: KModel) -> tuple[np.ndarray, list[tuple[int, float]]]:
    """The per-stage effects of k that add rank to the C-only model: one column per
    (stage, k) that counts the configurations whose stage has that k."""
    cf = model.data.configs
    y, _, X1 = _base(model)
    cols, names = [], []
    for i in range(model.data.num_stages):
        k = cf[f"k{i}"].to_numpy(float)
        for kk in sorted(set(k[np.isfinite(k)].tolist())):
            cols.append((k == kk).astype(float))
            names.append((i, kk))
    if not cols:
        return np.zeros((len(y), 0)), []
    return independent_columns(np.column_stack(cols), X1, names)


def stage_test(model: KModel, alpha: float) -> dict[str, Any]:
    """Check 1 of the module doc: does k's effect depend on the stage beyond C?"""
    d = model.design
    shared = sorted(C for C, st in d.stages.items() if len(st) >= 2)
    out: dict[str, Any] = {"shared_C": [int(c) for c in shared], "alpha": alpha, "p_value": None, "stage_matters": False}
    y, w, X1 = _base(model)
    Xs, _ = stage_columns(model)
    if not shared or Xs.shape[1] == 0:
        out["text"] = ("no C value arises in two stages (widths that make one C appear in several stages are needed to tell C "
                       "from stage): not tested")
        return out
    X2 = np.column_stack([X1, Xs])
    if len(y) <= X2.shape[1]:
        out["text"] = "too few configurations to fit k effects per stage: not tested"
        return out
    F, p, df_num, df_den = f_test(y, X1, X2, w)
    out.update(p_value=_num(p), f=_num(F), df=[df_num, df_den], stage_matters=bool(p < alpha))
    verdict = ("the effect of k differs between stages at equal C: k* per C and the mappings below, functions of C alone, do not "
               "describe it" if p < alpha else "no evidence that the stage matters beyond C")
    out["text"] = (f"{verdict} (F-test of a per-stage effect of k on top of theta(C, k), {df_num} terms, on C = "
                   f"{', '.join(f'{c:g}' for c in shared)} shared by stages: p = {p:.2g}, level {alpha:g})")
    return out


def _interaction(model: KModel, alpha: float) -> dict[str, Any]:
    """Check 2 of the module doc: the smallest p over the pairs of stages times the number
    of pairs tested (Bonferroni), and the pair it came from."""
    data = model.data
    cf = data.configs
    S = data.num_stages
    Ks = [cf[f"k{i}"].to_numpy(float) for i in range(S)]
    y, w, X1 = _base(model)
    Xs, _ = stage_columns(model)
    base = np.column_stack([X1, Xs])
    tests = []
    for i in range(S):
        for j in range(i + 1, S):
            both = np.isfinite(Ks[i]) & np.isfinite(Ks[j])
            combos = sorted({(a, b) for a, b in zip(Ks[i][both], Ks[j][both])})
            if len(combos) < 2:
                continue
            cols = np.column_stack([(both & (Ks[i] == a) & (Ks[j] == b)).astype(float) for a, b in combos])
            Xi, _ = independent_columns(cols, base, combos)
            if Xi.shape[1] == 0 or len(y) - base.shape[1] - Xi.shape[1] < MIN_INTERACTION_DF:
                continue
            F, p, df_num, df_den = f_test(y, base, np.column_stack([base, Xi]), w)
            if math.isfinite(p):
                tests.append((p, i, j, df_num, df_den))
    if not tests:
        return {"p_value": None, "additive": None, "test": "",
                "text": "too few configurations to test interactions between stages' k: additivity assumed, not checked"}
    p, i, j, df_num, df_den = min(tests)
    p_all = min(1.0, p * len(tests))
    test = (f"F-tests of one effect per (k_i, k_j) on top of per-stage effects of k, for {len(tests)} pairs of stages, Bonferroni; "
            f"smallest at stages {i} and {j}: {df_num} terms, {df_den:g} df")
    text = (f"interactions between the k of two stages: p = {p_all:.2g} ({test}, level {alpha:g})"
            + (f": the kernel sizes of stages {i} and {j} interact" if p_all < alpha else ": no evidence of interactions"))
    return {"p_value": _num(p_all), "pair": [i, j], "pairs_tested": len(tests), "additive": bool(p_all >= alpha), "test": test,
            "text": text}


def _spread(model: KModel, noise: SeedNoise, alpha: float) -> dict[str, Any]:
    """Check 3: is the spread of configuration means (per run) what seed noise predicts?
    When it is larger, the difference is a configuration-level spread: interactions the
    model does not name, or noise a configuration's replicates share (paired seeds). Both
    count as error in the model, whose residual carries them, so its intervals stay valid;
    it is no evidence of interactions by itself."""
    from scipy import stats

    if noise.sigma is None or noise.df == 0:
        return {"p_value": None, "text": "no replicates: the spread between configurations cannot be split into seed noise and "
                                         "configuration-level variation"}
    cf = model.data.configs
    n = cf["n"].to_numpy(float)
    y, _, X1 = _base(model)
    ssr, rank = weighted_ssr(y, X1, n)
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


def additivity(model: KModel, noise: SeedNoise, alpha: float) -> dict[str, Any]:
    """Checks 2 and 3 of the module doc, as one record (``additive``: False when check 2 rejects)."""
    inter = _interaction(model, alpha)
    spread = _spread(model, noise, alpha)
    return {**inter, "alpha": alpha, "spread": spread, "text": f"{inter['text']}; {spread['text']}"}
