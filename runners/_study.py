"""Open (create or load) a study from its settings, and run it with the chosen runner."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import optuna

from runners._optuna import check_storage_url, make_pruner, make_sampler, make_storage, redact
from runners._settings import StudySettings
from study import record
from study.storage import journal_path
from study.validate import ConfigError

if TYPE_CHECKING:
    from search_spaces import Space

__all__ = ["open_study", "study_exists", "name_objectives"]


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
    grid = space.grid_space(settings.space_context())
    sampler = make_sampler(settings, grid)
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
    direction = {"maximize": optuna.study.StudyDirection.MAXIMIZE, "minimize": optuna.study.StudyDirection.MINIMIZE}
    if list(study.directions) != [direction[d] for d in settings.directions]:
        raise ConfigError("objectives", f"study {settings.name!r} was created with other objectives")
    name_objectives(study, settings.objectives)  # a study created before they were named
    # a sampler seeded as in the first run would draw the same random numbers again and so
    # re-sample the configurations that run already tried: seed it past the trials so far
    n = len(study.get_trials(deepcopy=False))
    if n:
        study.sampler = make_sampler(settings.replace(seed=settings.seed + n), grid)
    return study
