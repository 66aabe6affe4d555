"""Parameter importance (Optuna's importance evaluators) and learning-curve data."""

from __future__ import annotations

import math
import warnings
from typing import TYPE_CHECKING, Any

import numpy as np
import optuna
import pandas as pd
from optuna import importance as _importance

from analysis._load import FrameSource, StudyFrames, coerce_frames
from study.validate import ConfigError

if TYPE_CHECKING:
    from optuna.importance import BaseImportanceEvaluator

__all__ = ["EVALUATORS", "param_importances", "learning_curves"]

#: evaluator name -> Optuna class name in ``optuna.importance`` (``None``: Optuna's default)
EVALUATORS = {
    "default": None,
    "fanova": "FanovaImportanceEvaluator",
    "ped_anova": "PedAnovaImportanceEvaluator",
    "mdi": "MeanDecreaseImpurityImportanceEvaluator",
}


def _response(fr: StudyFrames, objective: str, epoch: int | None) -> tuple[dict[int, float], str]:
    """trial number -> the response every included trial reached, and its description."""
    t = fr.trials
    t = t[t["state"].isin(["complete", "pruned"])]
    if objective != "top1":
        col = {"params": "params", "macs": "macs", "latency": "latency_ms"}[objective]
        v = t.set_index("number")[col].dropna()
        return {int(k): float(x) for k, x in v.items()}, f"{objective} (measured before training: every finished trial has it)"
    ep = fr.epochs
    ep = ep[ep["trial"].isin(t["number"]) & ep["top1"].notna()]
    if ep.empty:
        return {}, "validation top-1"
    reached = ep.groupby("trial")["epoch"].max()
    at = int(reached.min()) if epoch is None else epoch
    v = ep[ep["epoch"] == at].drop_duplicates("trial", keep="last").set_index("trial")["top1"]
    return {int(k): float(x) for k, x in v.items()}, f"validation top-1 at epoch {at} (reached by every included trial, pruned ones too)"


def _anova_p(values: list[Any], y: np.ndarray) -> float:
    """One-way ANOVA of ``y`` across the levels of ``values`` (numbers with many distinct
    values binned into quartiles); NaN when there is one level."""
    from scipy import stats

    x = pd.Series(values)
    if pd.api.types.is_numeric_dtype(x) and x.nunique() > 6:
        x = pd.qcut(x.astype(float), 4, duplicates="drop")
    groups = [y[(x == lev).to_numpy()] for lev in x.dropna().unique()]
    groups = [g for g in groups if len(g)]
    if len(groups) < 2 or sum(len(g) for g in groups) <= len(groups):
        return math.nan
    return float(stats.f_oneway(*groups).pvalue)


