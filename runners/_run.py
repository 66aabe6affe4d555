"""Creating or resuming one run of a study: what the study CLI and a Python caller share.

:func:`check_run` checks everything bad input could spoil, creating nothing: the run folder
can be made where it goes, the storage's URL, journal or SQLite folder can be written, a
new study's name is free (in the folder and the storage) and a resumed one exists, the space
runs on an in-memory study with the study's settings (its grid, its reference points, a
random trial), an MLflow URI answers. :func:`start_run` then connects to Ray (a cluster that
cannot hold a trial, or a node that cannot read the data, creates nothing), makes the run
folder and creates or opens the study in the storage (a failure removes the folder it made:
nothing half-made is left), and writes ``settings.json`` atomically. :func:`run_study` does
both when its caller has not, and runs the study.

Errors about the user's input are :class:`~study.validate.ConfigError` naming the setting
(``name``, ``run_dir``, ``storage``, ``space``, ``mlflow``, ...) or, from Ray, a ValueError
saying what the cluster lacks; a command line says them as its flags.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState

from runners._artifacts import ArtifactRecorder
from runners._bridge import StudyBridge
from runners._local import run_local
from runners._observer import StudyObserver
from runners._optuna import make_sampler
from runners._progress import Progress
from runners._settings import StudySettings
from runners._study import open_study, study_exists
from runners._tracking import MlflowTracker
from search_spaces import Space, get_space
from study import record
from study.io import write_json
from study.storage import StorageURL, check_journal_writable
from study.tracking import check_system_metrics, check_tracking_uri
from study.validate import ConfigError

__all__ = ["StudyRun", "NextRound", "check_run", "start_run", "run_study", "dry_run"]

#: ``next_round(study)``: the next round's trials as (params, user attributes) pairs, or why the study stops
NextRound = Callable[[optuna.Study], "Sequence[tuple[Mapping[str, Any], Mapping[str, Any]]] | str"]


@dataclass
class StudyRun:
    """One run of a study, checked (:func:`check_run`): its settings and space, whether it
    creates the study (else it resumes it), the MLflow URI it logs to; once started
    (:func:`start_run`), the opened study and whether the start connected Ray."""

    settings: StudySettings
    space: Space
    create: bool
    mlflow: str | None = None
    mlflow_system_metrics: bool = False
    study: optuna.Study | None = None
    ray_started: bool = False


def check_run(settings: StudySettings, *, resume: bool = False, space: Space | None = None, mlflow: str | None = None,
              mlflow_system_metrics: bool = False) -> StudyRun:
    """Check the run (see the module doc); creates nothing. A cache the local runner reads
    is checked whole here (:func:`study.data.check_cache`; the Ray runner checks it on every
    node that runs trials)."""
    space = space or get_space(settings.space)
    _check_folder(Path(settings.run_dir))
    _check_storage(settings.storage)
    if resume:
        if not study_exists(settings.storage, settings.name):
            raise ConfigError("name", f"no study named {settings.name!r} in the storage to resume")
    else:
        _check_new(settings)
        dry_run(space, settings)
    if settings.runner == "local" and settings.proxy.source == "cache":  # a damaged cache trains nothing, a resumed study's neither
        from study.data import check_cache  # torch: only for a cache

        check_cache(settings.proxy.data)
    if mlflow_system_metrics and mlflow is None:
        raise ConfigError("mlflow_system_metrics", "logs to the study's MLflow run; give an MLflow URI too")
    if mlflow is not None:
        try:
            check_tracking_uri(mlflow)
        except ValueError as exc:
            raise ConfigError("mlflow", str(exc).removeprefix("mlflow: ")) from None
        if mlflow_system_metrics:
            check_system_metrics(name="mlflow_system_metrics")
    return StudyRun(settings, space, not resume, mlflow, mlflow_system_metrics)


def start_run(run: StudyRun, *, log: Callable[[str], Any] = print, verbose: bool = False) -> optuna.Study:
    """Start the checked ``run`` (see the module doc); returns the opened study. ``verbose``:
    Ray's own start-up lines and warnings are shown (else only its errors)."""
    settings = run.settings
    if settings.runner == "ray":
        from runners._ray_tune import connect, prepare_study_data  # Ray: only for a run on Ray

        run.ray_started = connect(settings, verbose=verbose)
        prepare_study_data(settings, log=log)
    run_dir = Path(settings.run_dir)
    made_dir = not run_dir.exists()
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError("run_dir", f"cannot create {run_dir} ({exc.strerror or exc})") from None
    try:
        run.study = open_study(settings, run.space, create=run.create)
        # atomically: a driver killed while writing must not leave a settings.json --resume cannot read
        write_json(run_dir / "settings.json", settings.to_dict())
    except BaseException:
        if made_dir and run.create:  # nothing half-made
            shutil.rmtree(run_dir, ignore_errors=True)
        raise
    return run.study


