"""The local runner and the bridge they share with the Ray runner: real Optuna studies
(SQLite files), real training of tiny models."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from runners import StudyBridge, StudySettings, open_study, run_study
from runners._bridge import INTERRUPTED
from search_spaces import get_space
from study import record
from study.config import Recipe, TrialConfig

optuna.logging.set_verbosity(optuna.logging.WARNING)

AGGRESSIVE = dict(pruner="sha", pruner_options={"min_resource": 1, "reduction_factor": 64})


def _trials(bridge):
    return sorted(bridge.study.get_trials(), key=lambda t: t.number)


def test_pruning_acts_and_no_pruner_prunes_nothing(tiny_settings, tmp_path):
    # the same study (seed, space, budget) with an aggressive pruner and without one
    pruned_run = run_study(tiny_settings(name="sha", trials=4, **AGGRESSIVE))
    plain_run = run_study(tiny_settings(name="none", trials=4, pruner="none"))
    epochs = 2
    pruned = [t for t in _trials(pruned_run) if t.state == TrialState.PRUNED]
    assert pruned, "an aggressive SHA pruner (keep 1 of 64) pruned nothing"
    for t in pruned:
        assert len(t.intermediate_values) < epochs and t.user_attrs[record.OUTCOME] == "pruned"
        assert len(t.user_attrs[record.HISTORY]) == len(t.intermediate_values)
    plain = _trials(plain_run)
    assert [t.state for t in plain] == [TrialState.COMPLETE] * 4
    for t in plain:
        assert sorted(t.intermediate_values) == [1, 2]
        assert t.value == max(t.intermediate_values.values())  # the objective: best top-1
        assert [h["top1"] for h in t.user_attrs[record.HISTORY]] == [t.intermediate_values[1], t.intermediate_values[2]]
    # same sampler seed, same first trials (the pruned run saw the same configurations)
    assert [t.params for t in _trials(pruned_run)][:3] == [t.params for t in plain][:3]


def test_every_trial_carries_its_record_and_artifacts(tiny_settings):
    settings = tiny_settings(trials=3)
    bridge = run_study(settings)
    trials = _trials(bridge)
    assert [t.user_attrs.get(record.REFERENCE) for t in trials] == ["paper_psi", "k3", "released"]
    for t in trials:
        a = t.user_attrs
        config = TrialConfig.from_dict(a[record.CONFIG])
        assert config.arch.width == 0.25 and config.recipe.epochs == 2 and config.proxy == settings.proxy
        assert len(a[record.STAGES]) == 4 and all(s["k"] % 2 for s in a[record.STAGES])
        assert {"params", "macs", "latency_ms"} <= set(a[record.COSTS]) and a[record.COSTS]["params"] > 0
        assert a[record.OUTCOME] == "complete" and a[record.ATTEMPT] == 1
        folder = Path(settings.run_dir) / "trials" / str(t.number)
        assert json.loads((folder / "config.json").read_text()) == a[record.CONFIG]
        assert json.loads((folder / "history.json").read_text()) == a[record.HISTORY]
    released = trials[2].user_attrs[record.STAGES]
    assert [s["k"] for s in released] == [3, 5, 7, 7]


SPACE_WITH_FAILURES = '''
from search_spaces import make_config
from study.config import AttentionSpec, ProxySpec
import dataclasses

def define(trial, *, backbone, width=None, proxy, recipe, **settings):
    mode = trial.suggest_categorical("mode", ["bad_data", "diverge", "ok"])
    if mode == "bad_data":   # train() raises: the cache folder does not exist
        proxy = ProxySpec(source="cache", data="/nonexistent/cache", resolution=16, num_classes=10)
    if mode == "diverge":    # a learning rate no network survives
        recipe = dataclasses.replace(recipe, lr=1e12, warmup_epochs=0)
    return make_config([AttentionSpec.of("eca", k=3)] * 4, backbone=backbone, width=0.25, proxy=proxy, recipe=recipe, **settings)

def references(**settings):
    return [("bad", {"mode": "bad_data"}), ("nan", {"mode": "diverge"}), ("good", {"mode": "ok"})]
define.references = references
'''


def test_failed_and_diverged_trials_are_recorded_and_the_study_goes_on(tiny_settings, tmp_path):
    f = tmp_path / "failing_space.py"
    f.write_text(SPACE_WITH_FAILURES)
    settings = tiny_settings(space=f"{f}:define", trials=1)
    bridge = run_study(settings)
    bad, nan, good = _trials(bridge)[:3]
    assert bad.state == TrialState.FAIL and bad.user_attrs[record.OUTCOME] == "failed"
    assert "/nonexistent/cache" in bad.user_attrs[record.ERROR]
    assert nan.state == TrialState.FAIL and nan.user_attrs[record.OUTCOME] == "diverged"
    assert nan.user_attrs[record.ERROR].startswith("diverged")
    assert good.state == TrialState.COMPLETE
    assert bridge.finished() == 1


def test_multi_objective_study_has_no_intermediate_values(tiny_settings):
    settings = tiny_settings(trials=2, objectives=("top1", "params"), sampler="nsga2",
                             recipe=Recipe(epochs=1, batch_size=32, warmup_epochs=0))
    bridge = run_study(settings)
    assert [d.name for d in bridge.study.directions] == ["MAXIMIZE", "MINIMIZE"]
    ran = [t for t in _trials(bridge) if t.state != TrialState.WAITING]  # a reference point is left
    assert len(ran) == 2
    for t in ran:
        assert t.state == TrialState.COMPLETE and t.intermediate_values == {}
        assert t.values[1] == t.user_attrs[record.COSTS]["params"]
        assert t.values[0] == t.user_attrs[record.HISTORY][-1]["top1"]


def test_interrupted_trials_are_failed_and_run_again_on_resume(tiny_settings):
    settings = tiny_settings(trials=2)
    space = get_space(settings.space)
    Path(settings.run_dir).mkdir(parents=True)
    study = open_study(settings, space, create=True)
    first = StudyBridge(study, space, settings)
    first.enqueue_references()
    done = first.ask()  # trial 0: finished before the "crash"
    first.report(done, {"epoch": 1, "top1": 20.0})
    first.finish(done)
    left = first.ask()  # trial 1: left RUNNING by a driver that died
    first.report(left, {"epoch": 1, "top1": 30.0})

    resumed = run_study(settings, resume=True)
    trials = _trials(resumed)
    assert trials[0].state == TrialState.COMPLETE and trials[0].value == 20.0
    assert trials[1].state == TrialState.FAIL and trials[1].user_attrs[record.ERROR] == INTERRUPTED
    rerun = [t for t in trials if t.user_attrs.get("resumed_from") == 1]
    assert len(rerun) == 1 and rerun[0].params == trials[1].params and rerun[0].user_attrs[record.ATTEMPT] == 2
    assert rerun[0].state == TrialState.COMPLETE and rerun[0].user_attrs[record.REFERENCE] == "k3"
    assert resumed.finished() == 2 == sum(t.state == TrialState.COMPLETE for t in trials)


def test_report_is_idempotent_per_epoch(tiny_settings):
    settings = tiny_settings(**AGGRESSIVE)
    space = get_space(settings.space)
    Path(settings.run_dir).mkdir(parents=True)
    bridge = StudyBridge(open_study(settings, space, create=True), space, settings)
    live = bridge.ask()
    for _ in range(3):  # a scheduler, a searcher and a retried worker all see epoch 1
        bridge.report(live, {"epoch": 1, "top1": 12.5, "top5": 50.0})
    bridge.report(live, {"epoch": 2, "top1": float("nan")})
    bridge.finish(live)
    t = bridge.study.trials[0]
    assert t.intermediate_values == {1: 12.5}  # NaN is kept out of the pruner's view
    assert [h["epoch"] for h in t.user_attrs[record.HISTORY]] == [1, 2]
    assert t.user_attrs[record.HISTORY][1]["top1"] is None
    assert t.state == TrialState.COMPLETE and t.value == 12.5


def test_settings_validate_eagerly_and_round_trip(tiny_settings):
    s = tiny_settings(pruner="median", pruner_options={"warmup": 2})
    assert StudySettings.from_dict(json.loads(json.dumps(s.to_dict()))) == s
    assert s.pruner_options == {"warmup": 2, "startup": 3}
    assert "pruner_options" in repr(s) and "max_concurrent" not in repr(s)
    for changes, match in [
        (dict(pruner="sha", pruner_options={"warmup": 1}), "does not take option 'warmup'"),
        (dict(pruner="sha", pruner_options={"reduction_factor": 1}), "reduction_factor: must be an integer >= 2"),
        (dict(objectives=("top1", "macs"), sampler="cmaes", pruner="none"), "optimises one objective"),
        (dict(objectives=("top1", "macs"), sampler="nsga2", pruner="median"), "prunes one objective"),
        (dict(objectives=("macs",)), "must start with top1"),
        (dict(runner="slurm"), "runner: must be one of ray, local"),
        (dict(trials=0), "trials: must be an integer >= 1"),
        (dict(gpus_per_trial=1.5), "whole number"),
        (dict(cpus_per_trial=0, gpus_per_trial=0), "needs some CPU or GPU"),
        (dict(timeout=-1), "timeout"),
    ]:
        with pytest.raises(ValueError, match=match):
            tiny_settings(**changes)
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.trials = 5  # frozen
    with pytest.raises(TypeError):
        StudySettings("x")  # keyword-only


def test_resume_samples_new_configurations(tiny_settings):
    # the resumed run's sampler must not replay the first run's random draws
    settings = tiny_settings(sampler="random", trials=4, recipe=Recipe(epochs=1, batch_size=32, warmup_epochs=0))
    run_study(settings)
    bridge = run_study(settings.replace(trials=6), resume=True)
    sampled = [t.params for t in bridge.study.get_trials() if t.user_attrs.get(record.REFERENCE) is None]
    assert len(sampled) == 3
    assert all(a != b for i, a in enumerate(sampled) for b in sampled[i + 1:]), sampled
