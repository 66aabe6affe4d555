"""The model of the k-vs-C inference (documented in :mod:`analysis.kmap._effect`): the design
matrices, the weighted least-squares fit (statsmodels) and the nested F-tests."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from analysis.kmap._data import KData
from study.validate import ConfigError

__all__ = [
    "DRAWS",
    "VARIANCES",
    "KModel",
    "MaxT",
    "design",
    "draw_t",
    "f_test",
    "fit_k_model",
    "independent_columns",
    "permutation_p",
    "simultaneous_critical",
    "sqrt_psd",
]

#: draws of the multivariate t behind simultaneous intervals and parameter-uncertainty intervals
DRAWS = 20000


# --------------------------------------------------------------------------------------
# the design


def _reference_k(ks: Sequence[float], counts: Mapping[float, int]) -> float:
    if 3.0 in counts:
        return 3.0
    return sorted(ks, key=lambda k: (-counts[k], k))[0]


@dataclass(frozen=True)
class _Design:
    """Matrices of the model: nuisance columns ``X0``, theta columns ``Xk`` (one per
    non-reference (C, k) cell, named in ``cells``), and per C the k seen and the reference.
    ``aliased``: the (C, k) cells seen whose theta the design cannot estimate (a column that
    adds no rank, or one whose effect is only estimable together with such a column); their
    effect is unknown, not zero."""

    X0: np.ndarray
    Xk: np.ndarray
    cells: list[tuple[float, float]]
    levels: dict[float, list[float]]
    ref: dict[float, float]
    counts: dict[tuple[float, float], int]
    stages: dict[float, list[int]]
    aliased: frozenset = frozenset()


def independent_columns(X: np.ndarray, base: np.ndarray, names: list[Any], tol: float = 1e-9) -> tuple[np.ndarray, list[Any]]:
    """Columns of ``X`` that add rank to ``base``, in order (aliased cells are dropped):
    Gram-Schmidt against an orthonormal basis of what is kept so far."""
    Q = np.zeros((X.shape[0], 0))
    for col in base.T:
        r = col - Q @ (Q.T @ col)
        if np.linalg.norm(r) > tol * max(1.0, np.linalg.norm(col)):
            Q = np.column_stack([Q, r / np.linalg.norm(r)])
    keep: list[int] = []
    for j in range(X.shape[1]):
        col = X[:, j]
        r = col - Q @ (Q.T @ col)
        r = r - Q @ (Q.T @ r)  # twice is enough
        if np.linalg.norm(r) > tol * max(1.0, np.linalg.norm(col)):
            Q = np.column_stack([Q, r / np.linalg.norm(r)])
            keep.append(j)
    return X[:, keep], [names[j] for j in keep]


def design(data: KData, *, per_stage: bool = False) -> _Design:
    cf = data.configs
    n = len(cf)
    S = data.num_stages
    # nuisance: one intercept per stratum, then the kinds of stages that are not the analysed kind
    strata = sorted(cf["stratum"].unique())
    cols = [(cf["stratum"] == s).to_numpy(float) for s in strata]
    names = [f"stratum[{s}]" for s in strata]
    for i in range(S):
        kinds = cf[f"kind{i}"].fillna("?")
        for kd in sorted(kinds.unique())[1:]:
            cols.append((kinds == kd).to_numpy(float))
            names.append(f"stage{i}[{kd}]")
    X0 = np.column_stack(cols) if cols else np.zeros((n, 0))
    X0, names = independent_columns(X0, np.zeros((n, 0)), names)
    # theta cells
    obs: dict[float, dict[float, int]] = {}
    stages: dict[float, set[int]] = {}
    for i in range(S):
        C, k = cf[f"C{i}"].to_numpy(float), cf[f"k{i}"].to_numpy(float)
        for c, kk in zip(C[np.isfinite(k)].tolist(), k[np.isfinite(k)].tolist()):
            obs.setdefault(c, {}).setdefault(kk, 0)
            obs[c][kk] += 1
            stages.setdefault(c, set()).add(i)
    levels = {c: sorted(v) for c, v in sorted(obs.items())}
    Cs = [cf[f"C{i}"].to_numpy(float) for i in range(S)]
    Ks = [cf[f"k{i}"].to_numpy(float) for i in range(S)]
    ref = {c: _reference_k(levels[c], obs[c]) for c in levels}
    cells: list[Any] = []
    kcols: list[np.ndarray] = []
    for c in levels:
        for kk in levels[c]:
            if kk == ref[c]:
                continue
            if per_stage:
                for i in sorted(stages[c]):
                    col = ((Cs[i] == c) & (Ks[i] == kk)).astype(float)
                    if col.any():
                        kcols.append(col)
                        cells.append((c, kk, i))
            else:
                col = sum(((Cs[i] == c) & (Ks[i] == kk)).astype(float) for i in range(S))
                kcols.append(col)
                cells.append((c, kk))
    Xk = np.column_stack(kcols) if kcols else np.zeros((n, 0))
    aliased = _not_estimable(X0, Xk, cells)
    Xk, cells = independent_columns(Xk, X0, cells)
    counts = {(c, kk): obs[c][kk] for c in obs for kk in obs[c]}
    return _Design(X0, Xk, cells, levels, ref, counts, {c: sorted(v) for c, v in stages.items()}, aliased)


def _not_estimable(X0: np.ndarray, Xk: np.ndarray, cells: list[Any], tol: float = 1e-8) -> frozenset:
    """The ``cells`` whose coefficient in the full model [X0, Xk] is not estimable: e_j does
    not lie in the row space of the design (so no linear combination of the data estimates
    it). Dropping such a column and reading its effect as 0 would hide that it is unknown."""
    X = np.column_stack([X0, Xk])
    if X.shape[1] == 0:
        return frozenset()
    _, s, vt = np.linalg.svd(X, full_matrices=False)
    basis = vt[s > tol * max(1.0, s.max(initial=0.0))]
    inside = np.sum(basis[:, X0.shape[1]:] ** 2, axis=0)  # squared norm of the projection of each e_j
    return frozenset(cell for cell, v in zip(cells, inside) if v < 1 - 1e-6)


# --------------------------------------------------------------------------------------
# the fitted model


#: how the variance of a configuration mean is modelled: one per width/backbone stratum
#: (feasible GLS, the default) or one for all (weights = runs)
VARIANCES = ("strata", "pooled")
#: the fewest residual degrees of freedom a stratum needs for a variance of its own; strata
#: with fewer share the pooled one
MIN_STRATUM_DF = 4.0


@dataclass(frozen=True)
class KModel:
    """The fitted model: theta per (C, k) with its covariance, and the F-test of "no k effect".

    ``theta(C)`` gives the effect of every k seen at C relative to the reference k (0 for
    it); ``contrast(C, k1, k2)`` the estimate and standard error of theta(C, k1) - theta(C, k2).
    ``weights``: the WLS weight of each configuration (runs / the variance of its stratum);
    ``stratum_sd``: per stratum, the residual standard deviation of a configuration mean
    that set its weight (one value for all with ``variance="pooled"``).
    """

    data: KData
    design: _Design
    beta: np.ndarray  # theta coefficients, in design.cells order
    cov: np.ndarray
    df_resid: float
    scale: float  # residual variance of the configuration means (per unit weight)
    f_stat: float
    f_p: float
    df_num: int
    weights: np.ndarray = field(default_factory=lambda: np.zeros(0), repr=False)
    variance: str = "pooled"
    stratum_sd: Mapping[str, float] = field(default_factory=dict)
    fitted: np.ndarray = field(default_factory=lambda: np.zeros(0), repr=False)  # per configuration, in data.configs order

    def _index(self) -> dict[tuple[float, float], int]:
        return {cell: j for j, cell in enumerate(self.design.cells)}

    def estimable(self, C: float, k: float) -> bool:
        """Was k seen at C, and can the design estimate its effect (not aliased)?"""
        return C in self.design.levels and k in self.design.levels[C] and (C, k) not in self.design.aliased

    def estimable_levels(self) -> dict[float, list[float]]:
        """Per C the k whose effect is estimable (the reference always is)."""
        return {C: [k for k in ks if self.estimable(C, k)] for C, ks in self.design.levels.items()}

    def best_k(self, C: float) -> float:
        """The estimated best k at C among the estimable ones (ties: the smaller k)."""
        th = self.theta(C)
        return max(self.estimable_levels()[C], key=lambda k: (th[k], -k))

    def theta_vector(self, C: float, k: float) -> np.ndarray | None:
        """L such that theta(C, k) = L @ beta; None when k was not seen at C or its effect is
        not estimable (aliased)."""
        if not self.estimable(C, k):
            return None
        L = np.zeros(len(self.beta))
        j = self._index().get((C, k))
        if j is not None:
            L[j] = 1.0
        return L

    def theta(self, C: float) -> dict[float, float]:
        """theta(C, k) for every k seen at C; NaN where it is not estimable."""
        return {k: float(L @ self.beta) if (L := self.theta_vector(C, k)) is not None else math.nan for k in self.design.levels[C]}

    def contrast(self, C: float, k1: float, k2: float) -> tuple[float, float]:
        """Estimate and standard error of theta(C, k1) - theta(C, k2); NaN when either is not estimable."""
        L1, L2 = self.theta_vector(C, k1), self.theta_vector(C, k2)
        if L1 is None or L2 is None:
            return math.nan, math.nan
        L = L1 - L2
        return float(L @ self.beta), float(math.sqrt(max(L @ self.cov @ L, 0.0)))


def sqrt_psd(cov: np.ndarray) -> np.ndarray:
    vals, vecs = np.linalg.eigh((cov + cov.T) / 2)
    return vecs * np.sqrt(np.clip(vals, 0, None))


def _wls(y: np.ndarray, X: np.ndarray, w: np.ndarray):
    import statsmodels.api as sm

    return sm.WLS(y, X, weights=w).fit()


def weighted_ssr(y: np.ndarray, X: np.ndarray, w: np.ndarray) -> tuple[float, int]:
    """Weighted residual sum of squares of y on X and the rank of X (QR; an SVD-based
    solver where X is rank-deficient): what a nested F-test needs, without a full fit."""
    sw = np.sqrt(w)
    yw = y * sw
    if X.shape[1] == 0:
        return float(yw @ yw), 0
    Xw = X * sw[:, None]
    Q, R = np.linalg.qr(Xw)
    diag = np.abs(np.diag(R))
    if diag.min(initial=np.inf) > 1e-10 * max(diag.max(initial=0.0), 1.0):
        r = yw - Q @ (Q.T @ yw)
        return float(r @ r), X.shape[1]
    coef, _, rank, _ = np.linalg.lstsq(Xw, yw, rcond=None)
    r = yw - Xw @ coef
    return float(r @ r), int(rank)


def f_test(y: np.ndarray, X0: np.ndarray, X1: np.ndarray, w: np.ndarray) -> tuple[float, float, int, float]:
    """F, p, df_num, df_den of the nested comparison X0 within X1 (weighted)."""
    from scipy import stats

    ssr1, r1 = weighted_ssr(y, X1, w)
    ssr0, r0 = weighted_ssr(y, X0, w)
    df_num = r1 - r0
    df_den = float(len(y) - r1)
    if df_num <= 0 or df_den <= 0:
        return math.nan, math.nan, df_num, df_den
    F = ((ssr0 - ssr1) / df_num) / (ssr1 / df_den) if ssr1 > 0 else math.inf
    return float(F), float(stats.f.sf(F, df_num, df_den)), df_num, df_den


def _stratum_weights(y: np.ndarray, X: np.ndarray, n: np.ndarray, strata: np.ndarray) -> tuple[np.ndarray, dict[str, float]]:
    """Weights n_i / v_s: ``v_s`` the residual variance per run of stratum s's configuration
    means in the fit of ``X`` (leverage-corrected: the sum of n r^2 over the stratum divided
    by the sum of 1 - h). Strata with fewer than :data:`MIN_STRATUM_DF` residual df share
    the pooled variance. Narrow networks are noisier than wide ones: one pooled variance
    misstates every interval that leans on one stratum more than another.

    :func:`fit_k_model` passes the nuisance columns only (strata, stage kinds), not the k
    effects: the variances then have about twice the degrees of freedom, cannot be fitted
    to the k effects they are used to test, and do not change when a permutation test
    shuffles the k vectors within strata, so that test stays exact. (Measured on 150
    nulls with noise 0.5/width: weights from the full model's residuals rejected 8.7 %
    at alpha 0.05, from the nuisance model's 2.0 %; tests/analysis/test_kmap_honesty.py.)"""
    sw = np.sqrt(n)
    Xw = X * sw[:, None]
    Q, _ = np.linalg.qr(Xw)
    h = np.sum(Q * Q, axis=1)
    coef, *_ = np.linalg.lstsq(Xw, y * sw, rcond=None)
    r2 = (y * sw - Xw @ coef) ** 2
    pooled = float(r2.sum() / max((1 - h).sum(), 1e-12))
    var = np.full(len(y), pooled)
    sd: dict[str, float] = {}
    for s in np.unique(strata):
        m = strata == s
        df = float((1 - h[m]).sum())
        v = float(r2[m].sum() / df) if df >= MIN_STRATUM_DF else pooled
        v = max(v, 1e-6 * max(pooled, 1e-12))
        var[m] = v
        sd[str(s)] = math.sqrt(v)
    return n / var, sd


def fit_k_model(data: KData, *, variance: str = "strata") -> KModel:
    """Fit the model to ``data``; ValueError when it has no k contrast or no residual df.

    ``variance``: "strata" (default) gives each width/backbone stratum its own variance of a
    configuration mean, estimated from the residuals (feasible GLS; see
    :func:`_stratum_weights`); "pooled" one variance for all, weights = runs.
    """
    if variance not in VARIANCES:
        raise ConfigError("variance", f"must be one of {', '.join(VARIANCES)}, got {variance!r}")
    d = design(data)
    cf = data.configs
    if d.Xk.shape[1] == 0:
        raise ValueError(f"k-vs-C: no C with two or more k values among the {data.n_configs} configurations: nothing to compare")
    X1 = np.column_stack([d.X0, d.Xk])
    p = X1.shape[1]
    if len(cf) <= p:
        raise ValueError(f"k-vs-C: the model has {p} parameters ({d.X0.shape[1]} for width/backbone strata and stage kinds, "
                         f"{d.Xk.shape[1]} k effects) but the study has only {len(cf)} configurations; run more trials "
                         f"(python -m study.run --space eca_kmap --design inference --plan estimates how many)")
    y, n = cf["y"].to_numpy(float), cf["n"].to_numpy(float)
    if variance == "strata":
        w, sd = _stratum_weights(y, d.X0, n, cf["stratum"].astype(str).to_numpy())
    else:
        w, sd = n, {}
    res = _wls(y, X1, w)
    F, pval, df_num, _ = f_test(y, d.X0, X1, w)
    k0 = d.X0.shape[1]
    cov = np.asarray(res.cov_params())[k0:, k0:]
    if variance == "pooled":
        sd = {str(s): math.sqrt(float(res.scale)) for s in cf["stratum"].unique()}
    return KModel(data=data, design=d, beta=np.asarray(res.params)[k0:], cov=cov, df_resid=float(res.df_resid),
                  scale=float(res.scale), f_stat=F, f_p=pval, df_num=df_num, weights=w, variance=variance, stratum_sd=sd,
                  fitted=np.asarray(res.fittedvalues, float))


def _ssr(y: np.ndarray, X: np.ndarray) -> float:
    coef, *_ = np.linalg.lstsq(X, y, rcond=None)
    r = y - X @ coef
    return float(r @ r)


def permutation_p(model: KModel, permutations: int, seed: int) -> float:
    """Shuffle the k-effect rows among configurations of one stratum and kind pattern (the
    weights stay with their configuration: a stratum's variance does not move)."""
    data, d = model.data, model.design
    cf = data.configs
    sw = np.sqrt(model.weights)
    y = cf["y"].to_numpy(float) * sw
    X0 = d.X0 * sw[:, None]
    blocks = cf["stratum"].astype(str) + "|" + cf[[f"kind{i}" for i in range(data.num_stages)]].astype(str).agg(",".join, axis=1)
    groups = [np.flatnonzero((blocks == b).to_numpy()) for b in blocks.unique()]
    rng = np.random.default_rng(seed)
    ssr0 = _ssr(y, X0) if X0.shape[1] else float(y @ y)

    def stat(Xk: np.ndarray) -> float:
        ssr1 = _ssr(y, np.column_stack([X0, Xk * sw[:, None]]))
        return (ssr0 - ssr1) / max(ssr1, 1e-300)

    observed = stat(d.Xk)
    hits = 0
    for _ in range(permutations):
        perm = np.arange(len(cf))
        for g in groups:
            perm[g] = rng.permutation(g)
        hits += bool(stat(d.Xk[perm]) >= observed * (1 - 1e-9) - 1e-12)
    return (1 + hits) / (1 + permutations)


def draw_t(cov: np.ndarray, df: float, draws: int, seed: int) -> np.ndarray:
    """``draws`` rows of beta-hat - beta under the model: multivariate t with ``cov`` and
    ``df`` residual degrees of freedom (a normal draw divided by one chi for all)."""
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((draws, cov.shape[0])) @ sqrt_psd(cov).T
    w = np.sqrt(rng.chisquare(max(df, 1.0), draws) / max(df, 1.0))
    return z / w[:, None]


class MaxT:
    """Critical values of max-t families of one fitted model, from one set of draws.

    ``critical(L)`` is the (1 - alpha) quantile of the maximum over the rows of ``L`` of
    |t| (or t, one-sided) under the model: with it, est +- c se covers every contrast
    L @ theta at once with probability 1 - alpha, so an interval stays valid for a contrast
    chosen after looking at the data among them (Hothorn, Bretz and Westfall, "Simultaneous
    inference in general parametric models", Biom. J. 2008: the single-step max-t method).
    The draws are made once (``DRAWS`` multivariate t rows) and shared by every family of
    the model, so the per-C and joint families and the mapping family of one analysis are
    computed from the same draws. Rows are taken ``chunk`` at a time, so thousands of
    contrasts (every psi curve on the grid) need no more memory than a few hundred."""

    def __init__(self, model: KModel, seed: int, draws: int = DRAWS):
        self.cov = model.cov
        self.draws = draw_t(model.cov, model.df_resid, draws, seed)

    def critical(self, L: np.ndarray, alpha: float, *, two_sided: bool = True, chunk: int = 256) -> float:
        """The critical value of the family ``L`` (NaN for an empty family or one of zero-variance contrasts)."""
        L = np.atleast_2d(np.asarray(L, float))
        if L.size == 0:
            return math.nan
        se = np.sqrt(np.clip(np.einsum("ij,jk,ik->i", L, self.cov, L), 0, None))
        L, se = L[se > 1e-12], se[se > 1e-12]
        if len(L) == 0:
            return math.nan
        best = np.full(len(self.draws), -np.inf)
        for i in range(0, len(L), chunk):
            t = self.draws @ (L[i:i + chunk] / se[i:i + chunk, None]).T
            best = np.maximum(best, (np.abs(t) if two_sided else t).max(axis=1))
        return float(np.quantile(best, 1 - alpha))


def simultaneous_critical(model: KModel, L: np.ndarray, alpha: float, seed: int, *, two_sided: bool = True) -> float:
    """The critical value of the max-t family ``L`` (:class:`MaxT`, its own draws)."""
    return MaxT(model, seed).critical(L, alpha, two_sided=two_sided)
