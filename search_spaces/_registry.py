"""The space registry: names (and ``path/to/file.py:function``) resolved to :class:`Space`.

A space is a define-by-run function over an :class:`optuna.Trial` and the study's
:class:`~search_spaces.SpaceContext`::

    def define(trial, ctx) -> TrialConfig

It samples what it searches (conditional parameters come for free: ``k`` only where a stage
uses ECA, ``r`` only where it uses SE) and builds the full :class:`~study.config.TrialConfig`
with ``ctx.config(stages)``. :meth:`Space.suggest` calls it and records, on the trial, the
config (user attribute ``config``) and the resolved per-stage description (``stages``: the
channel count C each stage's attention acts on and its parameters, including ECA's resolved
``k``), via :func:`study.models.describe_stages`. A space written the old way
(``define(trial, *, backbone, ..., **settings)``) is adapted (:func:`search_spaces.adapt`).
"""

from __future__ import annotations

import importlib.util
import inspect
import re
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from search_spaces._context import SpaceContext, adapt
from study import record
from study.config import TrialConfig
from study.registry import Registry
from study.validate import ConfigError

if TYPE_CHECKING:
    import optuna

__all__ = [
    "Budget",
    "SpaceInfo",
    "SpaceOption",
    "Space",
    "register_space",
    "declared_options",
    "get_space",
    "list_spaces",
    "space_names",
]


@dataclass(frozen=True, kw_only=True)
class Budget:
    """A space's default budget: how many finished trials, of how many epochs each."""

    trials: int
    epochs: int

    def __post_init__(self) -> None:
        for name in ("trials", "epochs"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"budget {name}: must be an integer >= 1, got {value!r}")

    def __str__(self) -> str:
        return f"{self.trials} trials x {self.epochs} epochs"


@dataclass(frozen=True)
class SpaceInfo:
    """What ``--list-spaces`` prints: name, one-line description and default budget.

    ``sampler`` is the space's default sampler ("grid" for a grid space; a name of the
    runners' sampler registry, checked when a study is defined). ``budget`` is the
    default budget of its default design (``default_design``, "search" for most spaces);
    ``budgets`` names the other designs it supports (e.g. "inference") with theirs.
    """

    name: str
    description: str
    budget: Budget
    sampler: str = "tpe"
    budgets: Mapping[str, Budget] = field(default_factory=dict)
    default_design: str = "search"

    @property
    def designs(self) -> tuple[str, ...]:
        return (self.default_design, *sorted(self.budgets))

    def budget_for(self, design: str) -> Budget:
        """The default budget of ``design``; a ValueError names the designs the space has."""
        if design == self.default_design:
            return self.budget
        if design not in self.budgets:
            raise ConfigError("design", f"space {self.name!r} has no {design!r} design (its designs: {', '.join(self.designs)})")
        return self.budgets[design]

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"space name: expected a non-empty string, got {self.name!r}")
        if not isinstance(self.sampler, str) or not self.sampler:
            raise ValueError(f"space {self.name!r}: sampler must name a sampler, got {self.sampler!r}")


@dataclass(frozen=True, kw_only=True)
class SpaceOption:
    """A command-line option a space declares: the study CLI makes ``flag`` from it and hands
    the value, parsed, to the space as ``options[key]`` (its context's ``options``), without
    knowing the space.

    ``help`` says what the value is (the CLI prefixes the spaces that take it); ``parse``
    turns the flag's text into the value (a ``ValueError`` names the problem). ``required``:
    the error when the space runs without the flag (None: optional). ``elsewhere``: the error
    when another space is given it. ``on_resume``: the error when the flag is given with
    ``--resume`` (None: a resumed study keeps the value it was created with, and another one
    is refused). A space whose options need more than parsing (a workflow of the study
    CLI, e.g. reading another study) has a preparation there, registered by the space's name.
    """

    key: str
    flag: str
    help: str
    metavar: str = "VALUE"
    parse: Callable[[str], Any] = str
    required: str | None = None
    elsewhere: str | None = None
    on_resume: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.key, str) or not self.key.isidentifier():
            raise ValueError(f"space option key: expected an identifier, got {self.key!r}")
        if not isinstance(self.flag, str) or not re.fullmatch(r"--[a-z][a-z0-9\-]*", self.flag):
            raise ValueError(f"space option {self.key!r}: flag must look like --name, got {self.flag!r}")
        if not callable(self.parse):
            raise ValueError(f"space option {self.key!r}: parse must be callable, got {self.parse!r}")


