"""The resolved settings of one study: frozen, keyword-only, validated eagerly, one JSON form.

``runs/<name>/settings.json`` holds :meth:`StudySettings.to_dict`; ``--resume`` reads it
back with :meth:`StudySettings.from_dict`.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from runners._algorithms import (
    MULTI_OBJECTIVE_PRUNER_OPTIONS,
    MULTI_OBJECTIVE_PRUNERS,
    MULTI_OBJECTIVE_SAMPLERS,
    PRUNER_OPTIONS,
    PRUNER_REGISTRY,
    PRUNERS,
    SAMPLER_OPTIONS,
    SAMPLER_REGISTRY,
    SAMPLERS,
    check_int,
)
from study import record
from study.config import ProxySpec, Recipe, repr_non_default
from study.storage import check_storage_url, public_url, redact
from study.validate import ConfigError

__all__ = ["StudySettings", "Design", "DESIGNS", "SEED_MODES", "SAMPLERS", "PRUNERS", "RUNNERS", "PRUNER_OPTIONS", "SAMPLER_OPTIONS", "RESUMABLE",
           "MULTI_OBJECTIVE_PRUNERS", "MULTI_OBJECTIVE_PRUNER_OPTIONS"]

RUNNERS = ("ray", "local")
# SAMPLERS, PRUNERS, their option defaults and multi-objective capability are views of the
# samplers' and pruners' registry entries (runners._algorithms), where each one is described
#: "per_trial": each trial trains from its own seed (:func:`study.record.trial_seed` of its number);
#: "paired": replicate r of every configuration trains from one seed (trial_seed of r), so
#: configurations can be compared pair by pair; "fixed": every trial from the study seed
SEED_MODES = ("per_trial", "paired", "fixed")


@dataclass(frozen=True)
class Design:
    """What a study is for, and the defaults that follow from it (each flag overrides its own).

    ``sampler`` None keeps the space's own default sampler; ``pruner`` prunes a study of one
    objective, ``multi_objective_pruner`` one of several; ``val_per_class`` sizes the
    validation split of the default synthetic proxy (None: the proxy's own).
    """

    name: str
    description: str
    sampler: str | None = None
    pruner: str = "pareto"
    multi_objective_pruner: str = "pareto"
    replicates: int = 1
    val_per_class: int | None = None
    seed_mode: str = "per_trial"


#: the study designs: "search" finds good configurations, "inference" measures an effect
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
        "compare fixed configurations at a higher fidelity: every one run with the same seeds (paired), no pruning, "
        "a larger validation set",
        pruner="none", multi_objective_pruner="none", replicates=3, val_per_class=100, seed_mode="paired",
    ),
}

#: the fewest paired seeds a confirmation runs
CONFIRM_MIN_SEEDS = 3

#: settings a resumed study may change; every other field stays as the study was created
RESUMABLE = ("trials", "timeout", "runner", "address", "cpus_per_trial", "gpus_per_trial", "max_concurrent", "max_failures", "device",
             "stage_data")
#: trials at once under Ray when ``max_concurrent`` is not given
DEFAULT_CONCURRENCY = 2


@dataclass(frozen=True, kw_only=True)
class StudySettings:
    """Everything that defines a study and how it runs.

    Study-defining fields (``space``, ``backbone``, ``stem``, ``width``, ``proxy``,
    ``recipe``, ``seed``, ``sampler``, ``pruner``, ``objectives``, ``design``,
    ``replicates``, ``seed_mode``) are fixed when the study is created; the budget
    (``trials``: configurations the study goes on to finish, each run ``replicates`` times
    with its own seed; ``timeout`` seconds for this run) and the execution fields
    (``runner``, ``address``, resources, ``stage_data``) may change on ``--resume``.
    ``stage_data`` ships the proxy cache to every Ray node's local disk instead of reading
    it at the same path everywhere. ``storage`` is the URL to connect with, a password
    included where one was given; it is written down (:meth:`to_dict`) and printed without it.
    """

    name: str
    space: str
    storage: str
    run_dir: str
    trials: int
    runner: str = "ray"
    address: str | None = None
    timeout: float | None = None
    seed: int = 0
    backbone: str = "resnet18"
    stem: str = "lowres"
    width: float | None = None
    proxy: ProxySpec = field(default_factory=ProxySpec)
    recipe: Recipe = field(default_factory=Recipe)
    sampler: str = "tpe"
    sampler_options: Mapping[str, int] = field(default_factory=dict)
    pruner: str = "pareto"
    pruner_options: Mapping[str, int] = field(default_factory=dict)
    objectives: tuple[str, ...] = ("top1",)
    cpus_per_trial: float = 1.0
    gpus_per_trial: float = 0.0
    max_concurrent: int | None = None
    max_failures: int = 1
    device: str | None = None
    design: str = "search"
    replicates: int = 1
    seed_mode: str = "per_trial"
    space_options: Mapping[str, Any] = field(default_factory=dict)
    stage_data: bool = False

    def __post_init__(self) -> None:
        for name in ("name", "space", "storage", "run_dir", "backbone", "stem"):
            if not isinstance(getattr(self, name), str) or not getattr(self, name):
                raise ConfigError(name, f"expected a non-empty string, got {getattr(self, name)!r}")
        check_int(self.trials, "trials", 1)
        check_int(self.seed, "seed", 0)
        if self.design not in DESIGNS:
            raise ConfigError("design", f"must be one of {', '.join(DESIGNS)}, got {self.design!r}")
        check_int(self.replicates, "replicates", 1)
        if self.seed_mode not in SEED_MODES:
            raise ConfigError("seed_mode", f"must be one of {', '.join(SEED_MODES)}, got {self.seed_mode!r}")
        if self.replicates > 1 and self.seed_mode == "fixed":
            raise ConfigError("replicates", f"{self.replicates} replicates of a configuration need their own seeds "
                             f"({{seed_mode}} per_trial or paired), got seed_mode {self.seed_mode!r}", refs=["seed_mode"])
        if self.design == "confirm" and self.replicates < CONFIRM_MIN_SEEDS:
            raise ConfigError("replicates", f"a confirmation compares its arms over at least {CONFIRM_MIN_SEEDS} paired seeds, got {self.replicates}")
        if not isinstance(self.space_options, Mapping):
            raise ConfigError("space_options", f"expected a mapping, got {type(self.space_options).__name__}")
        object.__setattr__(self, "space_options", dict(self.space_options))
        if self.max_concurrent is not None:
            check_int(self.max_concurrent, "max_concurrent", 1)
        check_int(self.max_failures, "max_failures", 0)
        if self.runner not in RUNNERS:
            raise ConfigError("runner", f"must be one of {', '.join(RUNNERS)}, got {self.runner!r}")
        check_storage_url(self.storage)
        from study.models import STEMS, get_backbone

        try:
            get_backbone(self.backbone)
        except ValueError as exc:
            raise ConfigError("backbone", f"{exc}") from None
        if self.stem not in STEMS:
            raise ConfigError("stem", f"must be one of {', '.join(STEMS)}, got {self.stem!r}")
        if self.timeout is not None and (isinstance(self.timeout, bool) or not isinstance(self.timeout, (int, float)) or not self.timeout > 0):
            raise ConfigError("timeout", f"must be a number of seconds > 0, got {self.timeout!r}")
        if self.width is not None and not (isinstance(self.width, (int, float)) and 0.25 <= self.width <= 2.0):
            raise ConfigError("width", f"must be in [0.25, 2.0], got {self.width!r}")
        if isinstance(self.proxy, Mapping):
            object.__setattr__(self, "proxy", ProxySpec.from_dict(self.proxy, "proxy"))
        if isinstance(self.recipe, Mapping):
            object.__setattr__(self, "recipe", Recipe.from_dict(self.recipe, "recipe"))
        if self.sampler not in SAMPLERS:
            raise ConfigError("sampler", f"must be one of {', '.join(SAMPLERS)}, got {self.sampler!r}")
        if self.pruner not in PRUNERS:
            raise ConfigError("pruner", f"must be one of {', '.join(PRUNERS)}, got {self.pruner!r}")
        sampler, pruner = SAMPLER_REGISTRY.get(self.sampler), PRUNER_REGISTRY.get(self.pruner)
        object.__setattr__(self, "sampler_options", sampler.complete(self.sampler_options))
        objectives = tuple(self.objectives)
        object.__setattr__(self, "pruner_options", pruner.complete(self.pruner_options, multi=len(objectives) > 1))
        if not objectives or objectives[0] != "top1" or len(set(objectives)) != len(objectives):
            raise ConfigError("objectives", f"must start with top1 and not repeat, got {','.join(objectives)!r}")
        for o in objectives:
            if o not in record.OBJECTIVES:
                raise ConfigError("objectives", f"unknown objective {o!r} (valid: {', '.join(record.OBJECTIVES)})")
        object.__setattr__(self, "objectives", objectives)
        if self.multi_objective:
            if not sampler.multi_objective:
                raise ConfigError("sampler", f"{self.sampler!r} optimises one objective; with {{objectives}} {','.join(objectives)} use one of "
                                  f"{', '.join(MULTI_OBJECTIVE_SAMPLERS)}", refs=["objectives"])
            if not pruner.multi_objective:
                raise ConfigError("pruner", f"{self.pruner!r} prunes one objective (Optuna's pruners refuse several); with {{objectives}} "
                                  f"{','.join(objectives)} use one of {', '.join(MULTI_OBJECTIVE_PRUNERS)}", refs=["objectives"])
        for name, hi in (("cpus_per_trial", 1024.0), ("gpus_per_trial", 64.0)):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0 or v > hi:
                raise ConfigError(name, f"must be a number in [0, {hi:g}], got {v!r}")
        if self.cpus_per_trial == 0 and self.gpus_per_trial == 0:
            raise ConfigError("cpus_per_trial", "a trial needs some CPU or GPU (both are 0)")
        if self.gpus_per_trial > 1 and not float(self.gpus_per_trial).is_integer():
            raise ConfigError("gpus_per_trial", f"more than one GPU must be a whole number, got {self.gpus_per_trial!r}")
        if self.runner == "local":  # in-process, one trial at a time: no Ray cluster, no Ray resources
            if self.address is not None:
                raise ConfigError("address", "a Ray cluster address needs {runner} ray (the local runner runs in-process)", refs=["runner"])
            if self.gpus_per_trial:
                raise ConfigError("gpus_per_trial", "Ray resources need {runner} ray (use {device} cuda with the local runner)", refs=["runner", "device"])
            if self.max_concurrent not in (None, 1):
                raise ConfigError("max_concurrent", f"the local runner runs one trial at a time, got {self.max_concurrent!r}")
            if self.stage_data:
                raise ConfigError("stage_data", "ships the cache to Ray nodes; it needs {runner} ray (the local runner reads it here)", refs=["runner"])
        if not isinstance(self.stage_data, bool):
            raise ConfigError("stage_data", f"expected true or false, got {self.stage_data!r}")

    @property
    def concurrency(self) -> int:
        """Trials at once: ``max_concurrent``, by default 2 under Ray and 1 locally."""
        if self.max_concurrent is not None:
            return self.max_concurrent
        return 1 if self.runner == "local" else DEFAULT_CONCURRENCY

    @property
    def multi_objective(self) -> bool:
        return len(self.objectives) > 1

    @property
    def cost_keys(self) -> list[str]:
        """The cost attributes (``costs`` keys: ``params``, ``macs``, ...) of the objectives after top-1."""
        return [record.OBJECTIVES[name][0] for name in self.objectives[1:]]

    @property
    def directions(self) -> list[str]:
        return [record.OBJECTIVES[o][1] for o in self.objectives]

    @property
    def threads(self) -> int:
        """torch threads per trial: its CPU share, at least one."""
        return max(1, int(self.cpus_per_trial))

    @property
    def runs(self) -> int:
        """Finished trials the study goes on to: every configuration ``replicates`` times."""
        return self.trials * self.replicates

    def space_settings(self, *, number: int | None = None, replicate: int | None = None) -> dict[str, Any]:
        """The keyword arguments a space's ``define`` receives. ``seed`` is the trial's own:
        :func:`study.record.trial_seed` of trial ``number`` (seed mode "per_trial") or of its
        ``replicate`` index (seed mode "paired"); the study seed otherwise. ``options`` are
        the space's own settings (``space_options``, e.g. the study a confirmation checks)."""
        seed = self.seed
        if self.seed_mode == "per_trial" and number is not None:
            seed = record.trial_seed(self.seed, number)
        elif self.seed_mode == "paired" and replicate is not None:
            seed = record.trial_seed(self.seed, replicate)
        return {
            "backbone": self.backbone,
            "stem": self.stem,
            "width": self.width,
            "proxy": self.proxy,
            "recipe": self.recipe,
            "seed": seed,
            "design": self.design,
            "options": dict(self.space_options),
        }

    def replace(self, **changes: Any) -> StudySettings:
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """The JSON form, as written into ``settings.json`` and the study's ``settings``
        attribute: ``storage`` without its password (:func:`study.storage.public_url`), so
        a resumed study connects with the password given again, from the environment or
        from the database client's own files, and never finds one written down."""
        out: dict[str, Any] = {}
        for f in fields(self):
            v = getattr(self, f.name)
            if f.name == "storage":
                v = public_url(v)
            if isinstance(v, (ProxySpec, Recipe)):
                v = v.to_dict()
            elif isinstance(v, Mapping):
                v = dict(v)
            elif isinstance(v, tuple):
                v = list(v)
            out[f.name] = v
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> StudySettings:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError("settings", f"unknown key {unknown[0]!r}")
        d = dict(data)
        d.setdefault("seed_mode", "fixed")  # studies recorded before per-trial seeds ran with one seed
        if "objectives" in d:
            d["objectives"] = tuple(d["objectives"])
        return cls(**d)

    def __repr__(self) -> str:
        return repr_non_default(self.replace(storage=redact(self.storage)) if public_url(self.storage) != self.storage else self)
