"""runners._optuna_compat: the private Optuna API the runners rely on, pinned against the
installed Optuna (a new Optuna that changes it fails here, not in a user's resumed study)."""

from __future__ import annotations

import optuna
import pytest
from optuna.trial import TrialState

from runners import _optuna_compat as compat

optuna.logging.set_verbosity(optuna.logging.WARNING)


@pytest.fixture
def study(tmp_path):
    return optuna.create_study(storage=f"sqlite:///{tmp_path / 'c.db'}", study_name="c")


def test_supported_optuna_version():
    major = int(optuna.__version__.split(".")[0])
    assert 4 <= major <= 5, f"pyproject.toml supports Optuna 4 and 5; {optuna.__version__} is installed"


def test_a_user_attribute_on_a_trial_that_no_live_trial_holds(study):
    study.ask()  # a RUNNING trial, as a driver that died leaves it
    (frozen,) = study.get_trials(states=(TrialState.RUNNING,))
    compat.set_trial_user_attr(study, frozen, "outcome", "failed")
    assert study.trials[0].user_attrs == {"outcome": "failed"}


def test_enqueued_parameters_are_read_and_the_queue_is_reordered(study):
    study.enqueue_trial({"x": 1}, user_attrs={"tag": "first"})
    study.enqueue_trial({"x": 2}, user_attrs={"tag": "second"})
    first, second = study.get_trials(states=(TrialState.WAITING,))
    assert compat.enqueued_params(first) == {"x": 1} and compat.enqueued_params(second) == {"x": 2}
    compat.rewrite_waiting(study, first, {"x": 2}, {"tag": "second"})
    compat.rewrite_waiting(study, second, {"x": 1}, {"tag": "first"})
    a, b = study.ask(), study.ask()  # the oldest waiting slot is popped first
    assert (a.suggest_int("x", 0, 5), a.user_attrs["tag"]) == (2, "second")
    assert (b.suggest_int("x", 0, 5), b.user_attrs["tag"]) == (1, "first")
    study.ask()
    (running,) = [t for t in study.get_trials() if t.number == 2]
    assert compat.enqueued_params(running) == {}  # sampled, not enqueued
    with pytest.raises(ValueError, match="only a waiting trial"):
        compat.rewrite_waiting(study, running, {"x": 0}, {})


def test_the_latest_trial_of_a_live_trial_carries_its_attributes():
    study = optuna.create_study(directions=["maximize", "minimize"])  # should_prune refuses this study
    trial = study.ask()
    trial.set_user_attr("history", [{"epoch": 1, "top1": 40.0}])
    frozen = compat.latest_trial(trial)
    assert frozen.number == trial.number and frozen.state == TrialState.RUNNING
    assert frozen.user_attrs["history"] == [{"epoch": 1, "top1": 40.0}]
