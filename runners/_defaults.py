"""Where a study's settings get the values nobody gave: one order, for Python and the command line.

From lowest to highest, each layer overriding the one before:

1. the setting's own default, declared with its field (:class:`runners.StudySettings`);
2. the space: its default design, that design's budget (``trials``, the recipe's
   ``epochs``), its default sampler (NSGA-II where that is TPE and the study has several
   objectives), its name (the study's ``name``, hence ``run_dir`` and ``storage``);
3. the space's preparation (``prepared``; the study CLI's workflows, e.g. ``kmap_confirm
   --from RUN``: the source study's backbone, stem, proxy and recipe);
4. the design (:data:`DESIGNS`): its sampler, pruner, replicates, seed mode, and the
   validation size of the proxy the layers above chose (never of one the caller gives);
5. what the caller gives (``StudySettings(**given)``; the command line's flags). A proxy or
   recipe given as a mapping changes those fields of the one the layers above chose.

The default proxy (:data:`DEFAULT_PROXY`) and recipe (:data:`DEFAULT_RECIPE`) are part of
layer 1, sized so that a space's default budget takes minutes on two CPU cores.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from search_spaces import get_space
from study.config import ProxySpec, Recipe
from study.validate import ConfigError

__all__ = ["Design", "DESIGNS", "SEED_MODES", "RUNNERS", "DEFAULT_CONCURRENCY", "DEFAULT_PROXY",
           "DEFAULT_RECIPE", "complete", "sanitize"]

RUNNERS = ("ray", "local")
#: "per_trial": each trial trains from its own seed (:func:`study.record.trial_seed` of its number);
#: "paired": replicate r of every configuration trains from one seed (trial_seed of r), so
#: configurations can be compared pair by pair; "fixed": every trial from the study seed
SEED_MODES = ("per_trial", "paired", "fixed")
#: trials at once under Ray when ``max_concurrent`` is not given (the local runner runs one)
DEFAULT_CONCURRENCY = 2

#: the default proxy: the built-in synthetic one at 32 px shrunk to 10 classes x 50 training
#: and 20 validation images, so a space's default budget (e.g. 20 trials x 3 epochs, widths
#: 0.25-1.0) takes a few minutes on two CPU cores
DEFAULT_PROXY = ProxySpec(source="synthetic", resolution=32, num_classes=10, images_per_class=50, val_per_class=20)
#: the default training recipe's fields besides the epochs (the space's budget gives those):
#: lr 0.05 for batch 64 (0.1 per 128): at 0.2 the width-1.0 ResNet-18 stayed at chance on the
#: default proxy for 3 epochs (BN statistics blew up), while at 0.05 widths 0.25 / 0.5 / 1.0
#: reached 48 / 82 / 77 % top-1 after 3 epochs (10 classes; chance 10 %)
DEFAULT_RECIPE = {"batch_size": 64, "lr": 0.05, "warmup_epochs": 0.5}


@dataclass(frozen=True)
class Design:
    """What a study is for, and the defaults that follow from it (what the caller gives wins).

    ``sampler`` None keeps the space's own default sampler; ``pruner`` prunes a study of one
    objective, ``multi_objective_pruner`` one of several; ``val_per_class`` sizes the
    validation split of the default proxy (None: the proxy's own).
    """

    name: str
    description: str
    sampler: str | None = None
    pruner: str = "pareto"
    multi_objective_pruner: str = "pareto"
    replicates: int = 1
    val_per_class: int | None = None
    seed_mode: str = "per_trial"


#: the study designs: "search" finds good configurations, "inference" measures an effect,
#: "confirm" compares fixed configurations
DESIGNS: dict[str, Design] = {
    "search": Design("search", "find good configurations: the space's sampler, pruning, one run per configuration"),
    "inference": Design(
        "inference",
        "measure an effect without bias: random sampling, no pruning, every configuration run twice with "
        "different seeds, a larger validation set",
        sampler="random", pruner="none", multi_objective_pruner="none", replicates=2, val_per_class=100,
    ),
    "confirm": Design(
        "confirm",
        "compare fixed configurations in rounds of paired seeds (common random numbers), no pruning, a larger validation "
        "set, until each is decided by the rule stored before the first run (kmap_confirm)",
        sampler="random", pruner="none", multi_objective_pruner="none", replicates=1, val_per_class=100, seed_mode="paired",
    ),
    "answer": Design(
        "answer",
        "the whole answer to 'is the paper's psi right, and if not, what is?': a pilot, the inference design, its analysis, a "
        "sequential confirmation at a margin (--delta) and the decision, each stage a study in the run folder (eca_kmap)",
        sampler="random", pruner="none", multi_objective_pruner="none", replicates=2, val_per_class=100,
    ),
}


def sanitize(name: str) -> str:
    """A space's name as a study name and folder name."""
    return re.sub(r"[^A-Za-z0-9_.\-]+", "_", name).strip("._-") or "study"


def _with_val(proxy: ProxySpec, val_per_class: int | None) -> ProxySpec:
    """``proxy`` with at least ``val_per_class`` validation images per class (a generated proxy only)."""
    if not val_per_class or proxy.source == "cache":
        return proxy
    return dataclasses.replace(proxy, val_per_class=max(val_per_class, proxy.val_per_class or 0))


class _Space:
    """The space a study names, looked up once and only when a default needs it."""

    def __init__(self, ref: Any):
        self.ref = ref
        self._space: Any = None

    def get(self) -> Any:
        if self._space is None:

            self._space = get_space(self.ref)
        return self._space


def complete(given: Mapping[str, Any], declared: Mapping[str, Any], *, prepared: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Every setting's value: ``given`` over the layers of the module doc. ``declared`` maps
    each field to its own default (layer 1); ``prepared`` is layer 3 (setting values, and
    ``epochs``: the recipe's)."""
    if "space" not in given:
        raise ConfigError("space", "a study needs a space (a registered space's name, or path/to/file.py:function)")
    prepared = dict(prepared or {})
    space = _Space(given["space"])
    out = dict(declared)  # 1. the settings' own defaults
    name = given.get("design") or space.get().info.default_design
    design = DESIGNS.get(name) if isinstance(name, str) else None
    if design is None:
        raise ConfigError("design", f"must be one of {', '.join(DESIGNS)}, got {name!r}")
    multi = len(tuple(given.get("objectives", declared["objectives"]))) > 1
    budget = lambda: space.get().info.budget_for(design.name)
    # 2. the space
    out["design"] = design.name
    if "sampler" not in given:
        sampler = design.sampler or space.get().info.sampler  # 4. the design's, where it has one
        out["sampler"] = "nsga2" if multi and sampler == "tpe" else sampler
    if "trials" not in given:
        out["trials"] = budget().trials
    if "name" not in given:
        out["name"] = sanitize(space.get().name)
    # 3. the space's preparation
    out.update({k: v for k, v in prepared.items() if k in declared and k not in ("proxy", "recipe")})
    proxy = prepared.get("proxy") or DEFAULT_PROXY
    recipe = dict(prepared.get("recipe") or DEFAULT_RECIPE)
    # 4. the design
    if "pruner" not in given:
        out["pruner"] = design.multi_objective_pruner if multi else design.pruner
    for name in ("replicates", "seed_mode"):
        out[name] = getattr(design, name)
    proxy = _with_val(proxy, design.val_per_class)
    # 5. what the caller gives
    out.update({k: v for k, v in given.items() if k not in ("proxy", "recipe")})
    out["proxy"] = _proxy(given.get("proxy"), proxy)
    out["recipe"] = _recipe(given.get("recipe"), recipe, lambda: prepared.get("epochs") or budget().epochs)
    if "run_dir" not in given:
        out["run_dir"] = str(Path("runs", out["name"]).resolve())
    if "storage" not in given:
        out["storage"] = f"sqlite:///{Path(out['run_dir']).resolve() / 'study.db'}"
    return out


def _proxy(given: Any, default: ProxySpec) -> Any:
    """The proxy: as given, or the given fields over the default's, or the default."""
    if given is None:
        return default
    if isinstance(given, Mapping):
        return ProxySpec.from_dict({**default.to_dict(), **given}, "proxy")
    return given


def _recipe(given: Any, default: Mapping[str, Any], epochs: Callable[[], int]) -> Any:
    """The recipe: as given (a Recipe), or the given fields over the default's, whose epochs
    are the budget's (and its warm-up no longer than them)."""
    if given is not None and not isinstance(given, Mapping):
        return given
    given = dict(given or {})
    fields = {**default, **given}
    if "epochs" not in given:
        fields["epochs"] = epochs()
    if "warmup_epochs" not in given and isinstance(fields["epochs"], (int, float)) and not isinstance(fields["epochs"], bool):
        fields["warmup_epochs"] = min(float(fields.get("warmup_epochs", 0.0)), float(fields["epochs"]))
    return Recipe.from_dict(fields, "recipe")
