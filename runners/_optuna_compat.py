"""Every use of Optuna's private API, in one place.

The runners use Optuna's public API everywhere else. Two jobs have no public form:

- writing a user attribute on a trial this process did not ask for (a trial that a driver
  which died left RUNNING, found again on ``--resume``): Optuna's public ``Trial`` is made
  by ``study.ask()`` only, so the write goes through the study's storage with the trial's id;
- asking a pruner about a live trial of a multi-objective study: ``Trial.should_prune``
  refuses several objectives, and the pruner needs the trial as it stands, which only the
  live ``Trial`` holds without a storage query (its cached frozen trial, kept current by
  ``set_user_attr`` and ``report``: what ``should_prune`` itself passes to the pruner);
- reordering the queue of enqueued (WAITING) trials: ``study.ask()`` pops the oldest one
  and the public API cannot remove or reorder them, so a re-run that must go first is
  written into the oldest waiting slot (its ``fixed_params`` system attribute, which is where
  ``enqueue_trial`` keeps the parameters).

``tests/runners/test_optuna_compat.py`` pins this behaviour against the installed Optuna, and
``pyproject.toml`` bounds the supported major versions (4 and 5).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import optuna

__all__ = ["set_trial_user_attr", "latest_trial", "enqueued_params", "rewrite_waiting"]

#: the system attribute in which ``Study.enqueue_trial`` stores a waiting trial's parameters
_FIXED_PARAMS = "fixed_params"


def set_trial_user_attr(study: optuna.Study, trial: optuna.trial.FrozenTrial, key: str, value: Any) -> None:
    """Set a user attribute of ``trial`` (a RUNNING trial of ``study`` that no live
    ``optuna.Trial`` of this process holds)."""
    study._storage.set_trial_user_attr(trial._trial_id, key, value)


def latest_trial(trial: optuna.Trial) -> optuna.trial.FrozenTrial:
    """The live ``trial`` as a frozen trial, with the attributes it has set so far (what
    ``Trial.should_prune`` hands the pruner), without asking the storage."""
    return trial._get_latest_trial()


def enqueued_params(trial: optuna.trial.FrozenTrial) -> dict[str, Any]:
    """The parameters ``enqueue_trial`` fixed for ``trial`` (empty when it was not enqueued)."""
    return dict(trial.system_attrs.get(_FIXED_PARAMS, {}))


def rewrite_waiting(study: optuna.Study, trial: optuna.trial.FrozenTrial, params: Mapping[str, Any],
                    user_attrs: Mapping[str, Any]) -> None:
    """Make the WAITING ``trial`` run ``params`` with ``user_attrs`` when it is asked."""
    if trial.state != optuna.trial.TrialState.WAITING:
        raise ValueError(f"trial {trial.number}: only a waiting trial can be rewritten, this one is {trial.state.name}")
    storage = study._storage
    storage.set_trial_system_attr(trial._trial_id, _FIXED_PARAMS, dict(params))
    for key, value in user_attrs.items():
        storage.set_trial_user_attr(trial._trial_id, key, value)
