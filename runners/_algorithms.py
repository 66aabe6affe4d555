"""The samplers and pruners a study may use: one registry entry each.

An entry holds everything the harness knows about one sampler or pruner: the factory that
builds it, the integer options it takes (default, allowed range, help text, its command-line
flag, a different default in a study of several objectives) and whether it takes several
objectives. :class:`~runners.StudySettings` validates and completes its ``sampler_options``
and ``pruner_options`` from the entries, :func:`runners.make_sampler` and
:func:`runners.make_pruner` build through them, and the study CLI makes its ``--sampler`` and
``--pruner`` choices, their options' flags and their help from them: a new sampler, pruner or
option is an entry here and nothing else. (A space names its default sampler by name; the
name is checked against these entries when a study is defined.) A pruner of our own takes
its study defaults from its constructor's (:class:`~runners._pruners.ParetoPruner`).
"""

from __future__ import annotations

import inspect
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import optuna

from runners._pruners import ParetoPruner
from study.registry import Registry
from study.validate import ConfigError, check_int

__all__ = [
    "Option",
    "SamplerEntry",
    "PrunerEntry",
    "GridSampler",
    "SAMPLER_REGISTRY",
    "PRUNER_REGISTRY",
    "SAMPLERS",
    "PRUNERS",
    "SAMPLER_OPTIONS",
    "PRUNER_OPTIONS",
    "MULTI_OBJECTIVE_SAMPLERS",
    "MULTI_OBJECTIVE_PRUNERS",
    "MULTI_OBJECTIVE_PRUNER_OPTIONS",
    "check_int",
    "option_help",
    "option_flags",
]


@dataclass(frozen=True, kw_only=True)
class Option:
    """One integer option of a sampler or pruner.

    ``default`` is the study's default, ``multi_default`` the one of a study of several
    objectives (None: the same); a given value must lie in ``[lo, hi]`` (``hi`` None: no
    upper bound); ``help`` says what it does, and ``flag`` is the study CLI's flag that sets it
    (an option of the same name in several entries has one flag).
    """

    default: int
    help: str
    flag: str
    lo: int = 1
    hi: int | None = None
    multi_default: int | None = None

    def __post_init__(self) -> None:
        for value in (self.default, self.multi_default):
            if value is not None:
                check_int(value, "option default", self.lo, self.hi)

    def default_for(self, multi: bool) -> int:
        """The default in a study of one objective, or of several with ``multi``."""
        return self.multi_default if multi and self.multi_default is not None else self.default

    @property
    def range_text(self) -> str:
        """The allowed range as the help text says it ("1-99"), or "" when only bounded below."""
        return "" if self.hi is None else f"{self.lo}-{self.hi}"


@dataclass(frozen=True, kw_only=True)
class _Entry:
    """What sampler and pruner entries share: a name, the options taken (name -> :class:`Option`,
    in the order error messages list them) and whether it takes several objectives."""

    what: ClassVar[str] = "algorithm"
    name: str
    options: Mapping[str, Option] = field(default_factory=dict)
    multi_objective: bool = False

    def defaults(self, *, multi: bool = False) -> dict[str, int]:
        """The options' defaults in a study of one objective (or of several, ``multi``)."""
        return {k: o.default_for(multi) for k, o in self.options.items()}

    def complete(self, given: Mapping[str, Any], *, multi: bool = False) -> dict[str, int]:
        """``given`` checked against the options this entry takes and completed with their
        defaults; errors name the option as ``<sampler|pruner>_options.<option>``."""
        unknown = sorted(set(given) - set(self.options))
        if unknown:
            refs = [f"{self.what}_options.{o}" for o in self.options]
            takes = ", ".join("{" + r + "}" for r in refs) or "no options"
            raise ConfigError(f"{self.what}_options.{unknown[0]}", f"{self.what} {self.name!r} does not take option {unknown[0]!r} "
                              f"(it takes: {takes})", refs=refs)
        out = self.defaults(multi=multi)
        for k, v in given.items():
            option = self.options[k]
            out[k] = check_int(v, f"{self.what}_options.{k}", option.lo, option.hi)
        return out


#: ``factory(options, *, seed, grid)``: a sampler from its completed options, the study's
#: seed and the space's grid (None when the space defines none)
SamplerFactory = Callable[..., optuna.samplers.BaseSampler]
#: ``factory(options, *, epochs, costs)``: a pruner from its completed options, the epochs of
#: a trial (a step is an epoch) and the cost keys of the study's cost objectives
PrunerFactory = Callable[..., optuna.pruners.BasePruner]


@dataclass(frozen=True, kw_only=True)
class SamplerEntry(_Entry):
    """A sampler: its factory, options and capabilities (``needs_grid``: it walks the
    space's grid, so a space without one cannot use it)."""

    what: ClassVar[str] = "sampler"
    factory: SamplerFactory
    needs_grid: bool = False


@dataclass(frozen=True, kw_only=True)
class PrunerEntry(_Entry):
    """A pruner: its factory, options and whether it takes several objectives."""

    what: ClassVar[str] = "pruner"
    factory: PrunerFactory


