"""Named search spaces: define-by-run functions over an ``optuna.Trial`` returning a TrialConfig.

    >>> from search_spaces import get_space, list_spaces
    >>> [s.name for s in list_spaces()]
    ['attention_nas', 'eca_kmap', 'paper_table2', 'se_ratio']
    >>> space = get_space("eca_kmap")          # or get_space("my_spaces.py:define")
    >>> config = space.suggest(trial, backbone="resnet18", stem="lowres", width=None,
    ...                        proxy=ProxySpec(), recipe=Recipe(epochs=3), seed=0)

A space is ``define(trial, *, backbone, stem, width, proxy, recipe, seed, **_) ->
TrialConfig`` registered with :func:`register_space` (name, one-line description, default
:class:`Budget`, default sampler, optional reference points enqueued first and optional
grid, and the command-line options it takes: :class:`SpaceOption`). :meth:`Space.suggest`
records the config and the resolved per-stage description (C and attention parameters, ECA's resolved k) as the trial's ``config`` and ``stages``
user attributes. Spaces know nothing about Ray or storage.
"""

# importing the space modules registers them
from search_spaces import _attention_nas, _eca_kmap, _kmap_confirm, _paper_table2, _se_ratio  # noqa: F401,E402
from search_spaces._registry import (
    SAMPLERS,
    Budget,
    Space,
    SpaceInfo,
    SpaceOption,
    declared_options,
    get_space,
    list_spaces,
    make_config,
    register_space,
    space_names,
)

__all__ = [
    "CONFIRM_DECISION",
    "SAMPLERS",
    "Budget",
    "Space",
    "SpaceInfo",
    "SpaceOption",
    "declared_options",
    "get_space",
    "list_spaces",
    "make_config",
    "register_space",
    "space_names",
]

#: the decision rule a kmap_confirm study stores (the CLI writes it into the study's settings)
CONFIRM_DECISION = _kmap_confirm.DECISION