def _writable(folder: Path, what: str) -> None:
    """The nearest existing ancestor of ``folder`` must be a writable folder."""
    p = folder
    while not p.exists() and p.parent != p:
        p = p.parent
    if not p.is_dir():
        raise ConfigError(what, f"{p} is not a folder")
    if not os.access(p, os.W_OK | os.X_OK):
        raise ConfigError(what, f"cannot write to {p}")


def _check_folder(run_dir: Path) -> None:
    """The run folder can be made (or is there): its parent's nearest ancestor is writable."""
    if run_dir.exists() and not run_dir.is_dir():
        raise ConfigError("run_dir", f"{run_dir} is not a folder")
    _writable(run_dir.parent, "run_dir")


def _check_storage(url: str) -> None:
    """A journal the driver can write; a SQLite file whose folder can be made."""
    check_journal_writable(url)
    parsed = StorageURL.parse(url)
    if parsed.driver == "sqlite" and parsed.database and parsed.database != ":memory:":
        _writable(Path(parsed.database).parent, "storage")


def _check_new(settings: StudySettings) -> None:
    """A new study's name is free: no study in its folder, none of that name in the storage."""
    run_dir = Path(settings.run_dir)
    if run_dir.is_dir() and any(run_dir.iterdir()):
        raise ConfigError("name", f"a study {settings.name!r} already exists in {run_dir}; pass {{resume}} to continue it, "
                          "or choose another {name}", refs=["resume", "name"])
    if study_exists(settings.storage, settings.name):
        raise ConfigError("name", f"a study named {settings.name!r} already exists in the storage; pass {{resume}} to continue it, "
                          "or choose another {name}", refs=["resume", "name"])


def dry_run(space: Space, settings: StudySettings) -> None:
    """Run the space (and its reference points) on an in-memory study: an invalid backbone,
    width, stem, proxy or option fails here, before anything is created. The space's own
    errors name the setting (a ConfigError) or, said on one line, the space."""
    ctx = settings.space_context()
    make_sampler(settings, space.grid_space(ctx))  # e.g. the grid sampler without a grid
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # a study in memory, not one to announce
    try:
        study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=settings.seed))
    finally:
        optuna.logging.set_verbosity(verbosity)
    references = space.reference_points(ctx)
    for _, params in references:
        study.enqueue_trial(params)
    for _ in range(len(references) + 1):
        trial = study.ask()
        try:
            space.suggest(trial, ctx)
        except ConfigError:  # e.g. "kinds: ..." is the space's option
            raise
        except (ValueError, TypeError, KeyError) as exc:
            raise ConfigError("space", " ".join(str(exc).split()), about=settings.space) from None
        except Exception as exc:  # a user's space with a bug: one line, not a traceback
            raise ConfigError("space", f"{type(exc).__name__}: {exc}", about=settings.space) from None
        study.tell(trial, 0.0)