def param_importances(frames: FrameSource, *, evaluator: str | BaseImportanceEvaluator | None = "default", min_trials: int = 20,
                      objective: str = "top1", epoch: int | None = None, alpha: float = 0.05, seed: int = 0) -> pd.DataFrame:
    """Importance of each sampled parameter for ``objective``, branch by branch of the
    conditional space, each with a test against "no effect".

    The response is the one every included trial reached (top-1 at the last epoch all
    finished trials ran, pruned ones included; a cost as measured): ranking only the
    complete trials would rank the survivors of pruning. Trials are grouped by the set of
    parameters they sampled (a *branch*: in ``eca_kmap`` the fixed-k trials with ``k_s*``,
    the psi trials with ``gamma``/``b``), because Optuna's evaluators drop every parameter
    that some trial lacks; the row ``branch="all"`` ranks the parameters every trial has.
    A branch is ranked only with at least ``min_trials`` trials, and every parameter carries
    a one-way ANOVA p-value and ``significant`` (Bonferroni over the branch's parameters at
    ``alpha``): an importance whose parameter is not distinguishable from noise ranks noise.

    Returns a frame (``branch``, ``n``, ``param``, ``importance`` - normalized per branch -,
    ``p_value``, ``significant``). Raises ``ValueError`` when no branch reaches
    ``min_trials`` or Optuna cannot evaluate the study.
    """
    fr = coerce_frames(frames)
    if fr.study is None:
        raise ConfigError("importance", "these frames carry no Optuna study (load them with analysis.load)")
    if isinstance(min_trials, bool) or not isinstance(min_trials, int) or min_trials < 3:
        raise ConfigError("min_trials", f"must be an integer >= 3, got {min_trials!r}")
    if objective not in fr.objectives:
        raise ConfigError("objective", f"must be one of {', '.join(fr.objectives)}, got {objective!r}")
    ev = _evaluator(evaluator, seed)
    values, what = _response(fr, objective, epoch)
    trials = [t for t in fr.study.get_trials(deepcopy=False) if t.number in values and t.params]
    branches: dict[tuple[str, ...], list[optuna.trial.FrozenTrial]] = {}
    for t in trials:
        branches.setdefault(tuple(sorted(t.params)), []).append(t)
    common = tuple(sorted(set.intersection(*(set(k) for k in branches)))) if branches else ()
    plan: list[tuple[str, tuple[str, ...], list[optuna.trial.FrozenTrial]]] = []
    if len(branches) > 1 and common:
        plan.append(("all", common, trials))
    for names, members in sorted(branches.items(), key=lambda kv: -len(kv[1])):
        extra = [n for n in names if n not in common]
        label = "all" if len(branches) == 1 else ("{" + ", ".join(extra) + "}" if extra else "(no other parameters)")
        plan.append((label, names, members))
    largest = max((len(m) for _, _, m in plan), default=0)
    if largest < min_trials:
        raise ConfigError("importance", f"needs at least {min_trials} finished trials sharing their sampled parameters (one branch "
                         f"of the conditional space); the largest branch has {largest}")
    direction = fr.directions[fr.objectives.index(objective)]
    rows = []
    for label, names, members in plan:
        if len(members) < min_trials:
            rows.append({"branch": label, "n": len(members), "param": ",".join(p for p in names if p not in common) or "-",
                         "importance": math.nan, "p_value": math.nan, "significant": False,
                         "note": f"not ranked: {len(members)} trials < {min_trials}"})
            continue
        imp = _branch_importance(members, names, values, direction, ev)
        y = np.array([values[t.number] for t in members])
        ps = {p: _anova_p([t.params[p] for t in members], y) for p in names}
        m = sum(np.isfinite(v) for v in ps.values()) or 1
        for p, v in sorted(imp.items(), key=lambda kv: -kv[1]):
            rows.append({"branch": label, "n": len(members), "param": p, "importance": v, "p_value": ps[p],
                         "significant": bool(np.isfinite(ps[p]) and ps[p] < alpha / m), "note": ""})
    out = pd.DataFrame(rows)
    out.attrs["response"] = what
    return out


def _evaluator(evaluator: str | BaseImportanceEvaluator | None, seed: int) -> BaseImportanceEvaluator | None:
    if not isinstance(evaluator, str):
        return evaluator
    if evaluator not in EVALUATORS:
        raise ConfigError("evaluator", f"must be one of {', '.join(EVALUATORS)}, got {evaluator!r}")

    cls = None if EVALUATORS[evaluator] is None else getattr(_importance, EVALUATORS[evaluator])
    return None if cls is None else (cls() if evaluator == "ped_anova" else cls(seed=seed))


def _branch_importance(members: list[optuna.trial.FrozenTrial], names: tuple[str, ...], values: dict[int, float], direction: str,
                       ev: BaseImportanceEvaluator | None) -> dict[str, float]:
    """Optuna's importance of ``names`` on an in-memory study of ``members`` whose value is
    the response (a maximized response is negated for evaluators that take lower as better)."""
    study = optuna.create_study(direction="minimize")
    sign = -1.0 if direction == "maximize" else 1.0
    for t in members:
        study.add_trial(optuna.trial.create_trial(
            state=optuna.trial.TrialState.COMPLETE, value=sign * values[t.number],
            params={p: t.params[p] for p in names}, distributions={p: t.distributions[p] for p in names}))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            imp = _importance.get_param_importances(study, evaluator=ev, params=list(names))
    except (ValueError, RuntimeError) as exc:
        raise ConfigError("importance", f"Optuna could not evaluate the study: {' '.join(str(exc).split())}") from None
    return {p: float(imp.get(p, 0.0)) for p in names}


def learning_curves(frames: FrameSource) -> pd.DataFrame:
    """Per-epoch top-1 of every trial (long frame: ``trial``, ``epoch``, ``top1``, ``state``,
    ``attention``), pruned trials included and marked by their state."""
    fr = coerce_frames(frames)
    ep = fr.epochs
    if ep.empty:
        return ep.assign(attention=pd.Series(dtype=object))
    lab = fr.trials.set_index("number")["attention"]
    return ep.assign(attention=ep["trial"].map(lab))