#: ``define(trial, ctx) -> TrialConfig``: one trial's config, sampled.
DefineFn = Callable[..., TrialConfig]
#: ``references(ctx) -> [(name, params), ...]``: trials enqueued first.
ReferencesFn = Callable[..., Sequence[tuple[str, Mapping[str, Any]]]]
#: ``grid(ctx) -> {param: [values, ...]}``: the search space of a grid sampler.
GridFn = Callable[..., Mapping[str, Sequence[Any]]]


@dataclass(frozen=True)
class Space:
    """A registered (or user) space: its info, its define-by-run function, and optionally
    the reference points it enqueues first and the grid a grid sampler walks (each a function
    of the :class:`SpaceContext`, or written the old way: :func:`search_spaces.adapt`)."""

    info: SpaceInfo
    define: DefineFn
    references: ReferencesFn | None = field(default=None, repr=False)
    grid: GridFn | None = field(default=None, repr=False)
    options: tuple[SpaceOption, ...] = ()

    @property
    def name(self) -> str:
        return self.info.name

    def suggest(self, trial: optuna.Trial, ctx: SpaceContext) -> TrialConfig:
        """Run the space on ``trial`` and record ``config`` and ``stages`` on it."""
        self.info.budget_for(ctx.design)  # a design the space has
        config = adapt(self.define, before=1)(trial, ctx)
        if not isinstance(config, TrialConfig):
            raise TypeError(f"space {self.name!r}: define() must return a TrialConfig, got {type(config).__name__}")
        from study.models import describe_stages  # torch, when a trial is drawn

        stages = [s.to_dict() for s in describe_stages(config.arch, config.proxy.resolution)]  # as the trainer builds it
        trial.set_user_attr(record.CONFIG, config.to_dict())
        trial.set_user_attr(record.STAGES, stages)
        return config

    def reference_points(self, ctx: SpaceContext) -> list[tuple[str, dict[str, Any]]]:
        if self.references is None:
            return []
        return [(str(n), dict(p)) for n, p in adapt(self.references, before=0)(ctx)]

    def grid_space(self, ctx: SpaceContext) -> dict[str, list[Any]] | None:
        if self.grid is None:
            return None
        return {k: list(v) for k, v in adapt(self.grid, before=0)(ctx).items()}


_SPACES: Registry[Space] = Registry("space", plural="", hint=", or path/to/file.py:function",
                                    same=lambda a, b: a.define is b.define)
_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_\-]*$")


def register_space(
    name: str,
    *,
    description: str,
    budget: Budget,
    sampler: str = "tpe",
    references: ReferencesFn | None = None,
    grid: GridFn | None = None,
    designs: Mapping[str, Budget] | None = None,
    default_design: str = "search",
    options: Sequence[SpaceOption] = (),
) -> Callable[[DefineFn], DefineFn]:
    """Decorator: register ``define`` as the space ``name``. ``designs`` names the study
    designs it supports besides "search" (its context's ``design``), each with
    its default budget; ``options`` are the command-line options it takes
    (:class:`SpaceOption`). A flag another space declares must carry the same key."""
    if not isinstance(name, str) or not _NAME.match(name):
        raise ValueError(f"space name: expected letters, digits, '_' or '-', got {name!r}")
    info = SpaceInfo(name, description, budget, sampler, dict(designs or {}), default_design)
    if sampler == "grid" and grid is None:
        raise ValueError(f"space {name!r}: sampler 'grid' needs a grid function")
    options = tuple(options)
    for option in options:
        if not isinstance(option, SpaceOption):
            raise ValueError(f"space {name!r}: options must be SpaceOption, got {option!r}")
        other = declared_options().get(option.flag)
        if other is not None and other.key != option.key:
            raise ValueError(f"space {name!r}: {option.flag} is another space's option for {other.key!r}, not {option.key!r}")
    if len({o.flag for o in options}) != len(options) or len({o.key for o in options}) != len(options):
        raise ValueError(f"space {name!r}: each option needs its own flag and key")

    def deco(fn: DefineFn) -> DefineFn:
        _SPACES.register(name, Space(info, fn, references, grid, options))
        return fn

    return deco


