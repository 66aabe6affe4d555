"""A study's settings, each declared once: its type and default, its help, its flag, and
whether it belongs to the study's *definition* (fixed when the study is created, stored,
compared on ``--resume``) or to *one run* (given anew by every run), as Ray Tune keeps
TuneConfig apart from RunConfig. Frozen, keyword-only, validated eagerly
(:mod:`study.validate`), one flat JSON form.

The study CLI makes its flags and help from these declarations (:class:`Setting`,
:mod:`runners._setting`), maps
errors about a field to the flag that sets it, and checks a resumed study's flags against
its stored definition field by field. Values nobody gave come from one order of defaults,
the same for Python and the command line (:mod:`runners._defaults`).

``runs/<name>/settings.json`` holds :meth:`StudySettings.to_dict`; ``--resume`` reads it
back with :meth:`StudySettings.from_dict`, keeps the definition and takes the new run's
options (:meth:`StudySettings.resume`). A new setting is one field here (and its test).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

from runners._algorithms import (
    MULTI_OBJECTIVE_PRUNERS,
    MULTI_OBJECTIVE_SAMPLERS,
    PRUNER_REGISTRY,
    PRUNERS,
    SAMPLER_REGISTRY,
    SAMPLERS,
)
from runners._defaults import DEFAULT_CONCURRENCY, DESIGNS, RUNNERS, SEED_MODES, complete
from runners._setting import (
    DEFINITION,
    DESIGN,
    OPTUNA,
    RESOURCES,
    RUN,
    WHAT,
    WHERE,
    Setting,
    by_design,
    comma_list,
    designs_help,
    number_at_least,
    setting,
    setting_of,
)
from search_spaces import SpaceContext
from study import record
from study.catalogue import STEMS, backbone_names, backbone_plan
from study.config import ProxySpec, Recipe
from study.storage import check_storage_url, public_url, redact
from study.validate import ConfigError, check_bool, check_choice, check_int, check_number, check_str

__all__ = ["StudySettings", "Setting", "setting_of", "DEFINITION", "RUN", "RESUMABLE", "RUNNER_FIELDS", "DEFINITION_FIELDS",
           "RUN_FIELDS"]

_COUNT, _NATURAL = number_at_least(1, integer=True), number_at_least(0, integer=True)
_BUDGET = "the space's budget for the design (see --list-spaces)"


@dataclass(frozen=True, init=False)
class StudySettings:
    """A study's settings: its definition and one run's options, every field declared once.

    ``StudySettings(space="eca_kmap", design="inference", trials=40, runner="local")`` is a
    complete study: what is not given comes from one order of defaults
    (:mod:`runners._defaults`: the field's default, the space, the design, ...), the same
    as ``python -m study.run`` with the same flags. A ``proxy`` or ``recipe`` given as a
    mapping changes those fields of the default one. :meth:`to_dict` is the one flat JSON form
    of ``settings.json``; :meth:`resume` keeps the definition and takes a new run's options;
    :meth:`space_context` is what the space is given for a trial.
    """

    # ------------------------------------------------------------------ the definition
    space: str = setting(part=DEFINITION, group=WHAT, flag="--space",
                         help="a registered space (see --list-spaces) or path/to/file.py:function")
    name: str = setting(part=DEFINITION, group=WHAT, flag="--name", default_text="the space's name, numbered if taken",
                        help="the study's name and its folder under --out")
    storage: str = setting(part=DEFINITION, group=WHERE, flag="--storage", default_text="sqlite:///<out>/<name>/study.db",
                           help="Optuna storage URL: postgresql://user@host/db for a cluster, or journal:PATH for Optuna's journal "
                                "file on a shared filesystem. A password is never written down: give it again on --resume, or in "
                                "STUDY_STORAGE_PASSWORD, PGPASSWORD or ~/.pgpass")
    seed: int = setting(0, part=DEFINITION, group=WHAT, flag="--seed", parse=_NATURAL, help="seed of the sampler and of the trials' seeds")
    backbone: str = setting("resnet18", part=DEFINITION, group=WHAT, flag="--backbone",
                            help=f"backbone ({', '.join(backbone_names())}); the space's preparation may choose another")
    stem: str = setting("lowres", part=DEFINITION, group=WHAT, flag="--stem",
                        help=f"{' or '.join(STEMS)} (lowres: for low-resolution proxies)")
    width: float | None = setting(None, part=DEFINITION, group=WHAT, flag="--width", parse=float, default_text="the space decides",
                                  help="fix the width multiplier, in [0.25, 2.0]")
    proxy: ProxySpec = setting(part=DEFINITION, group=WHAT, said_as="--set proxy", factory=ProxySpec,
                               help="the proxy data: --proxy, --data and --set proxy.FIELD=VALUE set it")
    recipe: Recipe = setting(part=DEFINITION, group=WHAT, said_as="--set recipe", factory=Recipe,
                             help="the training recipe: --epochs and --set recipe.FIELD=VALUE set it")
    sampler: str = setting("tpe", part=DEFINITION, group=OPTUNA, flag="--sampler", choices=SAMPLERS,
                           default_text=lambda: "the space's (tpe; grid for a grid space), the design's (inference: random); nsga2 "
                                                f"for several objectives, which take {', '.join(MULTI_OBJECTIVE_SAMPLERS)}",
                           help="the Optuna sampler")
    sampler_options: Mapping[str, int] = setting(part=DEFINITION, group=OPTUNA, said_as="--sampler", factory=dict,
                                                 help="the sampler's options (their flags: the sampler registry's)")
    pruner: str = setting("pareto", part=DEFINITION, group=OPTUNA, flag="--pruner", choices=PRUNERS,
                          default_text=lambda: f"{by_design('pruner', 'pareto')}; several objectives take "
                                               f"{', '.join(MULTI_OBJECTIVE_PRUNERS)}",
                          help="the Optuna pruner; pareto prunes a trial whose best top-1 at an epoch is below the --pruner-percentile "
                               "of the finished trials that cost no more (in the study's cost objectives; all of them for one "
                               "objective) at that epoch")
    pruner_options: Mapping[str, int] = setting(part=DEFINITION, group=OPTUNA, said_as="--pruner", factory=dict,
                                                help="the pruner's options (their flags: the pruner registry's)")
    objectives: tuple[str, ...] = setting(("top1",), part=DEFINITION, group=WHAT, flag="--objectives", parse=comma_list,
                                          metavar="top1[,COST]", default_text="top1",
                                          help=f"top1, or top1 plus costs to minimise ({', '.join(list(record.OBJECTIVES)[1:])}), "
                                               "e.g. top1,macs")
    design: str = setting("search", part=DEFINITION, group=DESIGN, flag="--design", choices=tuple(DESIGNS),
                          default_text="the space's (search; confirm for kmap_confirm)", help=designs_help())
    replicates: int = setting(1, part=DEFINITION, group=DESIGN, flag="--replicates", parse=_COUNT,
                              default_text=lambda: by_design("replicates", 1), help="runs of every configuration, each with its own seed")
    seed_mode: str = setting("per_trial", part=DEFINITION, group=DESIGN, flag="--seed-mode", choices=SEED_MODES,
                             default_text=lambda: by_design("seed_mode", "per_trial"),
                             help="per_trial: each trial trains from a seed derived from --seed and its number; paired: replicate r "
                                  "of every configuration from one seed derived from r; fixed: every trial from --seed")
    space_options: Mapping[str, Any] = setting(part=DEFINITION, group=WHAT, said_as="the space's options", factory=dict,
                                               help="the space's own settings (its declared options' flags)")
    # ------------------------------------------------------------------ one run's options
    run_dir: str = setting(part=RUN, group=WHERE, said_as="--out", default_text="<out>/<name>",
                           help="the study's folder: --out holds it")
    trials: int = setting(part=RUN, group=DESIGN, flag="--trials", parse=_COUNT, default_text=_BUDGET,
                          help="configurations the study goes on to finish, each run --replicates times")
    timeout: float | None = setting(None, part=RUN, group=DESIGN, flag="--timeout", parse=float, default_text="none",
                                    help="start no trial after this many seconds")
    runner: str = setting("ray", part=RUN, group=WHERE, flag="--runner", choices=RUNNERS,
                          help="ray: Ray Tune; local: in-process, one trial at a time")
    address: str | None = setting(None, part=RUN, group=WHERE, flag="--address", runner_specific=True,
                                  default_text="start a local Ray for the run", help="an existing Ray cluster: 'auto' or HOST:PORT")
    cpus_per_trial: float = setting(1.0, part=RUN, group=RESOURCES, flag="--cpus-per-trial", parse=number_at_least(0),
                                    help="CPUs per trial (fractions allowed); also torch's threads")
    gpus_per_trial: float = setting(0.0, part=RUN, group=RESOURCES, flag="--gpus-per-trial", parse=number_at_least(0),
                                    runner_specific=True, help="GPUs per trial (fractions allowed)")
    max_concurrent: int | None = setting(None, part=RUN, group=RESOURCES, flag="--max-concurrent", parse=_COUNT, runner_specific=True,
                                         default_text=f"{DEFAULT_CONCURRENCY} under Ray, 1 with --runner local", help="trials at once")
    max_failures: int = setting(1, part=RUN, group=RESOURCES, flag="--max-failures", parse=_NATURAL,
                                help="retries of a trial whose Ray worker died")
    device: str | None = setting(None, part=RUN, group=RESOURCES, flag="--device", default_text="cuda when available, else cpu",
                                 help="torch device for training")
    stage_data: bool = setting(False, part=RUN, group=RESOURCES, flag="--stage-data", switch=True, runner_specific=True,
                               default_text="every node reads the cache at its path, checked first",
                               help="ship the proxy cache to every Ray node's local disk")

    def __init__(self, *, prepared: Mapping[str, Any] | None = None, **given: Any):
        unknown = sorted(set(given) - set(_FIELDS))
        if unknown:
            raise ConfigError(unknown[0], "not a study setting")
        for name, value in complete(given, _DECLARED, prepared=prepared).items():
            object.__setattr__(self, name, value)
        self._check()

    # ------------------------------------------------------------------ validation

    def _check(self) -> None:
        for name in ("name", "space", "storage", "backbone", "stem", "run_dir"):
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
        for name, cls in (("proxy", ProxySpec), ("recipe", Recipe)):
            value = getattr(self, name)
            if isinstance(value, Mapping):
                object.__setattr__(self, name, cls.from_dict(value, name))
            elif not isinstance(value, cls):
                raise ConfigError(name, f"expected {cls.__name__}, got {type(value).__name__}")
        self._check_objectives()
        self._complete_algorithms()
        self._check_run()

    def _check_design(self) -> None:
        if self.replicates > 1 and self.seed_mode == "fixed":
            raise ConfigError("replicates", f"{self.replicates} replicates of a configuration need their own seeds "
                              f"({{seed_mode}} per_trial or paired), got seed_mode {self.seed_mode!r}", refs=["seed_mode"])

    def _check_model(self) -> None:
        try:
            backbone_plan(self.backbone)
        except ValueError as exc:
            raise ConfigError("backbone", str(exc)) from None
        check_choice(self.stem, "stem", STEMS)
        if self.width is not None:
            check_number(self.width, "width", 0.25, 2.0, what="in [0.25, 2.0]")

    def _check_objectives(self) -> None:
        objectives = tuple(self.objectives) if isinstance(self.objectives, (list, tuple)) else (self.objectives,)
        if not objectives or objectives[0] != "top1" or len(set(objectives)) != len(objectives):
            raise ConfigError("objectives", f"must start with top1 and not repeat, got {','.join(map(str, objectives))!r}")
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

    def _check_run(self) -> None:
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

    # ------------------------------------------------------------------ derived

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
    def runs(self) -> int:
        """Finished trials the study goes on to: every configuration ``replicates`` times."""
        return self.trials * self.replicates

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

    @property
    def definition(self) -> dict[str, Any]:
        """What the study is: the definition's fields (as :meth:`to_dict` writes them)."""
        return {k: v for k, v in self.to_dict().items() if k in DEFINITION_FIELDS}

    def space_context(self, *, number: int | None = None, replicate: int | None = None) -> SpaceContext:
        """What the space is given for trial ``number`` (replicate ``replicate``): the seed is
        the trial's own, :func:`study.record.trial_seed` of its number (seed mode
        "per_trial") or of its replicate (seed mode "paired"), the study seed otherwise; the
        options are the space's own settings (``space_options``)."""
        seed = self.seed
        if self.seed_mode == "per_trial" and number is not None:
            seed = record.trial_seed(self.seed, number)
        elif self.seed_mode == "paired" and replicate is not None:
            seed = record.trial_seed(self.seed, replicate)
        return SpaceContext(backbone=self.backbone, stem=self.stem, width=self.width, proxy=self.proxy, recipe=self.recipe,
                            seed=seed, design=self.design, options=self.space_options)

    # ------------------------------------------------------------------ changes and the JSON form

    def replace(self, **changes: Any) -> StudySettings:
        """These settings with some fields changed, validated again."""
        return dataclasses.replace(self, **changes)

    def resume(self, **given: Any) -> StudySettings:
        """The settings of a resumed run: this definition, and these run options with the
        ``given`` ones (None: not given); a change of runner starts the runner-specific options
        afresh. A definition field is refused."""
        given = {k: v for k, v in given.items() if v is not None}
        kept = sorted(set(given) - set(RESUMABLE))
        if kept:
            raise ConfigError(kept[0], "a resumed study keeps its definition; this is not a run option")
        if given.get("runner", self.runner) != self.runner:
            given = {**{n: _DECLARED[n] for n in RUNNER_FIELDS}, **given}
        return self.replace(**given)

    def to_dict(self) -> dict[str, Any]:
        """The JSON form, as written into ``settings.json`` and the study's ``settings``
        attribute: every field, flat; ``storage`` without its password
        (:func:`study.storage.public_url`), so a resumed study connects with the password
        given again, from the environment or from the database client's own files, and
        never finds one written down."""
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
        unknown = sorted(set(data) - set(_FIELDS))
        if unknown:
            raise ConfigError("settings", f"unknown key {unknown[0]!r}")
        d = dict(data)
        d.setdefault("seed_mode", "fixed")  # studies recorded before per-trial seeds ran with one seed
        if "objectives" in d:
            d["objectives"] = tuple(d["objectives"])
        for name, spec in (("proxy", ProxySpec), ("recipe", Recipe)):
            if isinstance(d.get(name), Mapping):
                d[name] = spec.from_dict(d[name], name)
        return cls(**d)

    def __repr__(self) -> str:
        parts = [f"{n}={redact(v) if n == 'storage' else v!r}" for n in _FIELDS if (v := getattr(self, n)) != _DECLARED[n]]
        return f"StudySettings({', '.join(parts)})"


def _declared_default(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return None


_FIELDS = {f.name: f for f in fields(StudySettings)}
#: each field's own default (layer 1 of :mod:`runners._defaults`)
_DECLARED = {f.name: _declared_default(f) for f in fields(StudySettings)}
#: the fields of the study's definition, and of one run's options
DEFINITION_FIELDS = tuple(n for n, f in _FIELDS.items() if setting_of(f).part == DEFINITION)
RUN_FIELDS = tuple(n for n, f in _FIELDS.items() if setting_of(f).part == RUN)
#: the settings a resumed study may change: its run options; every definition field stays as created
RESUMABLE = tuple(n for n in RUN_FIELDS if n != "run_dir")
#: the runner-specific run options: a resumed run that changes the runner starts them afresh
RUNNER_FIELDS = tuple(n for n, f in _FIELDS.items() if setting_of(f).runner_specific)
