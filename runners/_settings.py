"""A study's settings: what the study is (:class:`StudyDefinition`, fixed at creation,
stored) apart from how one run executes it (:class:`RunOptions`, given by every run), as Ray
Tune keeps TuneConfig apart from RunConfig. Frozen, keyword-only, validated eagerly
(:mod:`study.validate`), one flat JSON form.

``runs/<name>/settings.json`` holds :meth:`StudySettings.to_dict`; ``--resume`` reads it
back with :meth:`StudySettings.from_dict`, keeps the definition and takes the new run's
options (:meth:`StudySettings.resume`).
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
)
from study import record
from study.config import ProxySpec, Recipe, repr_non_default
from study.storage import check_storage_url, public_url, redact
from study.validate import ConfigError, check_bool, check_choice, check_int, check_number, check_str

__all__ = ["StudySettings", "StudyDefinition", "RunOptions", "RUNNER_FIELDS", "Design", "DESIGNS", "SEED_MODES", "SAMPLERS", "PRUNERS", "RUNNERS", "PRUNER_OPTIONS", "SAMPLER_OPTIONS", "RESUMABLE",
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

#: trials at once under Ray when ``max_concurrent`` is not given
DEFAULT_CONCURRENCY = 2


#: the runner-specific run options: a resumed run that changes the runner starts them afresh
RUNNER_FIELDS = ("address", "max_concurrent", "gpus_per_trial", "stage_data")


@dataclass(frozen=True, kw_only=True)
class StudyDefinition:
    """What a study is: fixed when it is created, stored (``settings.json`` and the study's
    ``settings`` attribute), loaded and compared by ``--resume``.

    ``storage`` is the URL of the record, with a password where one was given: it is
    written down (:meth:`to_dict`) and printed without it. ``sampler`` / ``pruner`` and
    their options are completed from their registry entries (:mod:`runners._algorithms`);
    ``space_options`` are the space's own settings (e.g. the study a confirmation checks).
    """

    name: str
    space: str
    storage: str
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
    design: str = "search"
    replicates: int = 1
    seed_mode: str = "per_trial"
    space_options: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in ("name", "space", "storage", "backbone", "stem"):
            check_str(getattr(self, name), name)
        check_int(self.seed, "seed", 0)
        check_choice(self.design, "design", DESIGNS)
        check_int(self.replicates, "replicates", 1)
        check_choice(self.seed_mode, "seed_mode", SEED_MODES)
        self._check_design()
        if not isinstance(self.space_options, Mapping):
            raise ConfigError("space_options", f"expected a mapping, got {type(self.space_options).__name__}")
        object.__setattr__(self, "space_options", dict(self.space_options))
        check_storage_url(self.storage)
        self._check_model()
        if isinstance(self.proxy, Mapping):
            object.__setattr__(self, "proxy", ProxySpec.from_dict(self.proxy, "proxy"))
        if isinstance(self.recipe, Mapping):
            object.__setattr__(self, "recipe", Recipe.from_dict(self.recipe, "recipe"))
        self._check_objectives()
        self._complete_algorithms()

    def _check_design(self) -> None:
        if self.replicates > 1 and self.seed_mode == "fixed":
            raise ConfigError("replicates", f"{self.replicates} replicates of a configuration need their own seeds "
                              f"({{seed_mode}} per_trial or paired), got seed_mode {self.seed_mode!r}", refs=["seed_mode"])
        if self.design == "confirm" and self.replicates < CONFIRM_MIN_SEEDS:
            raise ConfigError("replicates", f"a confirmation compares its arms over at least {CONFIRM_MIN_SEEDS} paired seeds, "
                              f"got {self.replicates}")

    def _check_model(self) -> None:
        from study.models import STEMS, get_backbone

        try:
            get_backbone(self.backbone)
        except ValueError as exc:
            raise ConfigError("backbone", str(exc)) from None
        check_choice(self.stem, "stem", STEMS)
        if self.width is not None:
            check_number(self.width, "width", 0.25, 2.0, what="in [0.25, 2.0]")

    def _check_objectives(self) -> None:
        objectives = tuple(self.objectives)
        if not objectives or objectives[0] != "top1" or len(set(objectives)) != len(objectives):
            raise ConfigError("objectives", f"must start with top1 and not repeat, got {','.join(objectives)!r}")
        for o in objectives:
            if o not in record.OBJECTIVES:
                raise ConfigError("objectives", f"unknown objective {o!r} (valid: {', '.join(record.OBJECTIVES)})")
        object.__setattr__(self, "objectives", objectives)

    def _complete_algorithms(self) -> None:
        """The sampler and pruner checked against their registry entries, their options completed."""
        check_choice(self.sampler, "sampler", SAMPLERS)
        check_choice(self.pruner, "pruner", PRUNERS)
        sampler, pruner = SAMPLER_REGISTRY.get(self.sampler), PRUNER_REGISTRY.get(self.pruner)
        object.__setattr__(self, "sampler_options", sampler.complete(self.sampler_options))
        object.__setattr__(self, "pruner_options", pruner.complete(self.pruner_options, multi=self.multi_objective))
        objectives = ",".join(self.objectives)
        if self.multi_objective and not sampler.multi_objective:
            raise ConfigError("sampler", f"{self.sampler!r} optimises one objective; with {{objectives}} {objectives} use one of "
                              f"{', '.join(MULTI_OBJECTIVE_SAMPLERS)}", refs=["objectives"])
        if self.multi_objective and not pruner.multi_objective:
            raise ConfigError("pruner", f"{self.pruner!r} prunes one objective (Optuna's pruners refuse several); with {{objectives}} "
                              f"{objectives} use one of {', '.join(MULTI_OBJECTIVE_PRUNERS)}", refs=["objectives"])

    @property
    def multi_objective(self) -> bool:
        return len(self.objectives) > 1

    def replace(self, **changes: Any) -> StudyDefinition:
        return dataclasses.replace(self, **changes)

    __repr__ = repr_non_default


@dataclass(frozen=True, kw_only=True)
class RunOptions:
    """How one invocation runs a study: given anew by every run (``--resume`` keeps the last
    run's where a flag does not change them), never part of what the study is.

    ``run_dir`` is the study's local folder; ``trials`` the budget: configurations the study
    goes on to finish (each run ``replicates`` times); ``timeout`` seconds for this run;
    ``runner`` ray or local, ``address`` an existing Ray cluster; the resources of a trial;
    ``max_concurrent`` trials at once (None: 2 under Ray, 1 locally); ``max_failures``
    retries of a failed trial; ``device`` the trials' torch device; ``stage_data`` ships the
    proxy cache to every Ray node's local disk instead of reading it at the same path everywhere.
    """

    run_dir: str
    trials: int
    timeout: float | None = None
    runner: str = "ray"
    address: str | None = None
    cpus_per_trial: float = 1.0
    gpus_per_trial: float = 0.0
    max_concurrent: int | None = None
    max_failures: int = 1
    device: str | None = None
    stage_data: bool = False

    def __post_init__(self) -> None:
        check_str(self.run_dir, "run_dir")
        check_int(self.trials, "trials", 1)
        if self.timeout is not None:
            check_number(self.timeout, "timeout", 0, math.inf, what="a number of seconds > 0")
            if not self.timeout > 0:
                raise ConfigError("timeout", f"must be a number of seconds > 0, got {self.timeout!r}")
        check_choice(self.runner, "runner", RUNNERS)
        if self.max_concurrent is not None:
            check_int(self.max_concurrent, "max_concurrent", 1)
        check_int(self.max_failures, "max_failures", 0)
        check_number(self.cpus_per_trial, "cpus_per_trial", 0, 1024.0)
        check_number(self.gpus_per_trial, "gpus_per_trial", 0, 64.0)
        if self.cpus_per_trial == 0 and self.gpus_per_trial == 0:
            raise ConfigError("cpus_per_trial", "a trial needs some CPU or GPU (both are 0)")
        if self.gpus_per_trial > 1 and not float(self.gpus_per_trial).is_integer():
            raise ConfigError("gpus_per_trial", f"more than one GPU must be a whole number, got {self.gpus_per_trial!r}")
        check_bool(self.stage_data, "stage_data")
        if self.runner == "local":
            self._check_local()

    def _check_local(self) -> None:
        """In-process, one trial at a time: no Ray cluster, no Ray resources."""
        if self.address is not None:
            raise ConfigError("address", "a Ray cluster address needs {runner} ray (the local runner runs in-process)", refs=["runner"])
        if self.gpus_per_trial:
            raise ConfigError("gpus_per_trial", "Ray resources need {runner} ray (use {device} cuda with the local runner)",
                              refs=["runner", "device"])
        if self.max_concurrent not in (None, 1):
            raise ConfigError("max_concurrent", f"the local runner runs one trial at a time, got {self.max_concurrent!r}")
        if self.stage_data:
            raise ConfigError("stage_data", "ships the cache to Ray nodes; it needs {runner} ray (the local runner reads it here)",
                              refs=["runner"])

    def resumed(self, **given: Any) -> RunOptions:
        """The options of a resumed run: these (the last run's) with the ``given`` ones
        (None: not given); a change of runner starts the runner-specific options afresh."""
        given = {k: v for k, v in given.items() if v is not None}
        if given.get("runner", self.runner) != self.runner:
            fresh = {f.name: f.default for f in fields(RunOptions) if f.name in RUNNER_FIELDS}
            given = {**fresh, **given}
        return dataclasses.replace(self, **given)

    @property
    def concurrency(self) -> int:
        """Trials at once: ``max_concurrent``, by default 2 under Ray and 1 locally."""
        if self.max_concurrent is not None:
            return self.max_concurrent
        return 1 if self.runner == "local" else DEFAULT_CONCURRENCY

    @property
    def threads(self) -> int:
        """torch threads per trial: its CPU share, at least one."""
        return max(1, int(self.cpus_per_trial))

    def replace(self, **changes: Any) -> RunOptions:
        return dataclasses.replace(self, **changes)

    __repr__ = repr_non_default


_DEFINITION = tuple(f.name for f in fields(StudyDefinition))
_RUN = tuple(f.name for f in fields(RunOptions))
#: the settings a resumed study may change: its run options; every definition field stays as created
RESUMABLE = tuple(n for n in _RUN if n != "run_dir")


def _split(flat: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Flat settings fields as (definition fields, run option fields); an unknown name is an error."""
    unknown = sorted(set(flat) - set(_DEFINITION) - set(_RUN))
    if unknown:
        raise ConfigError(unknown[0], "not a study setting")
    return {k: v for k, v in flat.items() if k in _DEFINITION}, {k: v for k, v in flat.items() if k in _RUN}


@dataclass(frozen=True, init=False)
class StudySettings:
    """A study's :class:`StudyDefinition` and one run's :class:`RunOptions`, read as one.

    Built from the two parts, or from their fields flat (``StudySettings(name=..., space=...,
    storage=..., run_dir=..., trials=...)``); every field of either part reads as an
    attribute (``settings.backbone``, ``settings.runner``). :meth:`to_dict` is the one flat
    JSON form of ``settings.json``; :meth:`resume` keeps the definition and takes a new run's
    options.
    """

    definition: StudyDefinition
    run: RunOptions

    def __init__(self, *, definition: StudyDefinition | None = None, run: RunOptions | None = None, **fields: Any):
        own, options = _split(fields)
        if definition is None:
            definition = StudyDefinition(**own)
        elif own:
            definition = definition.replace(**own)
        if run is None:
            run = RunOptions(**options)
        elif options:
            run = run.replace(**options)
        object.__setattr__(self, "definition", definition)
        object.__setattr__(self, "run", run)

    def __getattr__(self, name: str) -> Any:  # only for names that are not the dataclass's own
        if name in _DEFINITION:
            return getattr(self.definition, name)
        if name in _RUN:
            return getattr(self.run, name)
        raise AttributeError(f"{type(self).__name__!r} has no attribute {name!r}")

    def __getstate__(self) -> dict[str, Any]:  # pickles (Ray) without reaching __getattr__ first
        return {"definition": self.definition, "run": self.run}

    def __setstate__(self, state: dict[str, Any]) -> None:
        object.__setattr__(self, "definition", state["definition"])
        object.__setattr__(self, "run", state["run"])

    @property
    def concurrency(self) -> int:
        return self.run.concurrency

    @property
    def threads(self) -> int:
        return self.run.threads

    @property
    def multi_objective(self) -> bool:
        return self.definition.multi_objective

    @property
    def cost_keys(self) -> list[str]:
        """The cost attributes (``costs`` keys: ``params``, ``macs``, ...) of the objectives after top-1."""
        return [record.OBJECTIVES[name][0] for name in self.objectives[1:]]

    @property
    def directions(self) -> list[str]:
        return [record.OBJECTIVES[o][1] for o in self.objectives]

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
        """These settings with some fields (of either part) changed, validated again."""
        return StudySettings(definition=self.definition, run=self.run, **changes)

    def resume(self, **given: Any) -> StudySettings:
        """The settings of a resumed run: this definition, and these run options with the
        ``given`` ones (None: not given; :meth:`RunOptions.resumed`)."""
        return StudySettings(definition=self.definition, run=self.run.resumed(**given))

    def to_dict(self) -> dict[str, Any]:
        """The JSON form, as written into ``settings.json`` and the study's ``settings``
        attribute: both parts' fields, flat; ``storage`` without its password
        (:func:`study.storage.public_url`), so a resumed study connects with the password
        given again, from the environment or from the database client's own files, and
        never finds one written down."""
        out: dict[str, Any] = {}
        for part in (self.definition, self.run):
            for f in fields(part):
                v = getattr(part, f.name)
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
        unknown = sorted(set(data) - set(_DEFINITION) - set(_RUN))
        if unknown:
            raise ConfigError("settings", f"unknown key {unknown[0]!r}")
        d = dict(data)
        d.setdefault("seed_mode", "fixed")  # studies recorded before per-trial seeds ran with one seed
        if "objectives" in d:
            d["objectives"] = tuple(d["objectives"])
        return cls(**d)

    def __repr__(self) -> str:
        definition = self.definition
        if public_url(definition.storage) != definition.storage:
            definition = definition.replace(storage=redact(definition.storage))
        return f"StudySettings({repr_non_default(definition)}, {repr_non_default(self.run)})"