def run_study(
    settings: StudySettings,
    *,
    space: Space | None = None,
    resume: bool = False,
    progress: Progress | None = None,
    mlflow: str | None = None,
    observers: Sequence[StudyObserver] = (),
    run: StudyRun | None = None,
    artifacts: bool = True,
    next_round: NextRound | None = None,
    train: Callable[..., Any] | None = None,
    load_proxy: Callable[..., Any] | None = None,
) -> StudyBridge:
    """Create (or, with ``resume``, continue) the study and run it until it has
    ``settings.trials`` finished trials (or the timeout). Returns the bridge (its study,
    counts and best trial).

    Before anything trains the run is checked and started (:func:`runners.check_run`,
    :func:`runners.start_run`: bad input creates nothing; the run folder, the study and
    ``settings.json`` are made, or nothing is), unless the caller did that and passes the
    started ``run``. ``mlflow``: a tracking URI this run logs the study to, as a view of the
    storage (:class:`~runners._tracking.MlflowTracker`); an option of this run, not of the
    study (``run.mlflow_system_metrics``: the driver node's system metrics too).
    ``observers`` receive the study's events besides the progress
    (:class:`~runners._observer.StudyObserver`). ``artifacts``: attach the study's and its
    trials' files to the Optuna artifact store of the run folder, which optuna-dashboard
    shows (:class:`~runners._artifacts.ArtifactRecorder`).

    ``next_round``: run the study in rounds (a sequential design, e.g. a confirmation that
    looks after every round of paired seeds): no trial is sampled; ``next_round(study)``
    returns the trials of the next round as (params, user attributes) pairs, which are
    enqueued and run, or a string, the reason the study stops. A resumed study first runs
    what a crash left queued or in flight (nothing twice), then asks for the next round.

    ``train`` / ``load_proxy``: the local runner's trainer and data (default
    :func:`study.trainer.train`, :func:`study.data.load_proxy`; a simulation passes a planted
    truth's, :class:`runners.Planted`)."""
    progress = progress or Progress(quiet=True)
    if run is None:
        run = check_run(settings, resume=resume, space=space, mlflow=mlflow)
        start_run(run, log=progress.line)
    settings, space, study = run.settings, run.space, run.study
    observers = list(observers)
    if artifacts:
        observers.append(ArtifactRecorder(settings.run_dir))
    if run.mlflow is not None:
        observers.append(MlflowTracker(run.mlflow, system_metrics=run.mlflow_system_metrics))
    bridge = StudyBridge(study, space, settings, progress=progress, observers=observers, queued_only=next_round is not None)
    try:
        _run(bridge, resume=not run.create, next_round=next_round, train=train, load_proxy=load_proxy)
    finally:
        if run.ray_started:
            import ray  # started for this run by start_run

            ray.shutdown()
    return bridge


def _run(bridge: StudyBridge, *, resume: bool, next_round: NextRound | None = None, **trainer: Any) -> None:
    if resume:
        recovered = bridge.recover_interrupted()
        if recovered:
            bridge.progress.line(f"resume: trials {', '.join(map(str, recovered))} were left running; recorded as failed (interrupted) "
                                 f"and enqueued again")
    elif next_round is None:
        names = bridge.enqueue_references()
        if names:
            bridge.progress.line(f"enqueued reference points: {', '.join(names)}")
    bridge.study_started()
    try:
        if next_round is None:
            _runner(bridge, **trainer)
        else:
            _rounds(bridge, next_round, **trainer)
    finally:
        bridge.study_finished()


def _runner(bridge: StudyBridge, *, train: Any = None, load_proxy: Any = None) -> None:
    if bridge.settings.runner == "local":
        run_local(bridge, train=train, load_proxy=load_proxy)
    else:
        if train is not None:
            raise ConfigError("runner", "a planted trainer runs with the local runner only")
        from runners._ray_tune import run_ray  # Ray: only for a run on Ray

        run_ray(bridge)


def _rounds(bridge: StudyBridge, next_round: NextRound, **trainer: Any) -> None:
    """Run what is queued, then ask for the next round, until ``next_round`` says stop (or
    the budget, the timeout or the failure rule stops the study)."""

    while True:
        if bridge.study.get_trials(deepcopy=False, states=(TrialState.WAITING,)):
            _runner(bridge, **trainer)
            if bridge.interrupted or bridge.failure_limit_reached():
                return
            continue
        why = bridge.done()
        if why is not None and why != "the round's trials ran":
            return
        plan = next_round(bridge.study)
        if isinstance(plan, str):
            bridge.stop(plan)
            return
        if not plan:
            bridge.stop("the next round has no trial")
            return
        for params, attrs in plan:
            bridge.study.enqueue_trial(dict(params), user_attrs={record.ATTEMPT: 1, **dict(attrs)})
