"""Shared by the study benchmarks: a study of fixed settings in a temporary folder."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState

from runners import Progress, StudySettings, run_study
from study.config import Recipe
from study.data import proxy_preset
from runners.cli import DEFAULT_PROXY, DEFAULT_RECIPE

optuna.logging.set_verbosity(optuna.logging.WARNING)


def proxy(name: str):
    """``default`` (the study.run default proxy) or a preset name."""
    if name == "default":
        preset, fields = DEFAULT_PROXY
        return proxy_preset(preset, **fields)
    return proxy_preset(name)


def run(label: str, *, trials: int, epochs: int, proxy_name: str, width: float | None, verbose: bool = False, **changes: Any):
    """Run one study; returns (wall seconds, frozen trials that ran)."""
    folder = Path(tempfile.mkdtemp(prefix=f"bench-{label}-"))
    settings = StudySettings(
        name=label,
        space=changes.pop("space", "eca_kmap"),
        storage=f"sqlite:///{folder / 'study.db'}",
        run_dir=str(folder),
        trials=trials,
        width=width,
        proxy=proxy(proxy_name),
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
