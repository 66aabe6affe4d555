"""The flags of ``python -m study.run``, made from the declarations: the study settings'
fields (:class:`runners.StudySettings`, each with its flag, help and default), the samplers'
and pruners' options (their registry entries) and the spaces' own options
(:class:`search_spaces.SpaceOption`); a few flags of the command itself (``--resume``,
``--out``, ``--plan``, ...). The same declarations say a settings error's field as the flag
that sets it (:func:`flag_table`, :func:`usage_error`), without a parser.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any

from runners._algorithms import option_flags, option_help
from runners._outcome import EXIT_STATUS_HELP
from runners._setting import DESIGN, OPTUNA, RESOURCES, WHAT, WHERE, number_at_least, setting_of
from runners._settings import StudySettings
from search_spaces import declared_options, get_space, space_names
from study.cli import ArgumentParser, UsageError, as_usage_error

if TYPE_CHECKING:  # annotations only
    from search_spaces import Space, SpaceOption

__all__ = ["PROG", "build_parser", "flag_table", "usage_error", "space_flags", "option_dest", "COMMAND_FLAGS", "PartFlag", "PART_FLAGS"]

PROG = "python -m study.run"


@dataclass(frozen=True, kw_only=True)
class PartFlag:
    """A flag of the command that sets part of a study setting: ``path`` the part it sets (a
    resumed study compares the flag's value with it; None: all of a setting, which a resumed
    study refuses, ``words`` naming what it keeps); ``dest`` and the rest are argparse's."""

    flag: str
    dest: str
    path: str | None
    words: str
    group: str
    help: str
    kwargs: Mapping[str, Any] = field(default_factory=dict)

    def stored(self, settings: StudySettings) -> Any:
        """The stored value this flag's part reads (``path``)."""
        value: Any = settings
        for part in (self.path or "").split("."):
            value = getattr(value, part)
        return value


#: the flags that set a setting's parts: the proxy (a preset, a cache folder, its fields), the recipe (its epochs, its fields)
PART_FLAGS = (
    PartFlag(flag="--epochs", dest="epochs", path="recipe.epochs", words="epochs", group=DESIGN,
             help="epochs per trial (default: the space's budget)", kwargs={"type": number_at_least(1, integer=True)}),
    PartFlag(flag="--proxy", dest="proxy", path=None, words="proxy", group=WHAT,
             help="a proxy preset (study.data.list_proxies(); default: a 10-class synthetic proxy at 32 px)"),
    PartFlag(flag="--data", dest="data", path="proxy.data", words="data", group=WHAT,
             help="a cache folder written by `python -m study.data prepare`"),
    PartFlag(flag="--set", dest="overrides", path=None, words="proxy and recipe", group=WHAT,
             help="override one field: proxy.<field>=V or recipe.<field>=V (JSON values), repeatable",
             kwargs={"action": "append", "default": [], "metavar": "KEY=VALUE"}),
)

#: the command's own flags an error may name (not study settings)
COMMAND_FLAGS = {"resume": "--resume", "sigma": "--sigma", "effect": "--effect", "mlflow": "--mlflow", "out": "--out",
                 "mlflow_system_metrics": "--mlflow-system-metrics"}


def option_dest(kind: str, name: str) -> str:
    """Where a sampler's or pruner's option flag lands: its settings path ``<kind>_options.<name>``."""
    return f"{kind}_options.{name}"


def _default_text(f: Any) -> str | None:
    s = setting_of(f)
    if s.default_text is not None:
        return s.default_text() if callable(s.default_text) else s.default_text
    if f.default in (None, False, dataclasses.MISSING):
        return None
    return str(f.default) if not isinstance(f.default, tuple) else ",".join(f.default)


def _add_settings(groups: dict[str, Any]) -> None:
    """Every settings field with a flag of its own: its type, choices and help (with its default)."""
    for f in fields(StudySettings):
        s = setting_of(f)
        if s.flag is None:
            continue
        default = _default_text(f)
        help_text = s.help + (f" (default: {default})" if default else "")
        kwargs: dict[str, Any] = {"dest": f.name, "help": help_text}
        if s.switch:
            kwargs.update(action="store_true", default=None)
        else:
            kwargs.update({k: v for k, v in (("type", s.parse), ("choices", s.choices), ("metavar", s.metavar)) if v is not None})
        groups[s.group].add_argument(s.flag, **kwargs)


def _add_algorithm_options(g: Any) -> None:
    """The samplers' and pruners' options, each a flag as its registry entry declares."""
    for kind in ("sampler", "pruner"):
        for name, flag in option_flags(kind).items():
            g.add_argument(flag, dest=option_dest(kind, name), type=int, metavar="N", help=option_help(kind, name))


