"""Pruners of our own, behind Optuna's ``BasePruner`` interface.

:class:`ParetoPruner` prunes single- and multi-objective studies alike: Optuna's pruners
(and ``Trial.report`` / ``Trial.should_prune``) refuse a study with several objectives,
but a trial's costs (params, MACs, latency) are measured before its first epoch, so at
every epoch it can be compared with what the trials that cost no more than it reached at
that epoch.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import optuna
from optuna.trial import FrozenTrial, TrialState

from study import record
from study.record import is_finite
from study.validate import ConfigError, check_int

__all__ = ["ParetoPruner", "curve"]

#: trials whose values at a step are references for the others
_REFERENCE_STATES = (TrialState.COMPLETE, TrialState.PRUNED)


def curve(trial: FrozenTrial) -> dict[int, float]:
    """The trial's validation top-1 per step (epoch): its Optuna intermediate values, or -
    in a multi-objective study, where Optuna keeps none - the ``top1`` of its recorded
    per-epoch ``history`` user attribute (the same numbers; non-finite ones left out)."""
    if trial.intermediate_values:
        values = trial.intermediate_values
    else:
        values = {int(m["epoch"]): m.get("top1") for m in trial.user_attrs.get(record.HISTORY) or () if "epoch" in m}
    return {int(s): float(v) for s, v in values.items() if is_finite(v)}


class ParetoPruner(optuna.pruners.BasePruner):
    """Prune a trial that the trials costing no more than it beat at the same epoch.

    The rule, for a trial ``x`` at step (epoch) ``t`` with costs ``c(x)`` (the user attribute
    ``costs``, written before its first epoch; ``costs`` names the keys compared, e.g.
    ``("macs",)``) and best top-1 so far ``b = max(v_x(s), s <= t)``:

    - ``t < warmup``: keep it;
    - the references ``R`` are the finished trials (complete or pruned) that reported a
      top-1 ``v_r(t)`` at step ``t`` and cost no more than ``x`` in every key of ``costs``
      (``c_i(r) <= c_i(x)``; with no ``costs``, every such trial);
    - fewer than ``startup`` references: keep it;
    - prune it when ``b`` is below the ``percentile``-th percentile (linear interpolation,
      as numpy's) of ``{v_r(t) : r in R}``.

    So with ``percentile`` 50 a trial goes when more than half of the trials that cost no
    more than it had reached a higher top-1 at that epoch: it is dominated in (top-1, cost)
    at its step by at least half of its cheaper-or-equal peers, and its point would most
    likely be dominated on the final front too. A trial that is not worse than the
    references is never pruned, and the cheapest trials (no references) never are. With no
    ``costs`` (one objective) the rule is Optuna's ``PercentilePruner`` comparing the best
    value so far at step ``t``, except that pruned trials count as references at the steps
    they reached (as in successive halving), so the startup phase ends sooner.

    A trial that recorded no finite value for one of ``costs`` has no references (it is
    kept), and it is no reference for others. Values are top-1 (maximised); the study's
    directions are not consulted, so the pruner works alike for one objective and for
    several. In a multi-objective study, where Optuna refuses ``Trial.report`` and
    ``Trial.should_prune``, the runners' bridge calls :meth:`prune` itself after writing the
    epoch's ``history``.

    The constructor's defaults are the study's (its registry entry,
    :data:`runners._algorithms.PRUNER_REGISTRY` "pareto", reads them from here): percentile
    50, warmup 1, startup 1; a study of several objectives defaults to percentile 75: a trial
    reaches the front only by beating every cheaper trial, so the bar against the cheaper
    ones is higher.
    """

    def __init__(self, *, percentile: float = 50.0, warmup: int = 1, startup: int = 1, costs: Sequence[str] = ()) -> None:
        if isinstance(percentile, bool) or not isinstance(percentile, (int, float)) or not 0.0 < percentile < 100.0:
            raise ConfigError("percentile", f"must be a number in (0, 100), got {percentile!r}")
        check_int(warmup, "warmup", 0)
        check_int(startup, "startup", 0)
        costs = tuple(costs)
        if not all(isinstance(c, str) and c for c in costs):
            raise ConfigError("costs", f"expected cost names, got {costs!r}")
        self.percentile = float(percentile)
        self.warmup = warmup
        self.startup = startup
        self.costs = costs

    def __repr__(self) -> str:
        return f"ParetoPruner(percentile={self.percentile:g}, warmup={self.warmup}, startup={self.startup}, costs={self.costs!r})"

    def _cost(self, trial: FrozenTrial) -> tuple[float, ...] | None:
        measured: Mapping[str, Any] = trial.user_attrs.get(record.COSTS) or {}
        out = []
        for key in self.costs:
            v = measured.get(key)
            if not is_finite(v):
                return None
            out.append(float(v))
        return tuple(out)

    def references(self, study: optuna.Study, trial: FrozenTrial, step: int) -> list[float]:
        """The top-1 at ``step`` of the finished trials that cost no more than ``trial``."""
        own = self._cost(trial)
        if own is None:
            return []
        out = []
        for other in study.get_trials(deepcopy=False, states=_REFERENCE_STATES):
            if other.number == trial.number:
                continue
            v = curve(other).get(step)
            if v is None:
                continue
            c = self._cost(other)
            if c is not None and all(a <= b for a, b in zip(c, own)):
                out.append(v)
        return out

    def prune(self, study: optuna.Study, trial: FrozenTrial) -> bool:
        values = curve(trial)
        if not values:
            return False
        step = max(values)
        if step < self.warmup:
            return False
        refs = self.references(study, trial, step)
        if len(refs) < max(1, self.startup):
            return False
        best = max(values.values())  # the best top-1 so far: the curve ends at ``step``
        return best < float(np.percentile(refs, self.percentile))
