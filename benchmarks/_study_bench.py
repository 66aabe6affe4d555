"""Shared by the study benchmarks: a study of fixed settings in a temporary folder."""

from __future__ import annotations

import dataclasses
import tempfile
import time
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState

from runners import DEFAULT_PROXY, DEFAULT_RECIPE, Progress, StudySettings, run_study
from study.config import Recipe
from study.proxies import proxy_preset

optuna.logging.set_verbosity(optuna.logging.WARNING)


def proxy(name: str, **changes: Any):
    """``default`` (the study.run default proxy) or a preset name, with ``changes`` (e.g. resolution=16)."""
    if name == "default":
        return dataclasses.replace(DEFAULT_PROXY, **changes)
    return proxy_preset(name, **changes)


def run(label: str, *, trials: int, epochs: int, proxy_name: str, width: float | None, verbose: bool = False,
        proxy_changes: dict[str, Any] | None = None, **changes: Any):
    """Run one study; returns (wall seconds, frozen trials that ran)."""
    folder = Path(tempfile.mkdtemp(prefix=f"bench-{label}-"))
    settings = StudySettings(
        name=label,
        space=changes.pop("space", "eca_kmap"),
        storage=f"sqlite:///{folder / 'study.db'}",
        run_dir=str(folder),
        trials=trials,
        width=width,
        proxy=proxy(proxy_name, **(proxy_changes or {})),
        recipe=Recipe(**{**DEFAULT_RECIPE, "epochs": epochs, "warmup_epochs": min(DEFAULT_RECIPE["warmup_epochs"], epochs)}),
        **changes,
    )
    t0 = time.perf_counter()
    bridge = run_study(settings, progress=Progress(quiet=not verbose))
    wall = time.perf_counter() - t0
    ran = [t for t in bridge.study.get_trials() if t.state != TrialState.WAITING]
    return wall, ran


def trial_seconds(trials) -> list[float]:
    return [(t.datetime_complete - t.datetime_start).total_seconds() for t in trials if t.datetime_complete]


def curves(trials) -> dict[int, dict[str, Any]]:
    """What a replay needs of a study's trials: number -> params, costs and top-1 per epoch."""
    return {t.number: {"params": dict(t.params), "costs": dict(t.user_attrs.get("costs") or {}),
                       "top1": [m["top1"] for m in t.user_attrs.get("history") or []]} for t in trials}


def replay(label: str, recorded: dict[int, dict[str, Any]], *, trials: int, epochs: int, proxy_name: str, width: float | None,
           proxy_changes: dict[str, Any] | None = None, in_memory: bool = True, **changes: Any):
    """Run one study on the local runner - the real bridge, sampler, pruner and storage - whose
    trainer replays the top-1 per epoch that ``recorded`` (:func:`curves` of an unpruned study
    of the same settings) reached instead of training. With the random sampler and per-trial
    seeds the replayed study asks for the same configurations in the same order, and CPU
    training of one configuration from one seed repeats itself, so this is the study the
    pruner would have run (each trial's parameters are checked against the recording). The
    study lives in Optuna's in-memory storage (``in_memory``; False: a SQLite file as
    :func:`run`'s), 5-10x less CPU per replay and the same trials.
    Returns (wall seconds, frozen trials that ran)."""
    from types import SimpleNamespace

    from runners import StudyBridge, make_pruner, make_sampler, name_objectives, open_study, run_local
    from search_spaces import get_space
    from study import record
    from study.metrics import EpochMetrics

    def train(config: Any, reporter: Any, **_: Any) -> Any:
        live = reporter.live
        rec = recorded[live.number]
        if rec["params"] != dict(live.trial.params):
            raise RuntimeError(f"replay: trial {live.number} asked for {live.trial.params}, the recording ran {rec['params']}")
        reporter.start(rec["costs"], [])
        for e, top1 in enumerate(rec["top1"], start=1):
            m = EpochMetrics(epoch=e, top1=float(top1), top5=float(top1), val_loss=0.0, train_loss=0.0, lr=0.0,
                             epoch_time_s=0.0, wall_time_s=0.0, images_per_s=0.0)
            if reporter.report(m):
                break
        return SimpleNamespace(outcome="complete", message=None)

    folder = Path(tempfile.mkdtemp(prefix=f"bench-{label}-"))
    settings = StudySettings(
        name=label, space=changes.pop("space", "eca_kmap"), storage=f"sqlite:///{folder / 'study.db'}", run_dir=str(folder),
        trials=trials, width=width, proxy=proxy(proxy_name, **(proxy_changes or {})),
        recipe=Recipe(**{**DEFAULT_RECIPE, "epochs": epochs, "warmup_epochs": min(DEFAULT_RECIPE["warmup_epochs"], epochs)}),
        **{"runner": "local", **changes},
    )
    space = get_space(settings.space)
    t0 = time.perf_counter()
    if in_memory:  # open_study's study on Optuna's in-memory storage: the same sampler, pruner and attributes
        study = optuna.create_study(sampler=make_sampler(settings, space.grid_space(settings.space_context())),
                                    pruner=make_pruner(settings), directions=settings.directions, study_name=settings.name)
        name_objectives(study, settings.objectives)
        study.set_user_attr(record.STUDY_SETTINGS, settings.to_dict())
        study.set_user_attr(record.STUDY_SPACE, space.info.name)
    else:
        study = open_study(settings, space, create=True)
    bridge = StudyBridge(study, space, settings)
    bridge.enqueue_references()
    run_local(bridge, train=train, load_proxy=lambda spec: None)
    wall = time.perf_counter() - t0
    return wall, [t for t in bridge.study.get_trials() if t.state != TrialState.WAITING]
