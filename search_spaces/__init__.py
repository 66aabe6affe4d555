"""Named search spaces: define-by-run functions over an ``optuna.Trial`` returning a TrialConfig.

    >>> from search_spaces import SpaceContext, get_space, list_spaces
    >>> [s.name for s in list_spaces()]
    ['attention_nas', 'eca_kmap', 'kmap_confirm', 'paper_table2', 'se_ratio']
    >>> space = get_space("eca_kmap")          # or get_space("my_spaces.py:define")
    >>> ctx = SpaceContext(backbone="resnet18", stem="lowres", width=None, proxy=ProxySpec(),
    ...                    recipe=Recipe(epochs=3), seed=0, design="search")
    >>> config = space.suggest(trial, ctx)

A space is ``define(trial, ctx) -> TrialConfig`` registered with :func:`register_space`
(name, one-line description, default :class:`Budget`, default sampler, optional reference
points enqueued first and optional grid, and the command-line options it takes:
:class:`SpaceOption`); ``ctx`` is the study's :class:`SpaceContext` and ``ctx.config(stages)``
its TrialConfig. A space written the old way (``define(trial, *, backbone, ..., **settings)``
with :func:`make_config`) keeps working through one adapter (:func:`adapt`). Every module of
this package but its machinery is a space module, imported here: a new space is its module
(and its test).
:meth:`Space.suggest` records the config and the resolved per-stage description (C and
attention parameters, ECA's resolved k) as the trial's ``config`` and ``stages`` user
attributes. Spaces know nothing about Ray or storage; the attention kinds they choose among
are the kinds' own declarations (:mod:`study.catalogue`).
"""

import importlib
import pkgutil

from search_spaces._context import SpaceContext, adapt, make_config
from search_spaces._kmap_confirm import CONFIRM_WIDTHS, DEFAULT_DELTA, arm_ks, default_arms, identical_arms
from search_spaces._kmap_confirm import REFERENCE as CONFIRM_REFERENCE
from search_spaces._registry import (
    Budget,
    Space,
    SpaceInfo,
    SpaceOption,
    declared_options,
    get_space,
    list_spaces,
    register_space,
    space_names,
)

#: the modules of the package that are not spaces (each other module registers the spaces it defines)
_MACHINERY = ("_context", "_registry")
for _info in pkgutil.iter_modules(__path__):
    if _info.name not in _MACHINERY:
        importlib.import_module(f"{__name__}.{_info.name}")

__all__ = [
    "CONFIRM_REFERENCE",
    "CONFIRM_WIDTHS",
    "DEFAULT_DELTA",
    "arm_ks",
    "default_arms",
    "identical_arms",
    "Budget",
    "Space",
    "SpaceContext",
    "SpaceInfo",
    "SpaceOption",
    "adapt",
    "declared_options",
    "get_space",
    "list_spaces",
    "make_config",
    "register_space",
    "space_names",
]