class GridSampler(optuna.samplers.GridSampler):
    """Optuna's grid sampler without its ``study.stop()`` call when the grid is exhausted.

    That call only works inside ``study.optimize``; our runners ask and tell, and stop
    themselves once :meth:`is_exhausted` says so.
    """

    def after_trial(self, study: optuna.Study, trial: optuna.trial.FrozenTrial, state: optuna.trial.TrialState,
                    values: Sequence[float] | None) -> None:
        pass


def _constructor_default(cls: type, name: str) -> Any:
    """The default of keyword ``name`` of ``cls``'s constructor (a pruner of our own: its
    defaults are the study's)."""
    return inspect.signature(cls).parameters[name].default


_SAMPLER_STARTUP = Option(default=5, lo=0, help="random trials before the model", flag="--n-startup-trials")

#: the samplers, in the order the CLI lists them
_SAMPLER_ENTRIES = (
    # multivariate + group: TPE models the conditional parameters jointly per branch;
    # constant_liar keeps concurrent trials from sampling the same point.
    SamplerEntry(name="tpe", options={"startup": _SAMPLER_STARTUP}, multi_objective=True,
                 factory=lambda o, *, seed, grid: optuna.samplers.TPESampler(
                     seed=seed, n_startup_trials=o["startup"], multivariate=True, group=True, constant_liar=True)),
    SamplerEntry(name="random", multi_objective=True,
                 factory=lambda o, *, seed, grid: optuna.samplers.RandomSampler(seed=seed)),
    SamplerEntry(name="cmaes", options={"startup": _SAMPLER_STARTUP},
                 factory=lambda o, *, seed, grid: optuna.samplers.CmaEsSampler(
                     seed=seed, n_startup_trials=o["startup"], warn_independent_sampling=False)),
    SamplerEntry(name="qmc", multi_objective=True,
                 factory=lambda o, *, seed, grid: optuna.samplers.QMCSampler(seed=seed, warn_independent_sampling=False)),
    SamplerEntry(name="grid", multi_objective=True, needs_grid=True,
                 factory=lambda o, *, seed, grid: GridSampler(grid, seed=seed)),
    SamplerEntry(name="nsga2", multi_objective=True,
                 options={"population_size": Option(default=8, lo=2, help="the NSGA-II population", flag="--population-size")},
                 factory=lambda o, *, seed, grid: optuna.samplers.NSGAIISampler(seed=seed, population_size=o["population_size"])),
)

_PRUNER_WARMUP = "the first epoch at which a trial may be pruned"


