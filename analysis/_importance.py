"""Parameter importance (Optuna's importance evaluators) and learning-curve data."""

from __future__ import annotations

from typing import Any

import optuna
import pandas as pd

from analysis._load import coerce_frames

__all__ = ["EVALUATORS", "param_importances", "learning_curves"]

#: evaluator name -> Optuna class name in ``optuna.importance`` (``None``: Optuna's default)
EVALUATORS = {
    "default": None,
    "fanova": "FanovaImportanceEvaluator",
    "ped_anova": "PedAnovaImportanceEvaluator",
    "mdi": "MeanDecreaseImpurityImportanceEvaluator",
}


def param_importances(frames: Any, *, evaluator: Any = "default",
                      min_trials: int = 5, objective: str = "top1", seed: int = 0) -> pd.DataFrame:
    """Importance of each sampled parameter for ``objective`` (default top-1), via
    :func:`optuna.importance.get_param_importances` on the study's complete trials.

    Returns a frame (``param``, ``importance``), most important first. Raises ``ValueError``
    with the reason when the study has fewer than ``min_trials`` complete trials, samples
    no parameters, or Optuna cannot evaluate it.
    """
    fr = coerce_frames(frames)
    if fr.study is None:
        raise ValueError("importance: these frames carry no Optuna study (load them with analysis.load)")
    if min_trials < 2:
        raise ValueError(f"min_trials: must be >= 2, got {min_trials!r}")
    complete = fr.study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    with_params = [t for t in complete if t.params]
    if len(with_params) < min_trials:
        raise ValueError(f"importance: needs at least {min_trials} complete trials with sampled parameters; "
                         f"the study has {len(with_params)}")
    if isinstance(evaluator, str):
        if evaluator not in EVALUATORS:
            raise ValueError(f"evaluator: must be one of {', '.join(EVALUATORS)}, got {evaluator!r}")
        from optuna import importance as _importance

        cls = None if EVALUATORS[evaluator] is None else getattr(_importance, EVALUATORS[evaluator])
        ev = None if cls is None else (cls() if evaluator == "ped_anova" else cls(seed=seed))
    else:
        ev = evaluator
    target = None
    if len(fr.directions) > 1:
        if objective not in fr.objectives:
            raise ValueError(f"objective: must be one of {', '.join(fr.objectives)}, got {objective!r}")
        i = fr.objectives.index(objective)
        # Optuna's default evaluator (PED-ANOVA) takes lower target values as better: negate a
        # maximized objective (variance-based evaluators are unaffected by the sign)
        sign = -1.0 if fr.directions[i] == "maximize" else 1.0
        target = lambda t: sign * t.values[i]  # noqa: E731
    from optuna import importance as _importance

    import warnings

    try:
        with warnings.catch_warnings():
            # its advice (negate a maximized target) is followed above
            warnings.filterwarnings("ignore", message="PedAnovaImportanceEvaluator computes the importances")
            imp = _importance.get_param_importances(fr.study, evaluator=ev, target=target)
    except (ValueError, RuntimeError) as exc:
        raise ValueError(f"importance: Optuna could not evaluate the study: {' '.join(str(exc).split())}") from None
    if not imp:
        raise ValueError("importance: no parameter varies across the complete trials")
    return pd.DataFrame({"param": list(imp), "importance": list(imp.values())})


def learning_curves(frames: Any) -> pd.DataFrame:
    """Per-epoch top-1 of every trial (long frame: ``trial``, ``epoch``, ``top1``, ``state``,
    ``attention``), pruned trials included and marked by their state."""
    fr = coerce_frames(frames)
    ep = fr.epochs
    if ep.empty:
        return ep.assign(attention=pd.Series(dtype=object))
    lab = fr.trials.set_index("number")["attention"]
    return ep.assign(attention=ep["trial"].map(lab))
