"""The model of the k-vs-C inference (documented in :mod:`analysis.kmap._effect`): the design
matrices, the weighted least-squares fit (statsmodels) and the nested F-tests."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np

from analysis.kmap._data import KData

__all__ = ["KModel", "fit_k_model", "design", "f_test", "independent_columns", "permutation_p", "sqrt_psd", "DRAWS"]

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


@dataclass(frozen=True)
class KModel:
    """The fitted model: theta per (C, k) with its covariance, and the F-test of "no k effect".

    ``theta(C)`` gives the effect of every k seen at C relative to the reference k (0 for
    it); ``contrast(C, k1, k2)`` the estimate and standard error of theta(C, k1) - theta(C, k2).
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


def f_test(y: np.ndarray, X0: np.ndarray, X1: np.ndarray, w: np.ndarray) -> tuple[float, float, int, float]:
    """F, p, df_num, df_den of the nested comparison X0 within X1 (weighted)."""
    r1 = _wls(y, X1, w)
    r0 = _wls(y, X0, w) if X0.shape[1] else None
    ssr0 = float(r0.ssr) if r0 is not None else float(np.sum(w * y * y))
    df_num = int(round(X1.shape[1] - X0.shape[1]))
    df_den = float(r1.df_resid)
    if df_num <= 0 or df_den <= 0:
        return math.nan, math.nan, df_num, df_den
    F = ((ssr0 - r1.ssr) / df_num) / (r1.ssr / df_den) if r1.ssr > 0 else math.inf
    from scipy import stats

    return float(F), float(stats.f.sf(F, df_num, df_den)), df_num, df_den


def fit_k_model(data: KData) -> KModel:
    """Fit the model to ``data``; ValueError when it has no k contrast or no residual df."""
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
    y, w = cf["y"].to_numpy(float), cf["n"].to_numpy(float)
    res = _wls(y, X1, w)
    F, pval, df_num, _ = f_test(y, d.X0, X1, w)
    k0 = d.X0.shape[1]
    cov = np.asarray(res.cov_params())[k0:, k0:]
    return KModel(data=data, design=d, beta=np.asarray(res.params)[k0:], cov=cov, df_resid=float(res.df_resid),
                  scale=float(res.scale), f_stat=F, f_p=pval, df_num=df_num)


def permutation_p(model: KModel, permutations: int, seed: int) -> float:
    """Shuffle the k-effect rows among configurations of one stratum and kind pattern."""
    data, d = model.data, model.design
    cf = data.configs
    y, w = cf["y"].to_numpy(float), cf["n"].to_numpy(float)
    blocks = cf["stratum"].astype(str) + "|" + cf[[f"kind{i}" for i in range(data.num_stages)]].astype(str).agg(",".join, axis=1)
    groups = [np.flatnonzero((blocks == b).to_numpy()) for b in blocks.unique()]
    rng = np.random.default_rng(seed)
    hits = 0
    for _ in range(permutations):
        perm = np.arange(len(cf))
        for g in groups:
            perm[g] = rng.permutation(g)
        F, _, _, _ = f_test(y, d.X0, np.column_stack([d.X0, d.Xk[perm]]), w)
        hits += bool(F >= model.f_stat - 1e-12)
    return (1 + hits) / (1 + permutations)
