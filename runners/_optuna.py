"""Optuna samplers, pruners and storages from :class:`~runners.StudySettings`."""

from __future__ import annotations

import warnings
from typing import Any

import optuna

from runners._algorithms import PRUNER_REGISTRY, SAMPLER_REGISTRY, GridSampler
from runners._settings import StudySettings
from study.storage import check_storage_url, normalize_storage_url, open_storage, redact
from study.validate import ConfigError

__all__ = ["make_sampler", "make_pruner", "make_storage", "check_storage_url", "normalize_storage_url", "redact", "GridSampler"]


def make_sampler(settings: StudySettings, grid: dict[str, list[Any]] | None) -> optuna.samplers.BaseSampler:
    """The sampler ``settings.sampler`` (seeded by ``settings.seed``), built by its registry
    entry from ``settings.sampler_options``; ``grid`` is the space's grid (None: it has none)."""
    entry = SAMPLER_REGISTRY.get(settings.sampler)
    if entry.needs_grid and grid is None:
        raise ConfigError("sampler", f"space {settings.space!r} defines no grid; {entry.name!r} needs a space with one (e.g. paper_table2)")
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
    """The storage for ``url``, for the driver that writes it: :func:`study.storage.open_storage`
    with ``readonly=False`` (an RDB storage, or Optuna's journal file for ``journal:PATH``)."""
    return open_storage(url, readonly=False)
