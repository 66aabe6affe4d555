"""Open (create or load) a study from its settings and run it with the chosen runner."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import optuna

from runners._bridge import StudyBridge
from runners._observer import StudyObserver
from runners._optuna import check_storage_url, make_pruner, make_sampler, make_storage, redact
from runners._progress import Progress
from runners._settings import StudySettings
from study import record
from study.storage import journal_path
from study.validate import ConfigError

if TYPE_CHECKING:
    from search_spaces import Space

__all__ = ["open_study", "run_study", "study_exists", "name_objectives"]


def study_exists(storage_url: str, name: str) -> bool:
    """Whether ``name`` is a study in ``storage_url``; a SQLite file or a journal that does
    not exist holds none and is not created by asking (bad input must create nothing)."""
    from sqlalchemy.engine import make_url

    check_storage_url(storage_url)
    journal = journal_path(storage_url)
    if journal is not None:
        if not Path(journal).is_file():
            return False
    elif (url := make_url(storage_url)).get_backend_name() == "sqlite" and (
            url.database in (None, "", ":memory:") or not Path(url.database).exists()):
        return False
    storage = make_storage(storage_url)
    return any(s.study_name == name for s in storage.get_all_studies())


def name_objectives(study: optuna.Study, objectives: tuple[str, ...]) -> None:
    """Name the study's objectives (``top1``, ``params``, ...) as Optuna's metric names, which
    optuna-dashboard shows in place of "Objective 0"; a study that has them is left as it is."""
    if study.metric_names is None:
        study.set_metric_names(list(objectives))


def open_study(settings: StudySettings, space: Space, *, create: bool) -> optuna.Study:
    """Create the study ``settings.name`` (an existing name is a ValueError) or load it."""
    storage = make_storage(settings.storage)
    sampler = make_sampler(settings, space.grid_space(**settings.space_settings()))
    pruner = make_pruner(settings)
    if create:
        try:
            study = optuna.create_study(
                storage=storage, study_name=settings.name, sampler=sampler, pruner=pruner, directions=settings.directions
            )
        except optuna.exceptions.DuplicatedStudyError:
            raise ConfigError(
                "name", f"a study named {settings.name!r} already exists in {redact(settings.storage)}; "
                "pass {resume} to continue it, or choose another {name}", refs=["resume", "name"]
            ) from None
        name_objectives(study, settings.objectives)
        study.set_user_attr(record.STUDY_SETTINGS, settings.to_dict())
        study.set_user_attr(record.STUDY_SPACE, space.info.name)
        return study
    try:
        study = optuna.load_study(study_name=settings.name, storage=storage, sampler=sampler, pruner=pruner)
    except KeyError:
        raise ConfigError("name", f"no study named {settings.name!r} in {redact(settings.storage)}") from None
    if list(study.directions) != [optuna.study.StudyDirection.MAXIMIZE if d == "maximize" else optuna.study.StudyDirection.MINIMIZE for d in settings.directions]:
        raise ConfigError("objectives", f"study {settings.name!r} was created with other objectives")
    name_objectives(study, settings.objectives)  # a study created before they were named
    # a sampler seeded as in the first run would draw the same random numbers again and so
    # re-sample the configurations that run already tried: seed it past the trials so far
    n = len(study.get_trials(deepcopy=False))
    if n:
        study.sampler = make_sampler(settings.replace(seed=settings.seed + n), space.grid_space(**settings.space_settings()))
    return study


def run_study(
    settings: StudySettings,
    *,
    space: Space | None = None,
    resume: bool = False,
    progress: Progress | None = None,
    study: optuna.Study | None = None,
    mlflow: str | None = None,
    mlflow_system_metrics: bool = False,
    observers: Sequence[StudyObserver] = (),
    artifacts: bool = True,
) -> StudyBridge:
    """Create (or, with ``resume``, continue) the study and run it until it has
    ``settings.trials`` finished trials (or the timeout). Returns the bridge (its study,
    counts and best trial). The caller has created ``settings.run_dir``; ``study`` is the
    already opened study, if the caller opened it (:func:`open_study`).

    ``mlflow``: a tracking URI (:func:`study.tracking.check_tracking_uri`; the caller checks
    it before creating anything) that this run logs the study to, as a view of the storage
    (:class:`~runners._tracking.MlflowTracker`); an option of this run, not of the study.
    ``mlflow_system_metrics``: also log the driver node's system metrics to the study's run
    (:func:`study.tracking.check_system_metrics` first).
    ``observers`` receive the study's events besides the progress (:class:`~runners._observer.StudyObserver`).
    ``artifacts``: attach the study's and its trials' files to the Optuna artifact store of
    the run folder, which optuna-dashboard shows (:class:`~runners._artifacts.ArtifactRecorder`)."""
    from search_spaces import get_space

    space = space or get_space(settings.space)
    study = study or open_study(settings, space, create=not resume)
    observers = list(observers)
    if artifacts:
        from runners._artifacts import ArtifactRecorder

        observers.append(ArtifactRecorder(settings.run_dir))
    if mlflow is not None:
        from runners._tracking import MlflowTracker

        observers.append(MlflowTracker(mlflow, system_metrics=mlflow_system_metrics))
    bridge = StudyBridge(study, space, settings, progress=progress, observers=observers)
    if resume:
        recovered = bridge.recover_interrupted()
        if recovered:
            bridge.progress.line(f"resume: trials {', '.join(map(str, recovered))} were left running; recorded as failed (interrupted) and enqueued again")
    else:
        names = bridge.enqueue_references()
        if names:
            bridge.progress.line(f"enqueued reference points: {', '.join(names)}")
    bridge.study_started()
    try:
        if settings.runner == "local":
            from runners._local import run_local

            run_local(bridge)
        else:
            from runners._ray_tune import run_ray

            run_ray(bridge)
    finally:
        bridge.study_finished()
    return bridge
