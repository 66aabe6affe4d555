"""A run folder's Optuna artifact store: the files optuna-dashboard shows beside a study and its trials.

``runs/<name>/artifacts`` is an :class:`optuna.artifacts.FileSystemArtifactStore`. A file is
attached to a study or to one of its trials as ``optuna.artifacts.upload_artifact`` attaches
it (the bytes in the store under an artifact id, an :class:`~optuna.artifacts.ArtifactMeta`
in the study's or trial's system attribute ``artifacts:<id>``), so Optuna's
``get_all_artifact_meta``/``download_artifact`` and ``optuna-dashboard STORAGE --artifact-dir
runs/<name>/artifacts`` find it. One difference: the id is derived from the study's name,
the trial's number and the file's name (:func:`artifact_id`), so a file attached again - a
trial's ``history.json`` after each epoch, the report's figures after each report -
replaces the one before instead of piling up copies.

What a study attaches (:class:`runners.ArtifactRecorder` and ``python -m analysis.report``):
its ``settings.json`` to the study; each trial's ``config.json`` (its TrialConfig) when it
starts and its ``history.json`` (every epoch's metrics) after each epoch, to the trial;
the report's figures (PNG) and ``report.md`` to the study. A trial can take a file only
while it runs (Optuna refuses to change a finished trial).
"""

from __future__ import annotations

import mimetypes
import uuid
from pathlib import Path
from typing import Any

from optuna.artifacts import ArtifactMeta, FileSystemArtifactStore

from study._optuna_compat import set_artifact_meta

__all__ = ["ARTIFACTS", "artifact_store", "artifact_id", "attach_file"]

#: the artifact store's folder inside a run folder
ARTIFACTS = "artifacts"
#: the namespace of :func:`artifact_id`'s name-based UUIDs
_NAMESPACE = uuid.UUID("6f1f3a52-8d0c-4c55-9b1e-2a7c4d3e9b10")


def artifact_store(run_dir: str | Path) -> Any:
    """The Optuna artifact store of the run folder ``run_dir`` (``run_dir/artifacts``, created)."""
    folder = Path(run_dir) / ARTIFACTS
    folder.mkdir(parents=True, exist_ok=True)
    return FileSystemArtifactStore(str(folder))


def artifact_id(study_name: str, filename: str, trial_number: int | None = None) -> str:
    """The id of the file ``filename`` attached to the study ``study_name`` (or to its trial
    ``trial_number``): the same arguments give the same id (a UUID 5)."""
    owner = f"study/{study_name}" if trial_number is None else f"study/{study_name}/trial/{trial_number}"
    return str(uuid.uuid5(_NAMESPACE, f"{owner}/{filename}"))


def attach_file(store: Any, study: Any, path: str | Path, *, trial: Any = None, filename: str | None = None) -> str:
    """Attach the file ``path`` (as ``filename``, default its name) to ``trial`` (an
    ``optuna.Trial`` or a running ``FrozenTrial`` of ``study``) or, without one, to the
    ``study``, in the artifact store ``store``; a file of that name attached before is
    replaced. Returns the artifact id."""
    path = Path(path)
    name = filename or path.name
    number = None if trial is None else trial.number
    aid = artifact_id(study.study_name, name, number)
    mimetype, encoding = mimetypes.guess_type(name)
    with open(path, "rb") as f:
        store.write(aid, f)
    set_artifact_meta(study, ArtifactMeta(artifact_id=aid, filename=name, mimetype=mimetype or "application/octet-stream",
                                          encoding=encoding), trial)
    return aid
