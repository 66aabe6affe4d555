"""Optuna samplers, pruners and storages from :class:`~runners.StudySettings`."""

from __future__ import annotations

import time
import warnings
from typing import Any

import optuna

from runners._algorithms import PRUNER_REGISTRY, SAMPLER_REGISTRY, GridSampler
from runners._settings import StudySettings
from study.storage import (PASSWORD_ENV, check_journal_writable, check_storage_url, connect_url, journal_path, normalize_storage_url,
                           public_url, redact)

__all__ = ["make_sampler", "make_pruner", "make_storage", "check_storage_url", "normalize_storage_url", "GridSampler"]


def make_sampler(settings: StudySettings, grid: dict[str, list[Any]] | None) -> optuna.samplers.BaseSampler:
    """The sampler ``settings.sampler`` (seeded by ``settings.seed``), built by its registry
    entry from ``settings.sampler_options``; ``grid`` is the space's grid (None: it has none)."""
    entry = SAMPLER_REGISTRY.get(settings.sampler)
    if entry.needs_grid and grid is None:
        raise ValueError(f"sampler: space {settings.space!r} defines no grid; {entry.name!r} needs a space with one (e.g. paper_table2)")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return entry.factory(entry.complete(settings.sampler_options), seed=settings.seed, grid=grid)


def make_pruner(settings: StudySettings) -> optuna.pruners.BasePruner:
    """The pruner ``settings.pruner``, built by its registry entry from
    ``settings.pruner_options``; a step is an epoch (``max_resource`` = the epochs).
    "pareto" compares the costs named by the study's cost objectives (none: top-1 alone)."""
    entry = PRUNER_REGISTRY.get(settings.pruner)
    options = entry.complete(settings.pruner_options, multi=settings.multi_objective)
    return entry.factory(options, epochs=settings.recipe.epochs, costs=tuple(settings.cost_keys))


def make_storage(url: str) -> optuna.storages.BaseStorage:
    """The storage for ``url``: an RDB storage, or Optuna's journal file for ``journal:PATH``.

    SQLite gets a busy timeout so two studies (two drivers) can share one file, PostgreSQL a
    pre-ping so a cluster driver survives idle drops; a URL without a password connects with
    the one in ``STUDY_STORAGE_PASSWORD`` (:func:`study.storage.connect_url`). A journal
    takes Optuna's NFS-safe lock (``JournalFileOpenLock``, a ``PATH.lock`` file created with
    ``O_EXCL``), so drivers on several machines may share it on a shared filesystem."""
    check_storage_url(url)
    if journal_path(url) is not None:
        return _journal_storage(url)
    url = connect_url(normalize_storage_url(url))
    if url.startswith("sqlite"):
        kwargs: dict[str, Any] = {"connect_args": {"timeout": 60}}
    else:
        kwargs = {"pool_pre_ping": True}
    # Two drivers opening a fresh database at once race to create Optuna's schema (one of
    # them fails on alembic_version); the schema exists on the next attempt.
    for attempt in range(5):
        try:
            return optuna.storages.RDBStorage(url, engine_kwargs=kwargs)
        except ImportError as exc:
            raise ValueError(f"storage: no database driver for {redact(url)} ({exc.__cause__ or exc})") from None
        except Exception as exc:  # sqlalchemy's OperationalError etc.: one line, named
            if attempt < 4 and ("alembic_version" in str(exc) or "already exists" in str(exc)):
                time.sleep(0.2 * (attempt + 1))
                continue
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            if "password" in first.lower() and public_url(url) == url:  # the password is not written down: say where it goes
                first += f" (a password is never stored: give the URL with it again, or set {PASSWORD_ENV}, PGPASSWORD or ~/.pgpass)"
            raise ValueError(f"storage: cannot open {redact(url)}: {first}") from None
    raise AssertionError("unreachable")


def _journal_storage(url: str) -> optuna.storages.JournalStorage:
    """Optuna's journal file at ``journal:PATH`` (created when absent) with the open lock."""
    from optuna.storages.journal import JournalFileBackend, JournalFileOpenLock

    check_journal_writable(url)
    path = journal_path(normalize_storage_url(url))
    try:
        return optuna.storages.JournalStorage(JournalFileBackend(path, lock_obj=JournalFileOpenLock(path)))
    except (OSError, ValueError) as exc:  # unreadable, or not a journal (a line that is no JSON log)
        raise ValueError(f"storage: cannot open the journal {path}: {exc}") from None