def list_spaces() -> list[SpaceInfo]:
    """Every registered space's info, sorted by name."""
    return [space.info for _, space in _SPACES.items()]


def space_names() -> list[str]:
    """The registered spaces' names, sorted."""
    return _SPACES.names()


def declared_options() -> dict[str, SpaceOption]:
    """Every command-line option the registered spaces declare, by flag (the first
    declaration of a flag that several spaces take), in the order the spaces are sorted."""
    out: dict[str, SpaceOption] = {}
    for _, space in _SPACES.items():
        for option in space.options:
            out.setdefault(option.flag, option)
    return out


#: budget of a user space that does not set ``fn.budget``
USER_BUDGET = Budget(trials=10, epochs=5)


def get_space(name_or_path: str) -> Space:
    """A registered space by name, or a user's ``path/to/file.py:function``.

    A user function may carry ``budget`` (a :class:`Budget`), ``references`` and ``grid``
    attributes; its description is the first line of its docstring. Raises ``ValueError``
    naming the valid spaces, the missing file or the missing function.
    """
    if not isinstance(name_or_path, str) or not name_or_path:
        raise ConfigError("space", f"expected a name or path/to/file.py:function, got {name_or_path!r}")
    if name_or_path in _SPACES or ":" not in name_or_path or not name_or_path.split(":", 1)[0].endswith(".py"):
        try:
            return _SPACES.get(name_or_path)
        except ValueError as exc:
            raise ConfigError("space", f"{exc}") from None
    path_text, fn_name = name_or_path.rsplit(":", 1)
    path = Path(path_text)
    if not path.is_file():
        raise ConfigError("space", f"no such file {path_text!r} (in {name_or_path!r})")
    if not fn_name.isidentifier():
        raise ConfigError("space", f"{fn_name!r} is not a function name (in {name_or_path!r})")
    module_name = f"_user_space_{abs(hash(str(path.resolve())))}"
    module = sys.modules.get(module_name)  # imported once per process (a file may register spaces)
    if module is None:
        try:
            spec = importlib.util.spec_from_file_location(module_name, path)
            assert spec is not None and spec.loader is not None
            module = importlib.util.module_from_spec(spec)
            sys.modules[module_name] = module
            spec.loader.exec_module(module)
        except Exception as exc:  # the user's file: report what failed on one line
            sys.modules.pop(module_name, None)
            raise ConfigError("space", f"cannot import {path_text!r}: {type(exc).__name__}: {exc}") from None
    fn = getattr(module, fn_name, None)
    if not callable(fn):
        raise ConfigError("space", f"{path_text!r} has no function {fn_name!r}")
    doc = inspect.getdoc(fn) or f"user space {fn_name} from {path_text}"
    budget = getattr(fn, "budget", USER_BUDGET)
    if not isinstance(budget, Budget):
        raise ConfigError("space", f"{fn_name}.budget must be a search_spaces.Budget, got {budget!r}")
    grid = getattr(fn, "grid", None)
    info = SpaceInfo(f"{path.stem}.{fn_name}", doc.splitlines()[0], budget, "grid" if grid is not None else "tpe")
    return Space(info, fn, getattr(fn, "references", None), grid)
