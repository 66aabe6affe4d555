"""The Ray Tune runner on a real two-node Ray cluster (the session's ``ray_cluster``):
Optuna's pruner stops Ray trials, failures are recorded, the record matches the local
runner's."""

from __future__ import annotations

from pathlib import Path

import optuna
from optuna.trial import TrialState

from runners import OptunaPrunerScheduler, OptunaSearcher, run_study
from study import record

optuna.logging.set_verbosity(optuna.logging.WARNING)

SPACE_WITH_A_FAILURE = '''
from search_spaces import make_config
from study.config import AttentionSpec, ProxySpec

def define(trial, *, backbone, width=None, proxy, **settings):
    k = trial.suggest_categorical("k", [0, 3, 5])
    if k == 0:  # train() raises in the Ray worker: the cache folder does not exist
        proxy = ProxySpec(source="cache", data="/nonexistent/cache", resolution=16, num_classes=10)
        k = 3
    return make_config([AttentionSpec.of("eca", k=k)] * 4, backbone=backbone, width=0.25, proxy=proxy, **settings)

define.references = lambda **s: [("broken", {"k": 0})]
'''


def _ran(bridge):
    return [t for t in sorted(bridge.study.get_trials(), key=lambda t: t.number) if t.state != TrialState.WAITING]


def test_ray_runner_prunes_with_the_optuna_pruner(ray_cluster, tiny_settings):
    import ray

    assert len([n for n in ray.nodes() if n["Alive"]]) == 2
    bridge = run_study(tiny_settings(name="ray-sha", runner="ray", trials=5, max_concurrent=2,
                                     pruner="sha", pruner_options={"min_resource": 1, "reduction_factor": 64}))
    trials = _ran(bridge)
    assert bridge.finished() == 5 and not any(t.state == TrialState.RUNNING for t in trials)
    pruned = [t for t in trials if t.state == TrialState.PRUNED]
    assert pruned, "an aggressive SHA pruner (keep 1 of 64) stopped no Ray trial"
    for t in pruned:
        assert len(t.intermediate_values) < 2 and t.user_attrs[record.OUTCOME] == "pruned"
    for t in trials:
        a = t.user_attrs
        assert a[record.COSTS]["params"] > 0 and len(a[record.STAGES]) == 4 and a[record.CONFIG]["arch"]["width"] == 0.25
        assert [h["epoch"] for h in a[record.HISTORY]] == sorted(t.intermediate_values)
        if t.state == TrialState.COMPLETE:
            assert sorted(t.intermediate_values) == [1, 2] and t.value == max(t.intermediate_values.values())
    assert (Path(bridge.settings.run_dir) / "ray" / "run-1").is_dir()  # Ray's own result folder


def test_ray_runner_without_pruner_and_with_a_failing_trial(ray_cluster, tiny_settings, tmp_path):
    f = tmp_path / "space.py"
    f.write_text(SPACE_WITH_A_FAILURE)
    bridge = run_study(tiny_settings(name="ray-none", space=f"{f}:define", runner="ray", trials=2, pruner="none"))
    trials = _ran(bridge)
    broken = trials[0]
    assert broken.user_attrs[record.REFERENCE] == "broken" and broken.state == TrialState.FAIL
    assert "/nonexistent/cache" in broken.user_attrs[record.ERROR] and broken.user_attrs[record.OUTCOME] == "failed"
    rest = trials[1:]
    assert [t.state for t in rest if t.params["k"] != 0] and all(
        t.state == TrialState.COMPLETE and sorted(t.intermediate_values) == [1, 2] for t in rest if t.params["k"] != 0
    )
    assert bridge.finished() == 2


class _TuneTrial:
    """What the scheduler reads of a Ray Tune trial."""

    def __init__(self, trial_id: str, error: Exception | None = None):
        self.trial_id, self.num_failures, self._error = trial_id, 2, error

    def get_error(self) -> Exception | None:
        return self._error


def _epoch(epoch: int, top1: float) -> dict:
    return {"epoch": epoch, "top1": top1, "top5": 100.0, "val_loss": 1.0, "train_loss": 1.0, "cost_params": 1000, "stages": "[]"}


def test_the_searcher_and_scheduler_decide_as_optuna_says(tiny_settings):
    """Driven as Ray Tune's controller calls them (no Ray processes needed): a dead worker is
    recorded FAIL with Ray's error and does not count, the scheduler STOPs a trial when the
    Optuna median pruner says prune, and the searcher says FINISHED at the budget."""
    from ray.tune.schedulers import TrialScheduler
    from ray.tune.search import Searcher

    from runners import StudyBridge
    from runners._study import open_study
    from search_spaces import get_space

    settings = tiny_settings(name="contract", runner="ray", trials=2, pruner="median", pruner_options={"startup": 1, "warmup": 0})
    space = get_space(settings.space)
    bridge = StudyBridge(open_study(settings, space, create=True), space, settings)
    trials, errors = {}, {}
    searcher = OptunaSearcher(bridge, trials, errors, {"threads": 1})
    scheduler = OptunaPrunerScheduler(bridge, trials, errors)

    first = searcher.suggest("a")
    assert first["number"] == 0 and first["config"]["arch"]["width"] == 0.25
    for epoch, top1 in ((1, 50.0), (2, 60.0)):
        assert scheduler.on_trial_result(None, _TuneTrial("a"), _epoch(epoch, top1)) == TrialScheduler.CONTINUE
    searcher.on_trial_complete("a", _epoch(2, 60.0))

    assert searcher.suggest("b")["number"] == 1  # its worker dies: Ray gives up and says why
    scheduler.on_trial_error(None, _TuneTrial("b", RuntimeError("the actor died unexpectedly")))
    searcher.on_trial_complete("b", None, error=True)

    assert searcher.suggest("c")["number"] == 2  # a failure does not count; below the median of epoch 1: pruned
    assert scheduler.on_trial_result(None, _TuneTrial("c"), _epoch(1, 10.0)) == TrialScheduler.STOP
    searcher.on_trial_complete("c", _epoch(1, 10.0))

    a, b, c = _ran(bridge)
    assert (a.state, a.value, a.intermediate_values) == (TrialState.COMPLETE, 60.0, {1: 50.0, 2: 60.0})
    assert b.state == TrialState.FAIL and b.user_attrs[record.ERROR] == "Ray trial failed after 2 attempt(s): the actor died unexpectedly"
    assert (c.state, c.intermediate_values, c.user_attrs[record.OUTCOME]) == (TrialState.PRUNED, {1: 10.0}, "pruned")
    assert bridge.finished() == 2 and searcher.suggest("e") == Searcher.FINISHED


def test_ray_runner_prunes_a_multi_objective_study_with_the_pareto_pruner(ray_cluster, tiny_settings):
    # Optuna refuses should_prune with several objectives: the scheduler's bridge asks the pruner itself
    bridge = run_study(tiny_settings(name="ray-pareto", runner="ray", trials=5, max_concurrent=1, space="se_ratio",
                                     objectives=("top1", "params"), sampler="random", pruner="pareto",
                                     pruner_options={"percentile": 99, "warmup": 1, "startup": 1}))
    trials = _ran(bridge)
    assert bridge.finished() == 5
    pruned = [t for t in trials if t.state == TrialState.PRUNED]
    assert pruned, "an aggressive pareto pruner stopped no Ray trial of a multi-objective study"
    for t in pruned:
        assert len(t.user_attrs[record.HISTORY]) < 2 and t.user_attrs[record.OUTCOME] == "pruned" and not t.intermediate_values