def space_flags() -> dict[str, tuple[SpaceOption, tuple[str, ...]]]:
    """Every option the registered spaces declare, by flag, with the spaces that take it."""
    return {flag: (option, tuple(n for n in space_names() if any(o.flag == flag for o in get_space(n).options)))
            for flag, option in declared_options().items()}


def _add_space_flags(p: ArgumentParser) -> None:
    """The options the registered spaces declare, each as its flag, help prefixed by the
    spaces that take it; the value lands in ``args.<key>`` (None when not given)."""
    taken = set(vars(p.parse_args([])))
    g = p.add_argument_group("the spaces' own options")
    for flag, (option, owners) in space_flags().items():
        if option.key in taken:
            raise ValueError(f"space option {option.key!r} ({flag}): the command line already has a value of that name")
        g.add_argument(flag, dest=option.key, metavar=option.metavar, help=f"{', '.join(owners)}: {option.help}")


def build_parser() -> ArgumentParser:
    """The flags of ``python -m study.run`` (see the module doc)."""
    p = ArgumentParser(
        prog=PROG,
        description="Run a search space as an Optuna study (sampling and pruning by Optuna, trials on Ray Tune or locally).",
        epilog=EXIT_STATUS_HELP,
    )
    p.add_argument("--list-spaces", action="store_true", help="print every space's name, description and default budget, and exit")
    p.add_argument("--resume", action="store_true",
                   help="continue the study --name (or the latest of --space): trials left running are re-run")
    groups = {name: p.add_argument_group(name) for name in (WHERE, DESIGN, WHAT, OPTUNA, RESOURCES)}
    groups[None] = p  # type: ignore[index]  # the settings without a group: at the top
    groups[WHERE].add_argument("--out", default="runs", help="folder that holds the study folders (default: runs)")
    groups[WHERE].add_argument("--mlflow", metavar="URI", help="also log the study to MLflow (pip install -e '.[mlflow]'): "
                               "sqlite:///PATH/mlflow.db or http://HOST:PORT (a tracking server); one run per trial, nested under "
                               "the study's run; the Optuna storage stays the record. An option of this run: give it again on --resume")
    groups[WHERE].add_argument("--mlflow-system-metrics", action="store_true", help="with --mlflow: also log the driver node's CPU, "
                               "memory, disk, network and GPU (where present) use to the study's run, every 10 s (MLflow's system metrics)")
    g = groups[DESIGN]
    g.add_argument("--plan", action="store_true", help="print the trials and trial-epochs the k-vs-C test needs for power 0.8 "
                   "(and what this budget detects), and exit; measures the noise with a short pilot unless --sigma is given")
    g.add_argument("--sigma", type=number_at_least(0), help="--plan: the seed-to-seed noise of top-1 per trial, points (default: a pilot)")
    g.add_argument("--effect", type=number_at_least(0), default=0.5, help="--plan: the k effect to detect, points (default 0.5)")
    for part in PART_FLAGS:
        groups[part.group].add_argument(part.flag, dest=part.dest, help=part.help, **part.kwargs)
    _add_settings(groups)
    _add_algorithm_options(groups[OPTUNA])
    groups[RESOURCES].add_argument("--quiet", action="store_true",
                                   help="one line per trial (when it ends), no line per epoch, and the summary")
    groups[RESOURCES].add_argument("--verbose", action="store_true",
                                   help="also Ray's own lines: its start-up, its warnings, the trials' output")
    _add_space_flags(p)
    return p


def flag_table(space: Space | None = None) -> dict[str, str]:
    """How the command line says a settings field (or path): the field's flag (or the flags
    that set it), a sampler's or pruner's option's flag, a space's option's flag (as the
    study's ``space_options.KEY`` and as the space's own ``KEY``), ``proxy.`` / ``recipe.``
    fields as ``--set``, and the command's own flags."""
    table: dict[str, str] = {**COMMAND_FLAGS, **{part.dest: part.flag for part in PART_FLAGS if part.dest != "overrides"}}
    for f in fields(StudySettings):
        words = setting_of(f).words
        if words:
            table[f.name] = words
    table.update({"proxy.": "--set proxy.", "recipe.": "--set recipe."})
    for kind in ("sampler", "pruner"):
        table.update({option_dest(kind, name): flag for name, flag in option_flags(kind).items()})
    options = declared_options().values() if space is None else space.options
    table.update({f"space_options.{o.key}": o.flag for o in options})
    table.update({o.key: o.flag for o in options})
    return table


def usage_error(exc: BaseException, space: Space | None = None) -> UsageError:
    """A library error as the command line's one-line error: a config error's field path
    said as the flag that sets it (:func:`flag_table`)."""
    return as_usage_error(exc, None, flag_table(space))

