"""The Ray Tune runner: Optuna decides, Ray executes.

Sampling and pruning stay Optuna's and run in the driver, through Ray Tune's public
interfaces (Ray's stock ``OptunaSearch`` replaces every pruner with ``NopPruner``; we don't):

- :class:`OptunaSearcher` (a ``ray.tune.search.Searcher``): ``suggest`` asks the study for a
  trial, runs the space and hands the TrialConfig dict to the Ray trial;
  ``on_trial_complete`` tells the study COMPLETE, PRUNED or FAIL (with the error text).
- :class:`OptunaPrunerScheduler` (a FIFO ``ray.tune.schedulers.TrialScheduler``): on every
  result reports the epoch's top-1 as the Optuna intermediate value and asks the Optuna
  pruner; STOP when it says prune.

Ray 2.x's ``TuneController._process_trial_result`` calls ``scheduler.on_trial_result`` first
and ``searcher.on_trial_result`` only when the decision is not STOP, so the scheduler does the
reporting and the searcher's call is a no-op repeat (reporting is idempotent per epoch in
:class:`~runners._bridge.StudyBridge`). Only the driver touches the Optuna storage: the Ray
trainable (:func:`trainable`) calls ``study.trainer.train`` and ``ray.tune.report`` with
flat metrics (the epoch's :class:`~study.metrics.EpochMetrics` and ``cost_*`` keys). A trial
whose ``train`` raises or diverges reports that (``error`` / ``diverged``) and returns, so it
is recorded FAIL and not retried; a worker that dies is retried by Ray up to
``FailureConfig(max_failures)``. Before the first trial, every node that can run one must
read the proxy cache at its path, or gets a copy with ``stage_data``
(:func:`prepare_study_data`).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import ray
from ray import tune
from ray.tune.schedulers import FIFOScheduler, TrialScheduler
from ray.tune.search import Searcher

from runners._bridge import COST_PREFIX, LiveTrial, StudyBridge
from study.cluster import init_ray, prepare_cache
from study.config import TrialConfig
from study.metrics import Reporter
from study.record import error_text
from study.runfolder import next_run_name
from study.turnstile import node_turnstile

__all__ = ["run_ray", "connect", "prepare_study_data", "trainable", "OptunaSearcher", "OptunaPrunerScheduler"]

log = logging.getLogger(__name__)


# ------------------------------------------------------------------------- the worker side


def trainable(spec: Mapping[str, Any]) -> None:
    """One Ray trial: ``study.trainer.train(config, reporter)``, each epoch ``tune.report``-ed.
    Its start-up (imports, the proxy's data) holds the node's turnstile like its training
    steps (:mod:`study.turnstile`), so another trial's latency probe waits for it."""
    with node_turnstile().computing():
        import torch

        from study.trainer import train

    torch.set_num_threads(int(spec["threads"]))
    state: dict[str, Any] = {"costs": {}, "stages": "[]", "epoch": 0}

    class _RayReporter(Reporter):
        def start(self, costs: Any, stages: Any) -> None:
            d = costs.to_dict() if hasattr(costs, "to_dict") else dict(costs or {})
            state["costs"] = {f"{COST_PREFIX}{k}": v for k, v in d.items()}
            state["stages"] = json.dumps([dict(s) for s in stages])

        def report(self, metrics: Any) -> bool:
            state["epoch"] = metrics.epoch
            tune.report({**metrics.to_dict(), **state["costs"], "stages": state["stages"]})
            return False  # a pruned trial is stopped by the scheduler

    try:
        with node_turnstile().computing():
            config = TrialConfig.from_dict(spec["config"])
            data = _trial_data(config, spec.get("data"))
        result = train(config, _RayReporter(), device=spec.get("device"), data=data)
    except Exception as exc:  # recorded FAIL by the driver; not a worker failure to retry
        tune.report({"epoch": state["epoch"], "error": error_text(exc), **state["costs"], "stages": state["stages"]})
        return
    if result.outcome == "diverged":
        text = f"diverged: {result.message}" if result.message else "diverged: the loss became NaN or inf"
        tune.report({"epoch": state["epoch"], "diverged": text, **state["costs"], "stages": state["stages"]})


def _trial_data(config: Any, where: Mapping[str, Any] | None) -> Any:
    """The proxy of a trial on this node: the study's cache as checked from the driver (an
    absolute path) or this node's staged copy, loaded; None for any other proxy (``train``
    loads it)."""
    if not where or config.proxy.source != "cache" or config.proxy.data != where["data"]:
        return None

    from study.data import load_proxy

    local = where["staged"].get(ray.get_runtime_context().get_node_id(), where["path"])
    return load_proxy(dataclasses.replace(config.proxy, data=local))


# ------------------------------------------------------------------------- the driver side


def _consume(bridge: StudyBridge, live: LiveTrial, result: Mapping[str, Any]) -> bool:
    """Hand one flat Ray result to the bridge; True when the trial should stop (pruned)."""
    costs = {k[len(COST_PREFIX):]: v for k, v in result.items() if k.startswith(COST_PREFIX)}
    if costs and live.costs is None:
        stages = result.get("stages")
        bridge.start(live, costs, json.loads(stages) if isinstance(stages, str) else None)
    if result.get("error"):
        live.error = live.error or str(result["error"])
        return False
    if result.get("diverged"):
        live.diverged = live.diverged or str(result["diverged"])
        return False
    if "top1" in result and "epoch" in result:
        return bridge.report(live, result)
    return False


class _DriverOnly:
    """Pickled (Ray writes the Tuner with its searcher and scheduler into ``ray/*/tuner.pkl``)
    without the bridge: the study, its storage and the URL with any password in it stay in
    the driver's memory. The Optuna storage is the record; a Ray experiment is never restored."""

    _DRIVER_ONLY = ("bridge", "trials", "errors")

    def __getstate__(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k not in self._DRIVER_ONLY}


class OptunaSearcher(_DriverOnly, Searcher):
    """Ray Tune searcher whose trials come from an Optuna study, through the bridge."""

    def __init__(self, bridge: StudyBridge, trials: dict[str, LiveTrial], errors: dict[str, str], spec: Mapping[str, Any]):
        super().__init__(metric=None, mode=None)
        self.bridge = bridge
        self.trials = trials  # Ray trial id -> the Optuna trial it runs (shared with the scheduler)
        self.errors = errors  # Ray trial id -> error text (written by the scheduler)
        self.spec = dict(spec)

    def set_search_properties(self, metric: Any, mode: Any, config: Any, **spec: Any) -> bool:
        return True

    # the Optuna storage is the record; Ray's experiment checkpoint needs no searcher state
    def save(self, checkpoint_path: str) -> None:
        pass

    def restore(self, checkpoint_path: str) -> None:
        pass

    def suggest(self, trial_id: str) -> dict[str, Any] | str | None:
        while True:
            if self.bridge.done() is not None:
                return Searcher.FINISHED
            if not self.bridge.needs_more():
                return None  # wait: trials in flight may still fail
            live = self.bridge.ask()
            if live is not None:
                break
        self.trials[trial_id] = live
        return {**self.spec, "number": live.number, "config": live.config.to_dict()}

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        live = self.trials.get(trial_id)
        if live is not None:
            _consume(self.bridge, live, result)

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        live = self.trials.pop(trial_id, None)
        if live is None:
            return
        if result:
            _consume(self.bridge, live, result)
        if error:
            text = self.errors.pop(trial_id, None) or "the Ray trial failed (worker died?)"
            self.bridge.finish(live, error=text)
        else:
            self.bridge.finish(live)


class OptunaPrunerScheduler(_DriverOnly, FIFOScheduler):
    """FIFO scheduling that stops a trial when the Optuna pruner says prune."""

    def __init__(self, bridge: StudyBridge, trials: dict[str, LiveTrial], errors: dict[str, str]):
        super().__init__()
        self.bridge = bridge
        self.trials = trials
        self.errors = errors

    def on_trial_result(self, tune_controller: Any, trial: Any, result: dict) -> str:
        live = self.trials.get(trial.trial_id)
        if live is not None and _consume(self.bridge, live, result):
            return TrialScheduler.STOP
        return TrialScheduler.CONTINUE

    def on_trial_error(self, tune_controller: Any, trial: Any) -> None:
        try:
            err = trial.get_error()
        except Exception:  # the error file may be unreadable; keep what Ray says
            err = None
        text = str(err).strip() if err else f"Ray trial {trial.trial_id} failed"
        self.errors[trial.trial_id] = f"Ray trial failed after {trial.num_failures} attempt(s): {text[-4000:]}"


def _trial_name(trial: Any) -> str:
    return f"trial_{trial.config.get('number', trial.trial_id)}"


def connect(settings: Any, *, verbose: bool = False) -> bool:
    """Connect to ``settings.address`` or start a local Ray for the run (nothing when this
    process is connected already; :func:`study.cluster.init_ray`: Ray's token authentication
    handled, its start-up lines shown only when ``verbose``), and check that the cluster can
    hold one trial. Returns True when this call started or connected Ray (the caller shuts
    it down)."""
    started = init_ray(settings.address, verbose=verbose)
    resources = ray.cluster_resources()
    for key, need in (("CPU", settings.cpus_per_trial), ("GPU", settings.gpus_per_trial)):
        have = resources.get(key, 0.0)
        if need > have:
            if started:
                ray.shutdown()
            raise ValueError(f"{key.lower()}s_per_trial: a trial needs {need:g} {key} but the Ray cluster has {have:g}")
    return started


def prepare_study_data(settings: Any, log: Any = None) -> dict[str, Any] | None:
    """Before the first trial: every node that can run a trial (``cpus_per_trial``,
    ``gpus_per_trial``) must read the study's proxy cache at its path (ValueError naming a
    node that cannot), or with ``stage_data`` gets a copy on its local disk. Returns what the
    trainable needs to find the data (None for a generated proxy)."""
    proxy = settings.proxy
    if proxy.source != "cache" or not proxy.data:
        return None
    path = str(Path(proxy.data).resolve())
    staged = prepare_cache(path, cpus=settings.cpus_per_trial, gpus=settings.gpus_per_trial, stage=settings.stage_data, log=log)
    return {"data": proxy.data, "path": path, "staged": staged or {}}


def run_ray(bridge: StudyBridge) -> None:
    """Run the study on Ray Tune (a local Ray started for the run, or ``settings.address``)."""
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "60")

    s = bridge.settings
    started = connect(s)
    try:
        data = prepare_study_data(s, log=lambda line: bridge.progress.line(line, bridge))
        trials: dict[str, LiveTrial] = {}
        errors: dict[str, str] = {}
        spec = {"threads": s.threads, "device": s.device, "data": data}
        searcher = OptunaSearcher(bridge, trials, errors, spec)
        scheduler = OptunaPrunerScheduler(bridge, trials, errors)
        ray_dir = Path(s.run_dir).resolve() / "ray"
        resources_per_trial = {"cpu": s.cpus_per_trial, "gpu": s.gpus_per_trial}
        tuner = tune.Tuner(
            tune.with_resources(trainable, resources_per_trial),
            tune_config=tune.TuneConfig(
                search_alg=searcher,
                scheduler=scheduler,
                num_samples=-1,
                max_concurrent_trials=s.concurrency,
                reuse_actors=True,
                trial_name_creator=_trial_name,
                trial_dirname_creator=_trial_name,
            ),
            run_config=tune.RunConfig(
                name=next_run_name(ray_dir),
                storage_path=str(ray_dir),
                failure_config=tune.FailureConfig(max_failures=s.max_failures),
                verbose=0,
            ),
        )
        try:
            tuner.fit()
        except KeyboardInterrupt:
            bridge.interrupt()
            raise
        # trials Ray stopped without completing them (Ctrl-C handled inside Tune): enqueue
        # them again rather than leave them RUNNING
        left = bridge.interrupt()
        if left:
            bridge.progress.line(f"trials {', '.join(map(str, left))} did not finish; recorded failed (interrupted) and enqueued again",
                                 bridge)
    finally:
        if started:
            ray.shutdown()
