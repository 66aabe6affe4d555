"""Study runners: local (Optuna in-process) and ray (Ray Tune), with the same study semantics.

    >>> from runners import StudySettings, run_study
    >>> bridge = run_study(StudySettings(space="eca_kmap", trials=4, runner="local"))   # runs/eca_kmap

A study's settings are declared once (:class:`StudySettings`: each field's default, help,
flag and part, the definition or one run) and what is not given comes from one order of
defaults (:mod:`runners._defaults`), the same as the command line's. :func:`run_study`
checks the run and creates nothing on bad input (:func:`check_run`), starts it
(:func:`start_run`: Ray, the run folder, the study, ``settings.json``; nothing half-made is
left) and runs it.

Optuna decides (sampler, pruner, storage - all in the driver, through
:class:`StudyBridge`); the runner executes: :func:`run_local` in-process, :func:`run_ray`
on Ray Tune through :class:`OptunaSearcher` and :class:`OptunaPrunerScheduler`. A trial is
``study.trainer.train(config, reporter)``; nothing else trains. Who watches a study (the
:class:`Progress` lines, the :class:`MlflowTracker` of ``run_study(..., mlflow=URI)``, the
:class:`ArtifactRecorder` that attaches a trial's files for optuna-dashboard) is a
:class:`StudyObserver` of the bridge.
"""

from runners._algorithms import PRUNER_OPTIONS, PRUNER_REGISTRY, PRUNERS, SAMPLER_OPTIONS, SAMPLER_REGISTRY, SAMPLERS
from runners._artifacts import ArtifactRecorder
from runners._bridge import LiveTrial, StudyBridge
from runners._defaults import DEFAULT_PROXY, DEFAULT_RECIPE, DESIGNS, RUNNERS, SEED_MODES, Design
from runners._local import BridgeReporter, run_local
from runners._observer import StudyObserver
from runners._optuna import check_storage_url, make_pruner, make_sampler, make_storage
from runners._outcome import RunOutcome, run_outcome
from runners._progress import Progress
from runners._run import NextRound, StudyRun, check_run, run_study, start_run
from runners._settings import RESUMABLE, Setting, StudySettings, setting_of
from runners._simulate import Planted, simulate_study
from runners._study import name_objectives, open_study, study_exists
from runners._tracking import MlflowTracker

__all__ = [
    "StudySettings",
    "Setting",
    "setting_of",
    "Design",
    "DESIGNS",
    "SEED_MODES",
    "DEFAULT_PROXY",
    "DEFAULT_RECIPE",
    "StudyRun",
    "check_run",
    "start_run",
    "run_study",
    "NextRound",
    "StudyBridge",
    "LiveTrial",
    "BridgeReporter",
    "Progress",
    "StudyObserver",
    "MlflowTracker",
    "ArtifactRecorder",
    "open_study",
    "name_objectives",
    "study_exists",
    "RunOutcome",
    "run_outcome",
    "run_local",
    "Planted",
    "simulate_study",
    "run_ray",
    "connect",
    "OptunaSearcher",
    "OptunaPrunerScheduler",
    "make_sampler",
    "make_pruner",
    "make_storage",
    "check_storage_url",
    "RUNNERS",
    "SAMPLERS",
    "SAMPLER_REGISTRY",
    "PRUNER_REGISTRY",
    "PRUNERS",
    "SAMPLER_OPTIONS",
    "PRUNER_OPTIONS",
    "RESUMABLE",
]

_RAY = ("run_ray", "connect", "OptunaSearcher", "OptunaPrunerScheduler")


def __getattr__(name: str):  # the Ray parts import Ray (seconds): only when asked for
    if name in _RAY:
        from runners import _ray_tune

        return getattr(_ray_tune, name)
    raise AttributeError(f"module 'runners' has no attribute {name!r}")
