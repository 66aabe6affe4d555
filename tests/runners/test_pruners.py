"""runners._pruners: the ParetoPruner's rule on real in-memory Optuna studies (one objective
and several), its settings and flags, and a real multi-objective study it prunes."""

from __future__ import annotations

import optuna
import pytest
from optuna.trial import TrialState, create_trial

from runners import run_study
from runners._optuna import make_pruner
from runners._pruners import ParetoPruner, curve
from study import record

optuna.logging.set_verbosity(optuna.logging.WARNING)


def _finished(study, curve_, macs, *, params=1000, state=TrialState.COMPLETE, history=False):
    """Add a finished trial with top-1 ``curve_`` (epochs 1, 2, ...) and costs."""
    steps = {e: v for e, v in enumerate(curve_, start=1)}
    attrs = {record.COSTS: {"macs": macs, "params": params}}
    if history or len(study.directions) > 1:  # a multi-objective study keeps them only in the history
        attrs[record.HISTORY] = [{"epoch": e, "top1": v} for e, v in steps.items()]
        steps = {}
    values = None
    if state == TrialState.COMPLETE:
        values = [max(curve_)] + ([macs] if len(study.directions) > 1 else []) + ([params] if len(study.directions) > 2 else [])
    study.add_trial(create_trial(state=state, values=values, intermediate_values=steps, user_attrs=attrs,
                                 params={}, distributions={}))


def _running(study, curve_, macs, *, params=1000):
    """A RUNNING trial that has reached epoch len(curve_); returns it as stored."""
    trial = study.ask()
    trial.set_user_attr(record.COSTS, {"macs": macs, "params": params})
    if len(study.directions) > 1:
        trial.set_user_attr(record.HISTORY, [{"epoch": e, "top1": v} for e, v in enumerate(curve_, start=1)])
    else:
        for e, v in enumerate(curve_, start=1):
            trial.report(v, step=e)
    return study.trials[trial.number]


@pytest.fixture
def single():
    return optuna.create_study(direction="maximize")


@pytest.fixture
def multi():
    return optuna.create_study(directions=["maximize", "minimize"])


PRUNER = dict(percentile=50, warmup=2, startup=3, costs=("macs",))


@pytest.mark.parametrize("kind", ["single", "multi"])
def test_prunes_a_trial_that_cheaper_trials_beat_at_its_epoch(kind, request):
    study = request.getfixturevalue(kind)
    for top1 in (50.0, 60.0, 70.0):  # three cheaper references: 50, 60, 70 at epoch 2 (median 60)
        _finished(study, [30.0, top1, top1 + 5], macs=100)
    pruner = ParetoPruner(**PRUNER)
    assert pruner.prune(study, _running(study, [20.0, 55.0], macs=200))  # 55 < 60
    assert not pruner.prune(study, _running(study, [20.0, 65.0], macs=200))  # 65 >= 60
    # the best top-1 so far counts, as in Optuna's percentile pruner
    assert not pruner.prune(study, _running(study, [62.0, 55.0], macs=200))


@pytest.mark.parametrize("kind", ["single", "multi"])
def test_keeps_a_cheaper_trial_whatever_its_top1(kind, request):
    study = request.getfixturevalue(kind)
    for top1 in (50.0, 60.0, 70.0):
        _finished(study, [30.0, top1, top1 + 5], macs=100)
    pruner = ParetoPruner(**PRUNER)
    # cheaper than every finished trial: no reference, not dominated; kept however low
    assert not pruner.prune(study, _running(study, [10.0, 11.0], macs=50))
    # equal cost counts as "no more": the references are the three
    assert pruner.prune(study, _running(study, [10.0, 11.0], macs=100))


def test_respects_startup_and_warmup(single):
    for top1 in (50.0, 60.0):
        _finished(single, [40.0, top1, top1], macs=100)
    _finished(single, [90.0, 90.0, 90.0], macs=300)  # finished, but costs more: no reference
    pruner = ParetoPruner(**PRUNER)
    assert not pruner.prune(single, _running(single, [10.0, 11.0], macs=200))  # 2 references < startup 3
    assert ParetoPruner(**{**PRUNER, "startup": 2}).prune(single, _running(single, [10.0, 11.0], macs=200))
    # epoch 1 < warmup 2: kept though every reference beat it
    assert not ParetoPruner(**{**PRUNER, "startup": 2}).prune(single, _running(single, [10.0], macs=200))
    assert ParetoPruner(**{**PRUNER, "startup": 2, "warmup": 1}).prune(single, _running(single, [10.0], macs=200))


def test_pruned_trials_are_references_at_the_epochs_they_reached_running_ones_are_not(single):
    _finished(single, [50.0], macs=100, state=TrialState.PRUNED)
    _finished(single, [60.0, 61.0], macs=100, state=TrialState.PRUNED)
    _running(single, [70.0, 70.0], macs=100)  # in flight: not a reference
    pruner = ParetoPruner(percentile=50, warmup=1, startup=2, costs=("macs",))
    assert pruner.references(single, _running(single, [1.0], macs=100), 1) == [50.0, 60.0]
    assert pruner.references(single, _running(single, [1.0, 1.0], macs=100), 2) == [61.0]


