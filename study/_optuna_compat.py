"""The core's uses of Optuna beyond its documented API: a journal file read without writing,
and an artifact attached under an id of the caller's choosing.

Optuna's public journal backend (``JournalFileBackend``) always takes a lock to append and
creates the file when it is absent; analysis must neither write to a study's storage nor
create one. :class:`ReadOnlyJournal` relies on how that class is built (its constructor
creates only a missing file, and ``read_logs`` takes no lock), which no public contract
promises: hence this module. :func:`study.storage.open_storage` (``readonly=True``) is its
only user; the runners' own uses of Optuna's private API live in ``runners/_optuna_compat.py``.

Optuna's ``optuna.artifacts.upload_artifact`` stores a file under a fresh random id and its
:class:`~optuna.artifacts.ArtifactMeta` in the study's or trial's system attribute
``artifacts:<id>``, which is where ``get_all_artifact_meta`` and optuna-dashboard look.
:func:`set_artifact_meta` writes that attribute for an id chosen by :mod:`study.artifacts`
(so that a file attached again replaces itself): the prefix, and the study's and trial's
storage ids (``_study_id``, ``_trial_id``, which ``upload_artifact`` itself reads), are not
public.

``tests/study/test_storage_url.py`` pins the journal's behaviour and
``tests/study/test_artifacts.py`` the artifacts' against the installed Optuna (and
optuna-dashboard).
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from optuna.storages.journal import JournalFileBackend

__all__ = ["ReadOnlyJournal", "ARTIFACTS_ATTR_PREFIX", "set_artifact_meta"]

#: the system attribute prefix under which Optuna keeps an artifact's meta (``optuna/artifacts/_upload.py``)
ARTIFACTS_ATTR_PREFIX = "artifacts:"


class ReadOnlyJournal(JournalFileBackend):
    """Optuna's journal file, read without taking its lock; a write is refused.

    The file must exist before this is built (the base class would create a missing one)."""

    def __init__(self, path: str):
        super().__init__(path)
        self.path = path

    def append_logs(self, logs: list[dict[str, Any]]) -> None:
        """Refuse every write (a PermissionError naming the journal)."""
        raise PermissionError(f"analysis never writes to a study's storage (journal {self.path})")


def set_artifact_meta(study: Any, meta: Any, trial: Any = None) -> None:
    """Record the :class:`~optuna.artifacts.ArtifactMeta` ``meta`` on ``trial`` (an
    ``optuna.Trial`` or ``FrozenTrial`` of ``study``, still running) or, without one, on the
    ``study`` (an ``optuna.Study``), as ``upload_artifact`` does."""
    key, value = ARTIFACTS_ATTR_PREFIX + meta.artifact_id, json.dumps(dataclasses.asdict(meta))
    if trial is None:
        study._storage.set_study_system_attr(study._study_id, key, value)
    else:
        study._storage.set_trial_system_attr(trial._trial_id, key, value)