def _wilcoxon(warmup: int) -> optuna.pruners.BasePruner:
    """Optuna's WilcoxonPruner (experimental in Optuna) at its default p-threshold 0.1, comparing
    from ``warmup`` epochs on (its ``n_startup_steps``), without the experimental warning."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.pruners.WilcoxonPruner(p_threshold=0.1, n_startup_steps=warmup)
_PRUNER_RUNG = {
    "min_resource": Option(default=1, help="epochs of the first rung", flag="--min-resource"),
    "reduction_factor": Option(default=3, lo=2, help="keep 1/factor per rung", flag="--reduction-factor"),
}

#: the pruners, in the order the CLI lists them
_PRUNER_ENTRIES = (
    PrunerEntry(name="median",
                options={"warmup": Option(default=2, lo=0, help=_PRUNER_WARMUP, flag="--pruner-warmup"),
                         "startup": Option(default=3, lo=0, help="trials finished before pruning starts", flag="--pruner-startup")},
                factory=lambda o, *, epochs, costs: optuna.pruners.MedianPruner(n_startup_trials=o["startup"], n_warmup_steps=o["warmup"])),
    PrunerEntry(name="sha", options=_PRUNER_RUNG,
                factory=lambda o, *, epochs, costs: optuna.pruners.SuccessiveHalvingPruner(
                    min_resource=o["min_resource"], reduction_factor=o["reduction_factor"])),
    PrunerEntry(name="hyperband", options=_PRUNER_RUNG,
                factory=lambda o, *, epochs, costs: optuna.pruners.HyperbandPruner(
                    min_resource=o["min_resource"], max_resource=epochs, reduction_factor=o["reduction_factor"])),
    # "pareto" compares a trial with the trials that cost no more, and it reaches the front
    # only by beating all of them: a higher bar for several objectives (measured:
    # benchmarks/pruning_efficiency.py, docs/benchmarks.md)
    PrunerEntry(name="pareto", multi_objective=True,
                options={"percentile": Option(default=int(_constructor_default(ParetoPruner, "percentile")), lo=1, hi=99,
                                              multi_default=75, help="prune below this percentile of the references' top-1",
                                              flag="--pruner-percentile"),
                         "warmup": Option(default=_constructor_default(ParetoPruner, "warmup"), lo=0, help=_PRUNER_WARMUP,
                                          flag="--pruner-warmup"),
                         "startup": Option(default=_constructor_default(ParetoPruner, "startup"), lo=0, flag="--pruner-startup",
                                           help="references (finished trials of lower or equal cost with a top-1 at the epoch) needed")},
                factory=lambda o, *, epochs, costs: ParetoPruner(percentile=o["percentile"], warmup=o["warmup"], startup=o["startup"],
                                                                 costs=costs)),
    # Optuna's WilcoxonPruner is built for a trial's value that is the mean over instances
    # (folds, problems, questions), each step a different one; here a step is an epoch and the
    # value the final top-1, so its signed-rank test compares a trial's learning curve with the
    # best trial's curve at the same epochs: autocorrelated steps, not exchangeable instances,
    # so its p-value is no error rate, only a rule "below the best curve at (nearly) every epoch
    # so far" (with p 0.1: at 4 or more epochs, 0.1 > 2^-4). One objective (it needs a best trial).
    PrunerEntry(name="wilcoxon",
                options={"warmup": Option(default=2, lo=2, help=_PRUNER_WARMUP, flag="--pruner-warmup")},
                factory=lambda o, *, epochs, costs: _wilcoxon(o["warmup"])),
    PrunerEntry(name="none", multi_objective=True, factory=lambda o, *, epochs, costs: optuna.pruners.NopPruner()),
)

SAMPLER_REGISTRY: Registry[SamplerEntry] = Registry("sampler")
PRUNER_REGISTRY: Registry[PrunerEntry] = Registry("pruner")
for _entry in _SAMPLER_ENTRIES:
    SAMPLER_REGISTRY.register(_entry.name, _entry)
for _entry in _PRUNER_ENTRIES:
    PRUNER_REGISTRY.register(_entry.name, _entry)

#: the samplers a study may use, in the order the CLI lists them
SAMPLERS: tuple[str, ...] = tuple(e.name for e in _SAMPLER_ENTRIES)

#: the pruners a study may use, in the order the CLI lists them
PRUNERS: tuple[str, ...] = tuple(e.name for e in _PRUNER_ENTRIES)
#: sampler -> its options' defaults (views of the entries)
SAMPLER_OPTIONS: dict[str, dict[str, int]] = {e.name: e.defaults() for e in _SAMPLER_ENTRIES}
#: pruner -> its options' defaults in a study of one objective
PRUNER_OPTIONS: dict[str, dict[str, int]] = {e.name: e.defaults() for e in _PRUNER_ENTRIES}
#: pruner -> the defaults that differ in a study of several objectives
MULTI_OBJECTIVE_PRUNER_OPTIONS: dict[str, dict[str, int]] = {
    e.name: diff for e in _PRUNER_ENTRIES
    if (diff := {k: v for k, v in e.defaults(multi=True).items() if v != e.defaults()[k]})
}
#: samplers that optimise several objectives
MULTI_OBJECTIVE_SAMPLERS: tuple[str, ...] = tuple(e.name for e in _SAMPLER_ENTRIES if e.multi_objective)
#: pruners that take several objectives (Optuna's own refuse them)
MULTI_OBJECTIVE_PRUNERS: tuple[str, ...] = tuple(e.name for e in _PRUNER_ENTRIES if e.multi_objective)


def option_flags(kind: str) -> dict[str, str]:
    """The options the ``kind`` ("sampler" or "pruner") entries take, by name, with their flag;
    an option of one name declared with two flags is an error."""
    out: dict[str, str] = {}
    for entry in {"sampler": _SAMPLER_ENTRIES, "pruner": _PRUNER_ENTRIES}[kind]:
        for name, option in entry.options.items():
            if out.setdefault(name, option.flag) != option.flag:
                raise ValueError(f"{kind} option {name!r} has two flags: {out[name]} and {option.flag}")
    return out


def option_help(kind: str, option: str) -> str:
    """The help text of the flag that sets ``option`` of the ``kind`` ("sampler" or
    "pruner") entries that take it, naming them and their defaults, e.g. "median / pareto:
    the first epoch at which a trial may be pruned (default: median 2, pareto 1)"; entries
    that say different things about the option are described one by one."""
    entries = {"sampler": _SAMPLER_ENTRIES, "pruner": _PRUNER_ENTRIES}[kind]
    taking = [e for e in entries if option in e.options]
    if not taking:
        raise ValueError(f"{kind} option {option!r}: no {kind} takes it")
    texts = list(dict.fromkeys(e.options[option].help for e in taking))
    if len(texts) > 1:
        return "; ".join(_describe([e], option) for e in taking)
    return _describe(taking, option)


def _describe(entries: Sequence[_Entry], option: str) -> str:
    """"a / b: <help> (<range>; default ...)" for entries that say the same about ``option``."""
    opts = [e.options[option] for e in entries]
    if len({(o.default, o.multi_default) for o in opts}) == 1:
        o = opts[0]
        default = f"default {o.default}" + ("" if o.multi_default is None else f", {o.multi_default} for several objectives")
    else:
        default = "default: " + ", ".join(f"{e.name} {o.default}" for e, o in zip(entries, opts))
    ranges = {o.range_text for o in opts}
    if len(ranges) == 1 and "" not in ranges:
        default = f"{ranges.pop()}; {default}"
    return f"{' / '.join(e.name for e in entries)}: {opts[0].help} ({default})"