def test_several_costs_compare_in_every_one():
    study = optuna.create_study(directions=["maximize", "minimize", "minimize"])
    for top1 in (50.0, 60.0, 70.0):
        _finished(study, [30.0, top1], macs=100, params=5000)  # fewer MACs, more parameters
    both = ParetoPruner(**{**PRUNER, "costs": ("macs", "params")})
    trial = _running(study, [20.0, 21.0], macs=200, params=1000)
    assert not both.prune(study, trial)  # cheaper in params: no reference
    assert ParetoPruner(**PRUNER).prune(study, trial)  # in MACs alone they cost less


def test_no_costs_is_a_percentile_pruner_and_missing_costs_keep_the_trial(single):
    for top1 in (50.0, 60.0, 70.0):
        _finished(single, [30.0, top1], macs=10**9)
    assert ParetoPruner(percentile=50, warmup=1, startup=3).prune(single, _running(single, [1.0, 2.0], macs=1))
    trial = single.ask()
    trial.report(1.0, step=1)
    trial.report(2.0, step=2)
    assert not ParetoPruner(**PRUNER).prune(single, single.trials[trial.number])  # no costs recorded


def test_curve_reads_intermediate_values_or_the_history(single, multi):
    _finished(single, [10.0, 20.0], macs=1)
    _finished(multi, [10.0, float("nan"), 30.0], macs=1)
    assert curve(single.trials[0]) == {1: 10.0, 2: 20.0}
    assert curve(multi.trials[0]) == {1: 10.0, 3: 30.0}


@pytest.mark.parametrize("kwargs, match", [
    (dict(percentile=0), "percentile"), (dict(percentile=100), "percentile"), (dict(warmup=-1), "warmup"),
    (dict(startup=1.5), "startup"), (dict(costs=("",)), "costs"),
])
def test_bad_options(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ParetoPruner(**kwargs)


def test_settings_default_pareto_for_several_objectives_and_validate(tiny_settings):
    s = tiny_settings(pruner="pareto", objectives=("top1", "macs"), sampler="nsga2")
    assert s.pruner_options == {"percentile": 75, "warmup": 1, "startup": 1}  # the multi-objective defaults
    assert tiny_settings(pruner="pareto").pruner_options == {"percentile": 50, "warmup": 1, "startup": 1}
    assert tiny_settings(pruner="pareto", objectives=("top1", "macs"), pruner_options={"percentile": 60}).pruner_options["percentile"] == 60
    pruner = make_pruner(s)
    assert isinstance(pruner, ParetoPruner) and pruner.costs == ("macs",)
    assert make_pruner(tiny_settings(pruner="pareto")).costs == ()
    for changes, match in [
        (dict(pruner="pareto", pruner_options={"percentile": 100}), r"pruner_options.percentile: must be an integer in \[1, 99\]"),
        (dict(pruner="pareto", pruner_options={"min_resource": 1}), "does not take option 'min_resource'"),
        (dict(pruner="median", objectives=("top1", "macs"), sampler="nsga2"), "prunes one objective"),
    ]:
        with pytest.raises(ValueError, match=match):
            tiny_settings(**changes)


def test_a_real_multi_objective_study_is_pruned_on_the_local_runner(tiny_settings):
    # widths 0.25 / 0.5 / 1 (16 px proxy): the params differ 16-fold; prune a trial below the
    # 99th percentile of the cheaper trials at epoch 1 after one of them
    s = tiny_settings(trials=6, width=None, objectives=("top1", "params"), sampler="random", pruner="pareto",
                      pruner_options={"percentile": 99, "warmup": 1, "startup": 1})
    bridge = run_study(s)
    trials = [t for t in bridge.study.get_trials() if t.state != TrialState.WAITING]
    pruned = [t for t in trials if t.state == TrialState.PRUNED]
    assert pruned, "a multi-objective study under an aggressive pareto pruner pruned nothing"
    for t in pruned:  # the rule held: a finished cheaper-or-equal trial had been better at that epoch
        epochs = t.user_attrs[record.HISTORY]
        assert len(epochs) < s.recipe.epochs and t.user_attrs[record.OUTCOME] == "pruned" and not t.intermediate_values
        step, top1 = epochs[-1]["epoch"], max(m["top1"] for m in epochs)
        own = t.user_attrs[record.COSTS]["params"]
        assert any(curve(r).get(step, -1) > top1 and r.user_attrs[record.COSTS]["params"] <= own
                   for r in trials if r.number < t.number and r.state in (TrialState.COMPLETE, TrialState.PRUNED))
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    assert complete and all(len(t.values) == 2 for t in complete)
